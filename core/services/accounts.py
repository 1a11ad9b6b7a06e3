import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from core.roles import ALL_ROLES


def ensure_role_groups() -> None:
    for role in ALL_ROLES:
        Group.objects.get_or_create(name=role)


@transaction.atomic
def create_user(username: str, password: str | None, roles: list[str], *, email: str = "",
                staff: bool = False, update: bool = False):
    """Create (or, with update=True, reset) a user with the given roles. Returns (user, password)."""
    unknown = set(roles) - set(ALL_ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ALL_ROLES)}")
    User = get_user_model()
    existing = User.objects.filter(username=username).first()
    if existing and not update:
        raise ValueError(f"user {username!r} already exists (use --update to reset password and roles)")
    password = password or secrets.token_urlsafe(9)
    user = existing or User(username=username)
    user.email = email or user.email
    user.is_staff = staff
    user.set_password(password)
    user.save()
    ensure_role_groups()
    user.groups.set(Group.objects.filter(name__in=roles))
    return user, password
