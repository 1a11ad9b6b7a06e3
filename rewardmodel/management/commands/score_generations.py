import json

from django.core.management.base import BaseCommand, CommandError

from core.models import Project
from rewardmodel import services


class Command(BaseCommand):
    help = "Score a project's generations with its promoted reward model (those not scored by it yet; --force: all)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--ids", nargs="*", type=int, help="only these generation ids")

    def handle(self, project, force, ids, **options):
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project {project!r}")
        try:
            report = services.score_generations(proj, ids, force=force)
        except services.RewardModelError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(report))
