"""Celery tasks of the reward model: thin wrappers around rewardmodel.services.

Periodic checks (add to CELERY_BEAT_SCHEDULE, see docs/rewardmodel-platform.md):
    "reward-retrain-check": {"task": "rewardmodel.maybe_retrain_all", "schedule": 600},
    "reward-stale-runs": {"task": "rewardmodel.mark_stale_runs_failed", "schedule": 300},
"""
from celery import shared_task

from core.models import Project
from rewardmodel import services


@shared_task(name="rewardmodel.train_reward_model")
def train_reward_model(run_id: int) -> dict:
    run = services.run_training(run_id)
    return {"run": run.pk, "state": run.state, "model_version": run.model_version_id}


@shared_task(name="rewardmodel.score_generations")
def score_generations_task(project_id: int, ids: list[int] | None = None, force: bool = False) -> dict:
    return services.score_generations(Project.objects.get(pk=project_id), ids, force=force)


@shared_task(name="rewardmodel.maybe_retrain")
def maybe_retrain(project_id: int) -> dict:
    """Queued after new labels are committed (`services.label_committed`) and by beat: retrains after every N
    new labels."""
    run, reason = services.maybe_retrain(Project.objects.get(pk=project_id))
    return {"run": run.pk if run else None, "reason": reason}


@shared_task(name="rewardmodel.maybe_retrain_all")
def maybe_retrain_all() -> dict:
    out = {}
    for project in Project.objects.all():
        run, reason = services.maybe_retrain(project)
        out[project.slug] = {"run": run.pk if run else None, "reason": reason}
    return out


@shared_task(name="rewardmodel.mark_stale_runs_failed")
def mark_stale_runs_failed() -> list[int]:
    return services.mark_stale_runs_failed()
