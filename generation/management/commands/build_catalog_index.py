from django.core.management.base import BaseCommand, CommandError

from generation import services
from generation.management.commands._common import get_project


class Command(BaseCommand):
    help = "Segment and embed the project's staged catalog photos and (re)build its catalog index."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name or slug")
        parser.add_argument("--segment-side", type=int, default=None,
                            help="segment photos at most this many px on the long side (default 512)")

    def handle(self, project, segment_side, **options):
        proj = get_project(project)
        try:
            report = services.run_index_job(proj.pk, echo=self.stdout.write, segment_side=segment_side)
        except services.USER_ERRORS as exc:
            raise CommandError(str(exc))
        for message in report.skipped:
            self.stdout.write(f"skipped: {message}")
        self.stdout.write(self.style.SUCCESS(f"{proj.name}: {report.summary()} -> {report.path}"))
