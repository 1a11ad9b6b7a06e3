"""The Django side of generation on the demo project: catalog index, copy-paste candidates with
provenance, idempotent re-runs, clear failures with nothing half-written, the pages and commands.

The segmenter and the image encoder are the real ones; photos are segmented and staged small
(STAGECRAFT_CATALOG_SEGMENT_SIDE, backend param ``size``) to keep the suite quick.
"""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from core.models import CatalogImage, ModelVersion, Product
from core.services.products import add_product
from generation import services
from generation.ml.backends import GenerationFailed
from generation.ml.retrieval import CatalogIndex
from generation.models import Generation, GenerationJob

SMALL = {"size": 256}  # staged scenes 256 px on the long side


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(settings, tmp_path):
    settings.STAGECRAFT_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.STAGECRAFT_CATALOG_SEGMENT_SIDE = 192
    settings.STAGECRAFT_PARALLAX_SIZE = 128


def _product(project, fine: str) -> Product:
    return Product.objects.get(project=project, title__icontains=fine)


def _keep_catalog(project, category: str, n: int):
    """Keep only the first ``n`` staged photos of ``category`` (smaller index, quicker tests)."""
    keep = list(CatalogImage.objects.filter(project=project, kind="staged", category=category)
                .order_by("id").values_list("pk", flat=True)[:n])
    CatalogImage.objects.filter(project=project, kind="staged").exclude(pk__in=keep).delete()


def test_index_build_generate_rerun_and_page(client, demo_project, ml_engineer, annotator):
    # Build the catalog index over every staged demo photo: masks stored, embeddings cached, index saved.
    report = services.build_catalog_index(demo_project)
    staged = CatalogImage.objects.filter(project=demo_project, kind="staged")
    assert report.indexed == staged.count() == 18 and not report.skipped
    assert report.categories == {"bowl": 6, "can": 6, "vase": 6}
    assert all(c.mask and default_storage.exists(c.mask.name) and c.embedding_model for c in staged)
    index = CatalogIndex.load(services.catalog_index_dir(demo_project))
    assert sorted(index.ids) == sorted(str(pk) for pk in staged.values_list("pk", flat=True))
    # A rebuild reuses masks and embeddings.
    again = services.build_catalog_index(demo_project)
    assert (again.indexed, again.segmented, again.embedded) == (18, 0, 0)

    # Copy-paste for one demo product: N Generations with images, provenance and retrieval source.
    product = _product(demo_project, "juice")
    result = services.generate_for_product(product, "copy-paste", seed=7, num_candidates=3, params=SMALL)
    gens = list(Generation.objects.filter(product=product).order_by("candidate_index"))
    assert result.created == 3 and [g.candidate_index for g in gens] == [0, 1, 2]
    for g in gens:
        assert g.status == "succeeded" and g.backend == "copy-paste" and g.backend_version
        assert g.params == SMALL and g.params_hash == services.params_hash(SMALL) and g.seed == 7
        assert default_storage.exists(g.image.name) and default_storage.exists(g.product_mask.name)
        assert max(g.width, g.height) == 256
        assert g.retrieval_source is not None and g.retrieval_source.kind == "staged"
        assert g.metadata["retrieval_source"] == g.retrieval_source_id
        assert 0 < g.metadata["similarity"] <= 1 and "total_s" in g.metadata["timings"]
        # no demo catalog photo is a juice carton: the category fallback is said, not hidden
        assert any("no catalog photos in category 'packages'" in n for n in g.metadata["notices"])
    assert len({g.retrieval_source_id for g in gens}) == 3
    video = gens[0].metadata["parallax"]
    assert video["frames"] == 72 and video["fps"] == 24
    assert default_storage.open(video["mp4"]).read(12)[4:8] == b"ftyp"
    assert default_storage.exists(video["webp"])

    # Same backend/version/params/seed again: the same rows, no duplicates.
    rerun = services.generate_for_product(product, "copy-paste", seed=7, num_candidates=3, params=SMALL)
    assert rerun.created == 0 and [g.pk for g in rerun.generations] == [g.pk for g in gens]
    assert Generation.objects.filter(product=product).count() == 3

    # The product page: original, candidates, retrieved scenes side by side, the parallax video.
    client.force_login(ml_engineer)
    page = client.get(reverse("generation:product", args=[demo_project.slug, product.pk])).content.decode()
    assert product.source_image.image.name in page
    assert all(g.image.name in page and g.retrieval_source.image.name in page for g in gens)
    assert f'<video src="{reverse("media", args=[video["mp4"]])}"' in page
    assert "reward" in page  # scores for ML engineers
    assert client.get(reverse("media", args=[video["mp4"]]))["Content-Type"] == "video/mp4"
    client.force_login(annotator)
    page = client.get(reverse("generation:product", args=[demo_project.slug, product.pk])).content.decode()
    assert gens[0].image.name in page and "reward" not in page  # candidates without scores
    assert 'name="backend"' not in page  # no generate form for annotators


