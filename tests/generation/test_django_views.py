"""Roles on the generation pages and starting jobs from the browser."""
import pytest
from django.urls import reverse

from core.models import CatalogImage, Product
from generation import services
from generation.models import GenerationJob


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(settings, tmp_path):
    settings.STAGECRAFT_ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def product(demo_project):
    return Product.objects.filter(project=demo_project).order_by("id").first()


def test_every_role_sees_the_pages_only_ml_engineers_start_jobs(client, demo_project, product, annotator, ml_engineer,
                                                              qa_user):
    job = services.create_generation_job(demo_project, product=product)
    pages = [reverse("generation:index"), reverse("generation:project", args=[demo_project.slug]),
             reverse("generation:product", args=[demo_project.slug, product.pk]),
             reverse("generation:job", args=[job.pk]), reverse("generation:job_status", args=[job.pk])]
    posts = [reverse("generation:product", args=[demo_project.slug, product.pk]),
             reverse("generation:build_index", args=[demo_project.slug]),
             reverse("generation:generate_all", args=[demo_project.slug])]
    for url in pages:
        assert client.get(url).status_code == 302  # anonymous: to the login page
    for user in (annotator, qa_user):
        client.force_login(user)
        assert all(client.get(url).status_code == 200 for url in pages)
        for url in posts:
            assert client.post(url, {"backend": "paste-on-stage", "seed": 0, "num_candidates": 1}).status_code == 403
    assert GenerationJob.objects.count() == 1


def test_ml_engineer_starts_a_job_and_polls_it(client, demo_project, product, ml_engineer,
                                               django_capture_on_commit_callbacks):
    client.force_login(ml_engineer)
    url = reverse("generation:product", args=[demo_project.slug, product.pk])
    page = client.get(url).content.decode()
    # unavailable backends are shown greyed with their reason; copy-paste needs the index first
    assert 'value="category-diffusion" disabled' in page and "STAGECRAFT_SD_INPAINT_MODEL" in page
    assert 'value="copy-paste" disabled' in page and "build the catalog index first" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"backend": "paste-on-stage", "seed": 5, "num_candidates": 2,
                                     "with_parallax": "on", "params": '{"size": 256}'})
    job = GenerationJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("generation:job", args=[job.pk])
    assert len(callbacks) == 1  # sent to the worker once the job is committed
    assert (job.kind, job.product, job.backends, job.state, job.started_by) == (
        "product", product, ["paste-on-stage"], "queued", ml_engineer)
    assert job.options == {"seed": 5, "num_candidates": 2, "params": {"size": 256}, "with_parallax": True}
    assert job.celery_task_id
    services.run_generation_job(job.pk)  # what the worker does
    status = client.get(reverse("generation:job_status", args=[job.pk])).json()
    assert status["state"] == "succeeded" and status["progress"] == 1.0 and status["counts"]["created"] == 2
    assert "2 new" in status["log"]
    page = client.get(reverse("generation:job", args=[job.pk])).content.decode()
    assert "succeeded" in page and "See the candidates" in page


def test_bad_form_input_is_refused_with_the_reason(client, demo_project, product, ml_engineer):
    client.force_login(ml_engineer)
    url = reverse("generation:product", args=[demo_project.slug, product.pk])
    response = client.post(url, {"backend": "category-diffusion", "seed": 0, "num_candidates": 1})
    assert response.status_code == 400 and "category-diffusion is unavailable" in response.content.decode()
    response = client.post(url, {"backend": "paste-on-stage", "seed": 0, "num_candidates": 1, "params": "[1, 2"})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()
    response = client.post(url, {"backend": "paste-on-stage", "seed": 0, "num_candidates": 99})
    assert response.status_code == 400
    assert GenerationJob.objects.count() == 0


def test_project_buttons_start_index_and_all_products_jobs(client, demo_project, ml_engineer,
                                                           django_capture_on_commit_callbacks):
    client.force_login(ml_engineer)
    page = client.get(reverse("generation:project", args=[demo_project.slug])).content.decode()
    assert "Build the catalog index" in page and "Generate for all products" in page
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("generation:build_index", args=[demo_project.slug]))
        client.post(reverse("generation:generate_all", args=[demo_project.slug]),
                    {"backend": "paste-on-stage", "seed": 0, "num_candidates": 1})
    assert len(callbacks) == 2
    assert sorted(GenerationJob.objects.values_list("kind", flat=True)) == ["index", "project"]


def test_inpainter_choice_on_the_form(client, demo_project, product, ml_engineer, django_capture_on_commit_callbacks):
    client.force_login(ml_engineer)
    url = reverse("generation:product", args=[demo_project.slug, product.pk])
    page = client.get(url).content.decode()
    assert '<select name="inpainter">' in page and 'value="auto" selected' in page
    assert 'value="wbl" disabled' in page and "not trained yet" in page
    response = client.post(url, {"backend": "paste-on-stage", "seed": 0, "num_candidates": 1, "inpainter": "wbl"})
    assert response.status_code == 400 and "wbl is unavailable" in response.content.decode()
    response = client.post(url, {"backend": "paste-on-stage", "seed": 0, "num_candidates": 1, "inpainter": "ns"})
    assert response.status_code == 400 and "copy-paste backend only" in response.content.decode()
    assert GenerationJob.objects.count() == 0

    keep = CatalogImage.objects.filter(project=demo_project, kind="staged").order_by("id").values_list("pk", flat=True)
    CatalogImage.objects.filter(project=demo_project, kind="staged").exclude(pk__in=list(keep[:2])).delete()
    version = services.train_inpainter(demo_project, steps=1, size=32).artifact_path.rsplit("/", 1)[-1]
    page = client.get(url).content.decode()
    assert f'value="wbl" >wbl ({version})' in page
    services.build_catalog_index(demo_project)
    with django_capture_on_commit_callbacks():
        response = client.post(url, {"backend": "copy-paste", "seed": 0, "num_candidates": 1, "inpainter": "wbl",
                                     "params": '{"size": 256}'})
    assert response.status_code == 302
    assert GenerationJob.objects.get().options["params"] == {"size": 256, "inpainter": "wbl"}
