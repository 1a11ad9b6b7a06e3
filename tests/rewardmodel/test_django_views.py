"""The Models pages and the scoring API as users meet them: roles, training from the page, progress
JSON with the loss curve, promote/rollback buttons, threshold curve and "apply threshold", scoring."""
from __future__ import annotations

import pytest
from django.urls import reverse

from core.models import ModelVersion, TrainingRun
from generation.models import Generation
from rewardmodel import services
from tests.rewardmodel.test_django_data import FAST, build_labelled_project, reward_settings  # noqa: F401  (fixture)


def pages(project):
    return {
        "index": reverse("rewardmodel:index"),
        "models": reverse("rewardmodel:models", args=[project.slug]),
    }


@pytest.mark.parametrize("page", ["index", "models"])
def test_roles_on_the_models_pages(client, demo_project, annotator, ml_engineer, qa_user, page, reward_settings):
    url = pages(demo_project)[page]
    assert client.get(url).status_code == 302  # anonymous: login
    for user, expected in ((annotator, 403), (ml_engineer, 200), (qa_user, 200)):
        client.force_login(user)
        assert client.get(url).status_code == expected, user.username


def test_qa_sees_read_only_and_cannot_post(client, demo_project, qa_user, ml_engineer, reward_settings):
    client.force_login(qa_user)
    page = client.get(reverse("rewardmodel:models", args=[demo_project.slug])).content.decode()
    assert "No reward model is promoted" in page and 'id="train-form"' not in page
    assert client.post(reverse("rewardmodel:train", args=[demo_project.slug])).status_code == 403
    assert not TrainingRun.objects.exists()
    client.force_login(ml_engineer)
    assert 'id="train-form"' in client.get(reverse("rewardmodel:models", args=[demo_project.slug])).content.decode()


def test_scoring_api_roles_and_bad_input(client, demo_project, annotator, ml_engineer, reward_settings):
    url = reverse("rewardmodel:api_score")
    assert client.post(url, {"generation": 1}, content_type="application/json").status_code in (401, 403)
    client.force_login(annotator)
    assert client.post(url, {"generation": 1}, content_type="application/json").status_code == 403
    client.force_login(ml_engineer)
    assert client.post(url, {"generation": "x"}, content_type="application/json").status_code == 400
    assert client.post(url, {"generation": 999999}, content_type="application/json").status_code == 404


def test_ml_engineer_trains_watches_promotes_rolls_back_and_applies_the_threshold(
        client, demo_project, annotator, qa_user, ml_engineer, reward_settings):
    built = build_labelled_project(demo_project, annotator, qa_user)
    client.force_login(ml_engineer)
    slug = demo_project.slug
    api = reverse("rewardmodel:api_score")
    g = built["good"][0]
    response = client.post(api, {"generation": g.pk}, content_type="application/json")
    assert response.status_code == 409 and "no promoted reward model" in response.json()["detail"]

    # Train from the page (the form's fields become run parameters); the worker's body runs here.
    form = {"max_epochs": "40", "lr": "0.002", "hidden": "64", "auto_promote": "on"}
    response = client.post(reverse("rewardmodel:train", args=[slug]), form)
    run = TrainingRun.objects.get(project=demo_project)
    assert response.status_code == 302 and response.url.endswith(f"?run={run.pk}")
    assert run.state == "queued" and run.params["hidden"] == [64] and run.params["auto_promote"] is True
    # a second run cannot start while one is queued
    client.post(reverse("rewardmodel:train", args=[slug]), form)
    assert TrainingRun.objects.filter(project=demo_project).count() == 1
    # the remaining fast-test parameters (smaller images, fixed split) are set like the form's
    TrainingRun.objects.filter(pk=run.pk).update(params={**run.params, **services.clean_params(FAST)})
    services.run_training(run.pk)

    status = client.get(reverse("rewardmodel:run_status", args=[slug, run.pk])).json()
    assert status["state"] == "succeeded" and status["done"] and status["progress"] == 1.0
    assert status["history"] and "<svg" in status["loss_svg"] and "polyline" in status["loss_svg"]
    assert "saved candidate v1" in status["log"] and status["model_version"]["version"] == 1

    page = client.get(reverse("rewardmodel:models", args=[slug])).content.decode()
    assert 'id="version-1"' in page and "promoted" in page and "Serving <b>v1</b>" in page
    v1 = ModelVersion.objects.get(project=demo_project, version=1)
    assert f"{v1.metrics['pairwise_accuracy']:.3f}" in page  # metrics in the table
    assert f"{v1.metrics['baselines']['cosine']['pairwise_accuracy']:.3f}" in page  # baselines side by side

    # Scoring API: score + model version, stored on the generation.
    response = client.post(api, {"generation": g.pk}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    g.refresh_from_db()
    assert body["score"] == g.reward_score and body["model_version"]["version"] == 1 and g.reward_model_id == v1.pk

    # Version page: threshold curve with the chosen threshold marked; apply it to the project.
    page = client.get(reverse("rewardmodel:version", args=[slug, 1])).content.decode()
    assert "threshold-curve" in page and f"chosen {v1.threshold:.3f}" in page
    response = client.post(reverse("rewardmodel:apply_threshold", args=[slug, 1]))
    assert response.status_code == 302
    demo_project.refresh_from_db()
    assert demo_project.reward_threshold == pytest.approx(v1.threshold)

    # v2 (same training) is not better: the page offers only an override; promote it, then roll back.
    run2 = services.run_training(services.start_training(demo_project, ml_engineer, FAST).pk)
    assert run2.model_version.status == "candidate"
    page = client.get(reverse("rewardmodel:models", args=[slug])).content.decode()
    assert "Promote (override)" in page
    client.post(reverse("rewardmodel:promote", args=[slug, 2]))  # no override: refused
    assert ModelVersion.objects.get(project=demo_project, version=2).status == "candidate"
    client.post(reverse("rewardmodel:promote", args=[slug, 2]), {"override": "1"})
    assert {v.version: v.status for v in ModelVersion.objects.filter(project=demo_project)} == {1: "retired",
                                                                                                2: "promoted"}
    page = client.get(reverse("rewardmodel:models", args=[slug])).content.decode()
    assert "Roll back to v1" in page
    client.post(reverse("rewardmodel:rollback", args=[slug, 1]))
    assert {v.version: v.status for v in ModelVersion.objects.filter(project=demo_project)} == {1: "promoted",
                                                                                                2: "retired"}
    assert Generation.objects.filter(product__project=demo_project).exists()


def test_models_page_fails_a_run_whose_worker_died(client, demo_project, ml_engineer, reward_settings):
    from datetime import timedelta

    from django.utils import timezone

    run = TrainingRun.objects.create(project=demo_project, kind="reward", state="running",
                                     started_at=timezone.now() - timedelta(hours=2))
    client.force_login(ml_engineer)
    page = client.get(reverse("rewardmodel:models", args=[demo_project.slug])).content.decode()
    run.refresh_from_db()
    assert run.state == "failed" and "worker was killed or lost" in run.log
    assert "worker was killed or lost" in page