def test_not_on_plain_background_fails_job_with_message_and_no_generations(demo_project, sample_dir):
    photo = (sample_dir / "in_store" / "fruit-orange_0.jpg").read_bytes()
    product = add_product(demo_project, title="Orange in a shop", category="fruit", image_bytes=photo,
                          image_name="orange.jpg")
    job = services.create_generation_job(demo_project, product=product, backends=["paste-on-stage"], num_candidates=2)
    job = services.run_generation_job(job.pk)
    assert job.state == "failed" and job.finished_at
    assert "not on a plain background" in job.log
    assert Generation.objects.filter(product=product).count() == 0


def test_almost_empty_product_and_oversized_product_fail_clearly(demo_project):
    buf = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 255, np.uint8)).save(buf, format="PNG")
    blank = add_product(demo_project, title="Blank", category="fruit", image_bytes=buf.getvalue(), image_name="b.png")
    with pytest.raises(GenerationFailed, match="no product found"):
        services.generate_for_product(blank, "paste-on-stage", num_candidates=1)
    apple = _product(demo_project, "granny")
    with pytest.raises(GenerationFailed, match="larger than the scene"):
        services.generate_for_product(apple, "paste-on-stage", num_candidates=1, params={"height_fraction": 1.5})
    with pytest.raises(GenerationFailed, match="cannot use the params"):
        services.generate_for_product(apple, "paste-on-stage", num_candidates=1, params={"size": "big"})
    assert not Generation.objects.filter(product__in=[blank, apple]).exists()


def test_empty_catalog_fails_index_and_generation_jobs_clearly(demo_project):
    CatalogImage.objects.filter(project=demo_project, kind="staged").delete()
    index_job = services.create_index_job(demo_project)
    services.run_index_job(demo_project.pk, index_job.pk)
    index_job.refresh_from_db()
    assert index_job.state == "failed" and "no staged catalog photos" in index_job.log
    product = _product(demo_project, "banana")
    job = services.create_generation_job(demo_project, product=product, backends=["copy-paste"])
    job = services.run_generation_job(job.pk)
    assert job.state == "failed" and "build the catalog index first" in job.log
    assert Generation.objects.count() == 0


def test_project_job_generates_for_every_product_with_progress(demo_project):
    keep = list(demo_project.products.order_by("id").values_list("pk", flat=True)[:3])
    demo_project.products.exclude(pk__in=keep).delete()
    job = services.create_generation_job(demo_project, backends=["paste-on-stage"], num_candidates=1,
                                         with_parallax=False, params=SMALL)
    job = services.run_generation_job(job.pk)
    products = demo_project.products.count()
    created, failed = job.counts["created"], job.counts["failed"]
    assert job.state == "succeeded" and job.progress == 1.0 and job.counts["done"] == products
    assert created == Generation.objects.count() >= products - 1 and created + failed == products
    # a product that cannot be staged on its stage is named in the log with the reason
    assert job.log.count("FAILED — ") == failed
    assert all(g.retrieval_source.kind == "stage" for g in Generation.objects.all())
    # A re-delivered task (worker killed before the ack) runs the job again: nothing duplicated.
    GenerationJob.objects.filter(pk=job.pk).update(state="running")
    job = services.run_generation_job(job.pk)
    assert job.state == "succeeded" and job.counts["reused"] == created and job.attempts == 2
    assert "interrupted" in job.log and Generation.objects.count() == created


