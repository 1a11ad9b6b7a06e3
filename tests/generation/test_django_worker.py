"""The production path: a real Celery worker runs a generation job end to end (Redis + PostgreSQL in CI):
product cut-out, staging, parallax video, files in storage, rows and job state in the database."""
import os

import pytest
from django.core.files.storage import default_storage

from core.models import CatalogImage, Product
from generation import services
from generation.models import Generation, GenerationJob
from generation.tasks import generate_for_product_task
from tests.conftest import wait_for


@pytest.fixture
def shared_data_dir(monkeypatch, tmp_path_factory, settings):
    """The worker reads artifacts from its DATA_DIR/artifacts: point it (and this process) at a temporary
    folder, never a developer's var/, keeping the broker folder this process sends to."""
    data = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("STAGECRAFT_DATA_DIR", str(data))
    opts = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if opts.get("data_folder_in"):
        monkeypatch.setenv("STAGECRAFT_BROKER_DIR", os.path.dirname(opts["data_folder_in"]))
    settings.STAGECRAFT_ARTIFACT_DIR = data / "artifacts"
    settings.STAGECRAFT_CATALOG_SEGMENT_SIDE = 192
    return data


@pytest.mark.worker
def test_worker_runs_a_generation_job_end_to_end(shared_data_dir, celery_worker_process, demo_project):
    product = Product.objects.filter(project=demo_project, title__icontains="yoghurt").get()
    stages = set(CatalogImage.objects.filter(project=demo_project, kind="stage").values_list("pk", flat=True))
    job = services.create_generation_job(demo_project, product=product, backends=["paste-on-stage"], num_candidates=2,
                                         params={"size": 256}, parallax_size=128)
    generate_for_product_task.apply_async(args=[job.pk], queue=celery_worker_process["queue"])

    def finished():
        job.refresh_from_db()
        return job.finished

    wait_for(finished, timeout=240, message=f"job finished (worker log: {celery_worker_process['log']})")
    assert job.state == "succeeded", job.log
    assert job.progress == 1.0 and job.counts["created"] == 2 and job.attempts == 1
    gens = Generation.objects.filter(product=product, backend="paste-on-stage").order_by("candidate_index")
    assert [g.candidate_index for g in gens] == [0, 1] and all(g.retrieval_source_id in stages for g in gens)
    video = gens[0].metadata["parallax"]
    assert video["frames"] == 72 and default_storage.exists(video["mp4"]) and default_storage.exists(video["webp"])
