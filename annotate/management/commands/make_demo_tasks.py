from django.core.management.base import BaseCommand, CommandError

from annotate.demo import make_demo_tasks
from core.models import Project


class Command(BaseCommand):
    help = ("Create demo generations (product photo pasted on sample stages, backend 'demo-composite') for the "
            "demo project and queue comparison and image tasks, with a few gold items. Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("--project", default="demo", help="project slug (default: demo, from seed_demo)")
        parser.add_argument("--per-product", type=int, default=3)
        parser.add_argument("--max-products", type=int, default=None, help="only the first N products")
        parser.add_argument("--gold-rate", type=float, default=0.1,
                            help="set the project's gold_rate when it is 0 (default 0.1)")

    def handle(self, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r}; run `python manage.py seed_demo` first")
        good, broken, report = make_demo_tasks(project, per_product=options["per_product"],
                                               gold_rate=options["gold_rate"],
                                               max_products=options["max_products"])
        self.stdout.write(f"{project.name}: {len(good)} demo generations, {len(broken)} broken ones (gold); "
                          f"{report.summary()}; gold rate {project.gold_rate:.2f}")