def test_commands_build_generate_and_train_inpainter(demo_project, capsys):
    _keep_catalog(demo_project, "can", 2)
    call_command("build_catalog_index", "--project", demo_project.name)
    assert "indexed 2 staged catalog photos" in capsys.readouterr().out
    assert CatalogIndex.load(services.catalog_index_dir(demo_project)).category_counts() == {"can": 2}
    product = _product(demo_project, "milk")
    call_command("generate", "--project", demo_project.slug, "--product", str(product.pk), "--backend",
                 "paste-on-stage", "--seed", "3", "--candidates", "2", "--params", json.dumps(SMALL), "--no-parallax")
    assert Generation.objects.filter(product=product, seed=3, backend="paste-on-stage").count() == 2
    assert "2 new, 0 reused" in capsys.readouterr().out
    call_command("train_inpainter", "--project", demo_project.name, "--steps", "1", "--size", "64")
    mv = ModelVersion.objects.get(project=demo_project, kind="inpainter")
    assert mv.version == 1 and (Path(mv.artifact_path) / "wbl_inpainter.safetensors").is_file()
    assert mv.training_snapshot["count"] == 2 and mv.training_run.state == "succeeded"


def test_copy_paste_with_the_projects_trained_wbl_inpainter(demo_project, capsys):
    _keep_catalog(demo_project, "can", 2)
    services.build_catalog_index(demo_project)
    product = _product(demo_project, "milk")
    wbl = {**SMALL, "inpainter": "wbl"}
    # Nothing trained yet: the job fails with what to do, and writes nothing.
    job = services.create_generation_job(demo_project, product=product, num_candidates=1, params=wbl,
                                         with_parallax=False)
    job = services.run_generation_job(job.pk)
    assert job.state == "failed" and "no WBL inpainter trained" in job.log and "train_inpainter" in job.log
    assert not Generation.objects.exists()

    first = Path(services.train_inpainter(demo_project, steps=2, size=32).artifact_path).name
    call_command("generate", "--project", demo_project.slug, "--product", str(product.pk), "--inpainter", "wbl",
                 "--candidates", "2", "--params", json.dumps(SMALL), "--no-parallax")
    gens = list(Generation.objects.filter(product=product).order_by("candidate_index"))
    assert len(gens) == 2
    for g in gens:
        # the version used is pinned in the params: the params hash follows the model
        assert g.params == {**wbl, "wbl_version": first}
        assert g.metadata["inpainter"] == "wbl" and g.metadata["inpainter_version"] == first
    with pytest.raises(CommandError, match="copy-paste backend only"):
        call_command("generate", "--project", demo_project.slug, "--backend", "paste-on-stage", "--inpainter", "ns")

    # A newer model makes new candidates; the older one can still be asked for by version (reused).
    newer = Path(services.train_inpainter(demo_project, steps=1, size=32).artifact_path).name
    again = services.generate_for_product(product, "copy-paste", num_candidates=1, params=wbl, with_parallax=False)
    assert again.created == 1 and again.generations[0].metadata["inpainter_version"] == newer != first
    pinned = services.generate_for_product(product, "copy-paste", num_candidates=1,
                                           params={**wbl, "wbl_version": first}, with_parallax=False)
    assert pinned.reused == 1 and pinned.generations[0].pk == gens[0].pk
