from django.core.management.base import BaseCommand

from core.services.demo import seed_demo


class Command(BaseCommand):
    help = "Create the demo project from the sample photos and one demo user per role (idempotent)."

    def handle(self, **options):
        project, report, logins = seed_demo()
        self.stdout.write(f"demo project {project.name!r}: {report.summary()}")
        for username, password in logins.items():
            self.stdout.write(f"  login: {username} / {password}")
