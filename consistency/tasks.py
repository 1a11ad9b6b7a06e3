"""Background jobs of the consistency checker (thin: the work is in consistency.services)."""
from celery import shared_task

from consistency import services
from core.models import Project, TrainingRun


@shared_task(name="consistency.check_generations")
def check_generations_task(project_id: int, ids: list[int] | None = None) -> dict:
    """Check the project's generations (all succeeded ones, or `ids`); returns the summary."""
    project = Project.objects.get(pk=project_id)
    return services.check_generations(project, ids=ids)


@shared_task(name="consistency.calibrate", bind=True)
def calibrate_consistency_task(self, run_id: int) -> dict:
    """Calibrate on human labels; progress and log go to the TrainingRun(kind="consistency")."""
    run = TrainingRun.objects.select_related("project", "started_by").get(pk=run_id)
    run = services.execute_calibration_run(run, task_id=self.request.id or "")
    return {"run": run.pk, "state": run.state, "model_version": run.model_version_id}
