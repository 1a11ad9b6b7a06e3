from django.core.management.base import BaseCommand, CommandError

from generation import services
from generation.management.commands._common import get_project


class Command(BaseCommand):
    help = ("Train the WBL inpainter on silhouette-gap holes around the project's staged catalog products; "
            "saves versioned weights and a ModelVersion(kind='inpainter').")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name or slug")
        parser.add_argument("--steps", type=int, default=200)
        parser.add_argument("--size", type=int, default=64, help="training crop in px (multiple of 4)")

    def handle(self, project, steps, size, **options):
        proj = get_project(project)
        last = [-1]

        def progress(fraction, message):
            pct = int(fraction * 10)
            if pct != last[0]:
                last[0] = pct
                self.stdout.write(f"{fraction:4.0%} {message}")

        try:
            mv = services.train_inpainter(proj, steps=steps, size=size, progress=progress)
        except services.USER_ERRORS as exc:
            raise CommandError(str(exc))
        self.stdout.write(self.style.SUCCESS(
            f"inpainter v{mv.version} ({mv.code_version}): final loss {mv.metrics.get('final_loss')}, "
            f"weights in {mv.artifact_path}"))
