"""Celery tasks: thin wrappers over `generation.services`.

Tasks are acknowledged late (settings: CELERY_TASK_ACKS_LATE, REJECT_ON_WORKER_LOST), so a worker
killed mid-task leaves the message queued and another worker runs it again; the services are
idempotent (existing Generations are reused, rows are written in one transaction), so the re-run
is safe.
"""
from celery import shared_task

from generation import services


@shared_task(name="generation.generate_for_product")
def generate_for_product_task(job_id: int) -> dict:
    job = services.run_generation_job(job_id)
    return {"job": job.pk, "state": job.state, "counts": job.counts}


@shared_task(name="generation.generate_for_project")
def generate_for_project_task(job_id: int) -> dict:
    job = services.run_generation_job(job_id)
    return {"job": job.pk, "state": job.state, "counts": job.counts}


@shared_task(name="generation.build_catalog_index")
def build_catalog_index_task(project_id: int, job_id: int | None = None) -> dict:
    report = services.run_index_job(project_id, job_id)
    return report.as_dict() if report is not None else {"job": job_id, "state": "not run"}
