from celery import shared_task

from gating.services import run_gating


@shared_task(name="gating.run_gating")
def run_gating_task(run_id: int) -> dict:
    return run_gating(run_id).summary
