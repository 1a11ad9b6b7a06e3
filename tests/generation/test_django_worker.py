"""The production path: a real Celery worker runs a generation job end to end (Redis + PostgreSQL in CI)."""
import os

import pytest
from django.conf import settings

from core.models import CatalogImage, Product
from generation import services
from generation.models import Generation, GenerationJob
from generation.tasks import generate_for_product_task
from tests.conftest import wait_for


@pytest.fixture
def shared_data_dir(monkeypatch, tmp_path_factory, settings):
    """The worker process reads the catalog index from its STAGECRAFT_ARTIFACT_DIR (DATA_DIR/artifacts):
    point both processes at one temporary folder, keeping the broker folder the test sends to."""
    data = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("STAGECRAFT_DATA_DIR", str(data))
    opts = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if opts.get("data_folder_in"):
        monkeypatch.setenv("STAGECRAFT_BROKER_DIR", os.path.dirname(opts["data_folder_in"]))
    settings.STAGECRAFT_ARTIFACT_DIR = data / "artifacts"
    settings.STAGECRAFT_CATALOG_SEGMENT_SIDE = 192
    return data


@pytest.mark.worker
def test_worker_runs_a_copy_paste_job_end_to_end(shared_data_dir, celery_worker_process, demo_project):
    keep = list(CatalogImage.objects.filter(project=demo_project, kind="staged", category="vase")
                .values_list("pk", flat=True)[:2])
    CatalogImage.objects.filter(project=demo_project, kind="staged").exclude(pk__in=keep).delete()
    services.build_catalog_index(demo_project)
    product = Product.objects.filter(project=demo_project, title__icontains="yoghurt").get()
    job = services.create_generation_job(demo_project, product=product, backends=["copy-paste"], num_candidates=2,
                                         params={"size": 256}, parallax_size=128)
    generate_for_product_task.apply_async(args=[job.pk], queue=celery_worker_process["queue"])

    def finished():
        job.refresh_from_db()
        return job.finished

    wait_for(finished, timeout=240, message=f"job finished (worker log: {celery_worker_process['log']})")
    assert job.state == "succeeded", job.log
    gens = Generation.objects.filter(product=product, backend="copy-paste").order_by("candidate_index")
    assert [g.candidate_index for g in gens] == [0, 1] and job.counts["created"] == 2
    assert all(g.retrieval_source_id in keep for g in gens)
    assert gens[0].metadata["parallax"]["mp4"].endswith(".mp4")
    assert GenerationJob.objects.get(pk=job.pk).progress == 1.0
