"""manage.py check_consistency --project NAME [--ids 1 2 3]"""
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from consistency import services
from core.models import Project


class Command(BaseCommand):
    help = "Run the product-consistency check on a project's generations (all succeeded ones, or --ids)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project name or slug")
        parser.add_argument("--ids", nargs="+", type=int, help="generation ids (default: all succeeded)")

    def handle(self, *args, project, ids=None, **options):
        verbosity = options.get("verbosity", 1)
        try:
            proj = Project.objects.get(Q(name=project) | Q(slug=project))
        except Project.DoesNotExist:
            raise CommandError(f"no project named {project!r}")

        def progress(i, n):
            if verbosity >= 2 or i == n or i % 10 == 0:
                self.stdout.write(f"  {i}/{n} checked")

        summary = services.check_generations(proj, ids=ids, progress=progress)
        for gid in summary["missing_ids"]:
            self.stderr.write(f"generation {gid} is not in project {proj.name}")
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary["by_status"].items())) or "none"
        self.stdout.write(self.style.SUCCESS(
            f"{summary['checked']} checked: {summary['passed']} passed, {summary['failed']} failed ({statuses})"))
