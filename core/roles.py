"""The three roles of the platform, as Django auth groups, and the check views use."""
from functools import wraps

from django.core.exceptions import PermissionDenied

ANNOTATOR = "annotator"
ML_ENGINEER = "ml_engineer"
QA = "qa"
ALL_ROLES = (ANNOTATOR, ML_ENGINEER, QA)


def user_roles(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ALL_ROLES)
    cached = getattr(user, "_stagecraft_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._stagecraft_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles)) or (user.is_authenticated and user.is_staff)


def role_required(*roles: str):
    """View decorator: 403 unless the user has one of the roles (staff and superusers always pass)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
