from django.core.management.base import BaseCommand, CommandError

from annotate.exchange import FORMATS, QUEUES, import_labels
from core.models import Project
from core.services.imports import ImportFailed


class Command(BaseCommand):
    help = ("Import labels (JSONL or CSV as exported, or HFPC JSONL). Idempotent: identical labels are skipped; "
            "a label contradicting a stored one is refused with its line number.")

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("path")
        parser.add_argument("--queue", choices=QUEUES, default="pair")
        parser.add_argument("--format", choices=("auto",) + FORMATS, default="auto")

    def handle(self, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        try:
            report = import_labels(project, options["path"], options["queue"], options["format"])
        except ImportFailed as exc:
            raise CommandError(str(exc))
        self.stdout.write(report.summary())
        if report.errors:
            raise CommandError(f"{len(report.errors)} record(s) refused (see above); the others were imported")
