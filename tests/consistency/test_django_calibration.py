"""Calibration on human "product intact" labels: too few labels, a real fit with held-out metrics,
promotion, roles, and runs whose worker died."""
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import ImageLabel
from consistency import services
from consistency.tasks import calibrate_consistency_task
from core.models import ModelVersion, TrainingRun
from tests.consistency.django_helpers import make_generation

PRODUCTS = ["packages-juice-tropicana-apple-juice", "fruit-orange", "packages-milk-arla-standard-milk",
            "fruit-apple-granny-smith"]


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.STAGECRAFT_ARTIFACT_DIR = tmp_path / "artifacts"
    return settings.STAGECRAFT_ARTIFACT_DIR


def label(generation, user, intact: bool, source="annotator"):
    return ImageLabel.objects.create(generation=generation, annotator=user, source=source, product_intact=intact)


@pytest.mark.django_db
def test_too_few_labels_fails_clearly_with_the_number_needed(client, demo_project, annotator, ml_engineer,
                                                             artifacts, eager_celery):
    label(make_generation(demo_project, PRODUCTS[0]), annotator, True)
    with pytest.raises(services.CalibrationError) as err:
        services.calibrate(demo_project, ml_engineer)
    message = str(err.value)
    assert "need at least 8" in message and "7 more" in message
    assert "1 labelled 'product intact' and 0 'product changed', need at least 2 of each" in message
    assert "product(s), need at least 2" in message

    # the same through the page: the run fails with the message in its log; nothing is created
    client.force_login(annotator)
    assert client.post(reverse("consistency:calibrate", args=[demo_project.slug])).status_code == 403
    assert client.get(reverse("consistency:calibration", args=[demo_project.slug])).status_code == 403
    client.force_login(ml_engineer)
    response = client.post(reverse("consistency:calibrate", args=[demo_project.slug]), HTTP_ACCEPT="application/json")
    assert response.status_code == 202
    status = client.get(response.json()["status_url"]).json()
    assert status["state"] == "failed" and "need at least 8" in status["log"]
    assert not ModelVersion.objects.filter(kind="consistency").exists()


@pytest.mark.django_db
def test_calibration_fits_on_labels_reports_held_out_metrics_and_promotes(client, demo_project, annotator, qa_user,
                                                                          ml_engineer, artifacts):
    gens = []
    for i, stem in enumerate(PRODUCTS):
        ok = make_generation(demo_project, stem, seed=10 * i)
        bad = make_generation(demo_project, stem, "scale" if i % 2 else "colour", seed=10 * i + 1)
        label(ok, annotator, True)
        label(bad, annotator, False)
        gens += [ok, bad]
    # a QA answer wins over the annotator's
    label(gens[0], qa_user, True, source="qa")

    lines = []
    mv = services.calibrate(demo_project, ml_engineer, log_fn=lines.append)
    assert mv.kind == "consistency" and mv.version == 1
    held = mv.metrics["held_out"]
    assert {"precision", "recall", "roc_auc", "f1", "n"} <= set(held) and held["n"] >= 2
    assert held["n_altered"] >= 1 and held["n_intact"] >= 1
    assert mv.metrics["baseline"]["name"] == "threshold rules"
    snapshot = mv.training_snapshot
    assert set(snapshot["held_out_ids"]).isdisjoint(snapshot["train_ids"])
    held_products = {g.product_id for g in gens if g.pk in snapshot["held_out_ids"]}
    train_products = {g.product_id for g in gens if g.pk in snapshot["train_ids"]}
    assert held_products and held_products.isdisjoint(train_products)  # split by product
    artifact = Path(mv.artifact_path) / "calibration.json"
    assert artifact.is_file() and Path(mv.artifact_path) == artifacts / f"project-{demo_project.pk}" / "consistency" / "v1"
    assert any("held out" in line for line in lines)
    assert mv.status in ("promoted", "candidate")
    if held["f1"] >= mv.metrics["baseline"]["f1"]:
        assert mv.status == "promoted"

    # a second calibration reuses the stored checks (nothing changed) and stays a candidate when told
    mv2 = services.calibrate(demo_project, ml_engineer, promote="never")
    assert mv2.version == 2 and mv2.status == "candidate"
    client.force_login(ml_engineer)
    page = client.get(reverse("consistency:calibration", args=[demo_project.slug])).content.decode()
    assert "v2" in page and "Promote" in page
    assert client.post(reverse("consistency:promote", args=[demo_project.slug, mv2.pk])).status_code == 302
    mv2.refresh_from_db()
    assert mv2.status == "promoted"
    assert ModelVersion.objects.filter(project=demo_project, kind="consistency", status="promoted").count() == 1

    # new checks are decided by the promoted calibrated model
    result = services.check_generation(gens[2])
    gens[2].refresh_from_db()
    assert gens[2].consistency_model == mv2 and result["calibrated_probability"] is not None
    assert result["model_version"]["version"] == 2


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_failed_and_the_promoted_version_keeps_serving(demo_project, ml_engineer):
    serving = ModelVersion.objects.create(project=demo_project, kind="consistency", version=1, status="promoted")
    # redelivered after a worker loss: the run was left "running"
    run = services.start_calibration_run(demo_project, ml_engineer)
    TrainingRun.objects.filter(pk=run.pk).update(state="running", started_at=timezone.now(),
                                                 log="[10:00:00] calibration started\n")
    calibrate_consistency_task.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.state == "failed" and "worker stopped" in run.log and "calibration started" in run.log
    # a run with no heartbeat for a long time is noticed by the page
    stale = services.start_calibration_run(demo_project, ml_engineer)
    old = (timezone.now() - timedelta(hours=1)).isoformat()
    TrainingRun.objects.filter(pk=stale.pk).update(state="running", params={"heartbeat_at": old})
    assert services.notice_stale_runs(demo_project) == 1
    stale.refresh_from_db()
    assert stale.state == "failed" and "worker stopped" in stale.log
    # a message no worker ever took: noticed too, so it does not block new runs forever
    lost = services.start_calibration_run(demo_project, ml_engineer)
    with pytest.raises(services.CalibrationError, match="still queued"):
        services.start_calibration_run(demo_project, ml_engineer)  # queued and recent: refused
    TrainingRun.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert services.start_calibration_run(demo_project, ml_engineer).state == "queued"
    lost.refresh_from_db()
    assert lost.state == "failed" and "not picked up by a worker" in lost.log
    serving.refresh_from_db()
    assert serving.status == "promoted"
