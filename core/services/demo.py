"""The demo project a new user sees after the run command: sample photos and one user per role."""
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.text import slugify

from core.models import Project
from core.roles import ANNOTATOR, ML_ENGINEER, QA
from core.services.accounts import create_user
from core.services.imports import ImportReport, import_manifest

SAMPLE_MANIFEST = Path(settings.BASE_DIR) / "sample_data" / "manifest.jsonl"
DEMO_USERS = {"annotator": [ANNOTATOR], "mlengineer": [ML_ENGINEER], "qa": [QA]}


def logins_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-logins.txt"


def seed_demo(name: str = "Demo", manifest: Path = SAMPLE_MANIFEST) -> tuple[Project, ImportReport, dict[str, str]]:
    """Idempotent: the project and users are created once; passwords are kept in the data folder."""
    project, _ = Project.objects.get_or_create(name=name, defaults={"slug": slugify(name)})
    report = import_manifest(project, manifest)
    logins = read_logins()
    User = get_user_model()
    for username, roles in DEMO_USERS.items():
        if username in logins and User.objects.filter(username=username).exists():
            continue
        _, password = create_user(username, None, roles, update=True)
        logins[username] = password
    path = logins_file()
    path.write_text("".join(f"{user} {password}\n" for user, password in logins.items()))
    path.chmod(0o600)
    return project, report, logins


def read_logins() -> dict[str, str]:
    path = logins_file()
    if not path.exists():
        return {}
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
