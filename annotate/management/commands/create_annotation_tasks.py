from django.core.management.base import BaseCommand, CommandError

from annotate.services import create_tasks
from core.models import Project


class Command(BaseCommand):
    help = ("Queue comparison tasks (pairs of succeeded generations of the same product) and image tasks for a "
            "project. Idempotent. Priority: active selection when a promoted reward model exists, else random.")

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--no-pairs", action="store_true")
        parser.add_argument("--no-images", action="store_true")
        parser.add_argument("--max-pairs-per-product", type=int, default=None)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        report = create_tasks(project, pairs=not options["no_pairs"], images=not options["no_images"],
                              max_pairs_per_product=options["max_pairs_per_product"], seed=options["seed"])
        self.stdout.write(f"{project.name}: {report.summary()}")
