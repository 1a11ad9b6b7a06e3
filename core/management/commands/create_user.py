from django.core.management.base import BaseCommand, CommandError

from core.roles import ALL_ROLES
from core.services.accounts import create_user


class Command(BaseCommand):
    help = "Create a user with one or more roles (annotator, ml_engineer, qa)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", action="append", choices=ALL_ROLES, default=[], dest="roles")
        parser.add_argument("--password", help="default: a random password, printed once")
        parser.add_argument("--email", default="")
        parser.add_argument("--staff", action="store_true", help="may use the admin site")
        parser.add_argument("--update", action="store_true", help="reset password and roles of an existing user")

    def handle(self, username, roles, password, email, staff, update, **options):
        if not roles:
            raise CommandError(f"give at least one --role ({', '.join(ALL_ROLES)})")
        try:
            user, password = create_user(username, password, roles, email=email, staff=staff, update=update)
        except ValueError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"{user.username} ({', '.join(roles)}) password: {password}")
