"""The production path: a real Celery worker process consumes a task from the broker (Redis in CI)
and writes its result to the database (PostgreSQL in CI)."""
import pytest
from django_celery_results.models import TaskResult

from core.models import CatalogImage, Product
from core.tasks import import_into_project
from tests.conftest import wait_for


@pytest.mark.worker
def test_worker_imports_a_manifest_and_records_the_result(celery_worker_process, demo_project, sample_dir):
    Product.objects.all().delete()
    result = import_into_project.apply_async(
        args=[demo_project.pk, str(sample_dir / "manifest.jsonl"), "manifest"], queue=celery_worker_process["queue"]
    )
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(), timeout=120,
             message=f"worker result (log: {celery_worker_process['log'].read_text()[-2000:]})")
    assert Product.objects.filter(project=demo_project).count() == 8
    assert CatalogImage.objects.filter(project=demo_project).count() == 33
    stored = TaskResult.objects.get(task_id=result.id)
    assert '"created": 8' in stored.result and stored.task_name == "core.import_into_project"
