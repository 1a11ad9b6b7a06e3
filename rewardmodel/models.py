from django.db import models

from core.models import TrainingRun


class RunHeartbeat(models.Model):
    """Last sign of life of a running training job (updated on every progress report).

    A RUNNING run whose heartbeat is older than STAGECRAFT_TRAINING_STALE_MINUTES is marked failed
    by `services.mark_stale_runs_failed` (the worker was killed or lost).
    """

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="heartbeat", primary_key=True)
    beat_at = models.DateTimeField(db_index=True)
    worker = models.CharField(max_length=200, blank=True, help_text="hostname:pid of the worker")

    def __str__(self) -> str:
        return f"run {self.run_id} alive at {self.beat_at:%Y-%m-%d %H:%M:%S}"
