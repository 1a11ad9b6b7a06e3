"""The production path: a real Celery worker runs a consistency check end to end."""
import pytest

from consistency.tasks import check_generations_task
from generation.models import Generation
from tests.conftest import wait_for
from tests.consistency.django_helpers import make_generation


@pytest.mark.worker
def test_worker_checks_generations(celery_worker_process, demo_project):
    ok = make_generation(demo_project, "fruit-orange")
    bad = make_generation(demo_project, "fruit-orange", "scale", seed=1)
    check_generations_task.apply_async(args=[demo_project.pk, [ok.pk, bad.pk]], queue=celery_worker_process["queue"])
    wait_for(lambda: Generation.objects.filter(pk__in=[ok.pk, bad.pk], consistency_passed__isnull=False).count() == 2,
             timeout=180, message=f"worker check (log: {celery_worker_process['log'].read_text()[-2000:]})")
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert ok.consistency_passed is True and ok.consistency["status"] == "consistent"
    assert bad.consistency_passed is False and any("area grew" in r for r in bad.consistency["reasons"])
