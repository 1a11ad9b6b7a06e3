import sys

from django.core.management.base import BaseCommand, CommandError

from annotate.exchange import FORMATS, QUEUES, export_lines
from annotate.services import AnnotateError
from core.models import Project


class Command(BaseCommand):
    help = "Export a project's labels as JSONL, CSV, or HFPC JSONL ({origin, generation, label}; image queue only)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--queue", choices=QUEUES, default="pair")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--output", "-o", default="-", help="file path, or - for stdout")

    def handle(self, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        try:
            chunks = list(export_lines(project, options["queue"], options["format"]))
        except AnnotateError as exc:
            raise CommandError(str(exc))
        if options["output"] == "-":
            sys.stdout.write("".join(chunks))
        else:
            with open(options["output"], "w", encoding="utf-8", newline="") as fh:
                fh.write("".join(chunks))
            self.stderr.write(f"wrote {options['output']}")
