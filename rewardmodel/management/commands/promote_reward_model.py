from django.core.management.base import BaseCommand, CommandError

from core.models import ModelVersion
from rewardmodel import services


class Command(BaseCommand):
    help = ("Promote a reward-model version (the promotion rule applies unless --override), or --rollback to a "
            "previously promoted one. Generations are re-scored by a queued task.")

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("version", type=int)
        parser.add_argument("--override", action="store_true", help="promote even if it did not pass the rule")
        parser.add_argument("--rollback", action="store_true", help="serve an earlier promoted version again")

    def handle(self, project, version, override, rollback, **options):
        v = ModelVersion.objects.filter(project__slug=project, kind="reward", version=version).first()
        if v is None:
            raise CommandError(f"no reward model v{version} in project {project!r}")
        try:
            v = services.rollback(v) if rollback else services.promote(v, None, override=override)
        except services.RewardModelError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"v{v.version} is promoted")
