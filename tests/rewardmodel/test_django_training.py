"""Training runs through the real offline backbone, promotion/rollback, scoring, the stale-run sweeper,
and a real Celery worker. Labels are constructed (good composite vs one with a clear defect)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotate.models import ImageLabel, PairwiseLabel
from core.models import ModelVersion, TrainingRun
from generation.models import Generation
from rewardmodel import services
from rewardmodel.models import RunHeartbeat
from tests.rewardmodel.test_django_data import FAST, build_labelled_project, reward_settings  # noqa: F401  (fixture)
from tests.conftest import wait_for

SWAP = {"a": "b", "b": "a"}


def train(project, user=None, **params) -> TrainingRun:
    run = services.start_training(project, user, {**FAST, **params})
    return services.run_training(run.pk)


def versions(project):
    return {v.version: v.status for v in ModelVersion.objects.filter(project=project, kind="reward")}


def flip_labels(project):
    """Invert every judgement (a model trained on these prefers the defects)."""
    for label in PairwiseLabel.objects.filter(task__project=project):
        label.choice = SWAP[label.choice]
        label.save(update_fields=["choice"])
    for label in ImageLabel.objects.filter(generation__product__project=project):
        label.background_appropriate = not label.background_appropriate
        label.save(update_fields=["background_appropriate"])


@pytest.fixture
def labelled(demo_project, annotator, qa_user, reward_settings):
    return build_labelled_project(demo_project, annotator, qa_user)


def test_training_end_to_end_creates_a_version_with_metrics_artifact_and_scores(demo_project, ml_engineer, labelled,
                                                                                  reward_settings):
    run = services.start_training(demo_project, ml_engineer, FAST)
    assert run.state == "queued" and run.celery_task_id
    run = services.run_training(run.pk)
    assert run.state == "succeeded", run.log
    assert run.progress == 1.0 and run.finished_at
    assert len(run.history) >= 2 and {"epoch", "train_loss", "val_loss"} <= set(run.history[0])
    v = run.model_version
    assert v.version == 1 and v.kind == "reward"
    m = v.metrics
    print({k: m.get(k) for k in ("pairwise_accuracy", "roc_auc", "n_val")}, m["baselines"]["cosine"]["pairwise_accuracy"],
          m["promotion"])
    for key in ("pairwise_accuracy", "roc_auc", "precision", "recall", "threshold_choice", "promotion"):
        assert key in m
    assert {"cosine", "aesthetic_proxy"} <= set(m["baselines"])
    assert m["pairwise_accuracy"] >= 0.7 and m["roc_auc"] >= 0.6
    assert m["threshold_choice"]["min_precision"] == 0.95 and m["threshold_choice"]["curve"]
    assert v.threshold == m["threshold_choice"]["threshold"]
    art = Path(v.artifact_path)
    assert art == Path(reward_settings.STAGECRAFT_ARTIFACT_DIR) / f"project-{demo_project.pk}" / "reward" / "v1"
    assert (art / "head.safetensors").exists() and (art / "config.json").exists()
    snap = v.training_snapshot
    assert sorted(snap["label_ids"]["pairwise"]) == sorted(p.pk for p in labelled["pair_labels"])
    assert sorted(snap["label_ids"]["image"]) == sorted(i.pk for i in labelled["image_labels"])
    assert snap["split"]["val_products"] and snap["counts"]["image_by_source"]["qa"] > 0
    assert v.backbone.startswith("efficientnet-lite0") and v.code_version
    assert "labels: " in run.log and "saved candidate v1" in run.log
    # The first model that beats the cosine baseline is promoted and every generation is scored by it.
    assert v.status == "promoted", m["promotion"]
    scored = Generation.objects.filter(product__project=demo_project, reward_model=v, reward_score__isnull=False)
    assert scored.count() == Generation.objects.filter(product__project=demo_project).count()
    good = [g.reward_score for g in scored.filter(pk__in=[g.pk for g in labelled["good"]])]
    bad = [g.reward_score for g in scored.filter(pk__in=[g.pk for g in labelled["bad"]])]
    assert sum(good) / len(good) > sum(bad) / len(bad)


def test_too_few_labels_fail_the_run_with_a_clear_message(demo_project, annotator, ml_engineer, reward_settings):
    build_labelled_project(demo_project, annotator, stages_per_product=1, single_product=False)
    have = PairwiseLabel.objects.count() + ImageLabel.objects.count()
    assert have == 24  # 8 products: one pair and two single-image labels each
    run = train(demo_project, ml_engineer)
    assert run.state == "failed"
    assert f"need at least {services.min_labels()} labels, have 24" in run.log
    assert "no reward model is promoted" in run.log
    assert not ModelVersion.objects.filter(project=demo_project).exists()


def test_promotion_rule_override_and_rollback(demo_project, ml_engineer, labelled, reward_settings):
    # v1 learns the inverted labels; it is kept as a candidate, then promoted by an explicit override.
    flip_labels(demo_project)
    run1 = train(demo_project, ml_engineer, auto_promote=False)
    assert run1.state == "succeeded", run1.log
    v1 = run1.model_version
    assert versions(demo_project) == {1: "candidate"} and "auto-promotion is off" in run1.log
    services.promote(v1, ml_engineer, override=True, rescore=False)
    assert versions(demo_project) == {1: "promoted"}

    # v2 on the real labels beats v1 re-scored on the same validation labels: promoted, v1 retired.
    flip_labels(demo_project)
    run2 = train(demo_project, ml_engineer)
    v2 = run2.model_version
    promo = v2.metrics["promotion"]
    assert promo["compared_with_version"] == 1 and promo["promote"], promo
    assert promo["compared_metrics"]["pairwise_accuracy"] < v2.metrics["pairwise_accuracy"]
    assert versions(demo_project) == {1: "retired", 2: "promoted"}
    assert Generation.objects.filter(product__project=demo_project).exclude(reward_model=v2).count() == 0

    # v3, the same training again, is not better by the margin: it stays a candidate...
    run3 = train(demo_project, ml_engineer)
    v3 = run3.model_version
    assert not v3.metrics["promotion"]["promote"]
    assert versions(demo_project) == {1: "retired", 2: "promoted", 3: "candidate"}
    assert "v3 stays a candidate" in run3.log and "v2 is still serving" in run3.log
    # ...and promoting it without an override is refused with the reason.
    with pytest.raises(services.PromotionRefused, match="override"):
        services.promote(v3, ml_engineer)
    assert versions(demo_project)[2] == "promoted"

    # Rollback to v1 (previously promoted): v1 serves again, v2 retired; never two promoted.
    services.rollback(v1, ml_engineer)
    assert versions(demo_project) == {1: "promoted", 2: "retired", 3: "candidate"}
    v1.refresh_from_db()
    assert v1.promoted_by == ml_engineer and "rollback from v2" in v1.notes
    # A never-promoted candidate cannot be "rolled back" to.
    with pytest.raises(services.PromotionRefused):
        services.rollback(v3)

    # Scoring after the rollback stores v1's scores on every generation.
    report = services.score_generations(demo_project)
    assert report["scored"] == Generation.objects.filter(product__project=demo_project).count()
    assert set(Generation.objects.filter(product__project=demo_project).values_list("reward_model", flat=True)) == {v1.pk}
    assert services.score_generations(demo_project)["scored"] == 0  # nothing stale left


def test_nan_loss_fails_the_run_and_the_promoted_model_keeps_serving(demo_project, ml_engineer, labelled,
                                                                     reward_settings):
    v1 = train(demo_project, ml_engineer).model_version
    assert v1.status == "promoted"
    run = train(demo_project, ml_engineer, lr=1e30, grad_clip=None, max_epochs=5)
    assert run.state == "failed"
    assert "diverged" in run.log and "the promoted reward model v1 is still serving" in run.log
    assert versions(demo_project) == {1: "promoted"}
    assert not any(p.name.startswith(".run") for p in Path(v1.artifact_path).parent.iterdir())


def test_score_one_and_batch_store_score_and_version(demo_project, ml_engineer, labelled, reward_settings):
    g = labelled["good"][0]
    with pytest.raises(services.NoPromotedModel):
        services.score_one(g)
    v1 = train(demo_project, ml_engineer).model_version
    Generation.objects.update(reward_score=None, reward_model=None)
    out = services.score_one(g)
    g.refresh_from_db()
    assert out["score"] == g.reward_score and g.reward_model == v1 and 0 <= g.reward_score <= 1
    assert out["model_version"]["version"] == 1
    assert out["passes_threshold"] == (g.reward_score >= demo_project.reward_threshold)
    report = services.score_generations(demo_project, [labelled["bad"][0].pk])
    assert report["scored"] == 1
    assert Generation.objects.filter(reward_model=v1).count() == 2


def test_stale_running_run_is_marked_failed_and_promoted_model_keeps_serving(demo_project, ml_engineer, labelled,
                                                                               reward_settings):
    v1 = train(demo_project, ml_engineer).model_version
    run = TrainingRun.objects.create(project=demo_project, kind="reward", state="running", log="[..] started",
                                     started_at=timezone.now() - timedelta(hours=1))
    RunHeartbeat.objects.create(run=run, beat_at=timezone.now() - timedelta(minutes=30), worker="host:123")
    fresh = TrainingRun.objects.create(project=demo_project, kind="reward", state="running",
                                       started_at=timezone.now() - timedelta(hours=1))
    RunHeartbeat.objects.create(run=fresh, beat_at=timezone.now(), worker="host:456")
    assert services.mark_stale_runs_failed() == [run.pk]
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.state == "failed" and run.finished_at
    assert "no heartbeat for 30 min on host:123" in run.log and "v1 is still serving" in run.log
    assert run.log.startswith("[..] started")  # the earlier log is kept
    assert fresh.state == "running"
    assert ModelVersion.objects.get(pk=v1.pk).status == "promoted"
    # The task delivered again after its worker died does not run the failed run a second time.
    assert services.run_training(run.pk).state == "failed"


def test_retrain_trigger_after_n_new_labels(demo_project, ml_engineer, labelled, reward_settings, settings):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 10
    run, reason = services.maybe_retrain(demo_project, params=FAST)
    assert run is not None and run.state == "queued" and "auto" in run.params["trigger"]
    assert services.maybe_retrain(demo_project) == (None, "a training run is already queued or running")
    services.run_training(run.pk)
    run2, reason = services.maybe_retrain(demo_project)
    assert run2 is None and reason.startswith("0 new label(s)")


@pytest.mark.worker
def test_real_worker_trains_and_writes_the_version(worker_dirs, celery_worker_process, demo_project, ml_engineer,
                                                    annotator, qa_user, reward_settings):
    build_labelled_project(demo_project, annotator, qa_user)
    run = services.start_training(demo_project, ml_engineer, FAST, queue=celery_worker_process["queue"])

    def finished():
        run.refresh_from_db()
        return run.state in ("succeeded", "failed")

    wait_for(finished, timeout=150,
             message=f"training run (worker log: {celery_worker_process['log'].read_text()[-3000:]})")
    assert run.state == "succeeded", run.log
    v = run.model_version
    assert v.status == "promoted" and Path(v.artifact_path).is_relative_to(worker_dirs / "artifacts")
    assert (Path(v.artifact_path) / "head.safetensors").exists()
    assert RunHeartbeat.objects.filter(run=run).exists() and run.history
    assert Generation.objects.filter(product__project=demo_project, reward_model=v).count() == \
        Generation.objects.filter(product__project=demo_project).count()


@pytest.fixture
def worker_dirs(tmp_path, monkeypatch, reward_settings):
    """Give the worker process its own data folder (artifacts) but the test's broker folder and the
    session's feature cache (features already computed by other tests are not computed again)."""
    settings = reward_settings
    data = tmp_path / "worker-data"
    (data / "artifacts").mkdir(parents=True)
    (data / "artifacts" / "feature-cache").symlink_to(settings.STAGECRAFT_FEATURE_CACHE_DIR, target_is_directory=True)
    monkeypatch.setenv("STAGECRAFT_DATA_DIR", str(data))
    opts = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    if opts.get("data_folder_in"):
        monkeypatch.setenv("STAGECRAFT_BROKER_DIR", str(Path(opts["data_folder_in"]).parent))
    return data
