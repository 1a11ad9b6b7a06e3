from django.core.management.base import CommandError

from core.models import Project


def get_project(name: str) -> Project:
    project = Project.objects.filter(name=name).first() or Project.objects.filter(slug=name).first()
    if project is None:
        known = ", ".join(Project.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no project named {name!r} (known: {known})")
    return project
