from django.core.management.base import BaseCommand

from rewardmodel import services


class Command(BaseCommand):
    help = "Mark training runs failed whose worker died (no heartbeat) or that were never picked up."

    def handle(self, **options):
        failed = services.mark_stale_runs_failed()
        self.stdout.write(f"marked {len(failed)} run(s) failed: {failed}" if failed else "no stale runs")
