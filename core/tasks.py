from celery import shared_task

from core.models import Project
from core.services.imports import import_path


@shared_task(name="core.import_into_project")
def import_into_project(project_id: int, path: str, fmt: str = "auto", category: str = "") -> dict:
    """Background import; the report is the task result shown in the admin and on the project page."""
    project = Project.objects.get(pk=project_id)
    return import_path(project, path, fmt=fmt, category=category).as_dict()
