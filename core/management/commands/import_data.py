from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from core.models import Project
from core.services.imports import ImportFailed, import_path


class Command(BaseCommand):
    help = (
        "Import into a project: a JSONL manifest ({kind, file, category}), HFPC labels "
        "({origin, generation, label}), or a folder of product or catalog photos."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--project", required=True, help="project name (created if missing)")
        parser.add_argument("--format", default="auto", choices=["auto", "manifest", "hfpc", "products", "catalog"])
        parser.add_argument("--category", default="", help="category for a folder import (default: subfolder name)")

    def handle(self, path, project, format, category, **options):
        project_obj, created = Project.objects.get_or_create(name=project, defaults={"slug": slugify(project)})
        if created:
            self.stdout.write(f"created project {project!r}")
        try:
            report = import_path(project_obj, path, fmt=format, category=category)
        except ImportFailed as exc:
            raise CommandError(str(exc))
        self.stdout.write(report.summary())
        if report.errors and not (report.created or report.skipped):
            raise CommandError("nothing could be imported")
