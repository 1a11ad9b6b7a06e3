"""Fixtures shared by the whole suite: users per role, a demo project, a real Celery worker."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from core.roles import ANNOTATOR, ML_ENGINEER, QA

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path_factory):
    settings.MEDIA_ROOT = str(tmp_path_factory.mktemp("media"))


@pytest.fixture
def make_user(db):
    from core.services.accounts import create_user

    def make(username, *roles, password="correct-horse-9"):
        user, _ = create_user(username, password, list(roles))
        return user

    return make


@pytest.fixture
def annotator(make_user):
    return make_user("ann", ANNOTATOR)


@pytest.fixture
def ml_engineer(make_user):
    return make_user("ml", ML_ENGINEER)


@pytest.fixture
def qa_user(make_user):
    return make_user("qa", QA)


@pytest.fixture
def project(db):
    from core.models import Project

    return Project.objects.create(name="Test project", slug="test-project")


@pytest.fixture
def demo_project(project):
    """The test project filled from the shipped sample manifest (8 products, 33 catalog photos)."""
    from core.services.imports import import_manifest

    report = import_manifest(project, SAMPLE / "manifest.jsonl")
    assert not report.errors, report.errors
    return project


@pytest.fixture
def sample_dir():
    return SAMPLE


@pytest.fixture
def eager_celery():
    """Tasks run inline in the test process (for service paths that enqueue a task)."""
    from config.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def _worker_env() -> dict:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db.get('USER') or ''}:{db.get('PASSWORD') or ''}@{db.get('HOST') or ''}:"
            f"{db.get('PORT') or 5432}/{db['NAME']}"
        )
    env["STAGECRAFT_MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["CELERY_TASK_ALWAYS_EAGER"] = "0"
    return env


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real `celery worker` process on the configured broker and the test database.

    With CELERY_BROKER_URL=redis://... this is the production path (Redis + PostgreSQL in CI);
    otherwise the embedded filesystem broker.
    """
    # The filesystem broker keys messages by queue name, so a private queue per test is enough
    # to keep a developer's running worker from taking the test's tasks.
    env = _worker_env()
    queue = f"test-{os.getpid()}-{time.monotonic_ns()}"
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield {"queue": queue, "process": proc, "log": tmp_path / "worker.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_for(predicate, timeout=60.0, interval=0.2, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
