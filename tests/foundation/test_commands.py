import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from core.models import Project


def test_create_user_gives_roles_and_a_working_password(db, capsys):
    call_command("create_user", "maria", "--role", "annotator", "--role", "qa", "--password", "s3cret-pass-1")
    user = authenticate(username="maria", password="s3cret-pass-1")
    assert sorted(user.groups.values_list("name", flat=True)) == ["annotator", "qa"]
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", "maria", "--role", "qa")
    with pytest.raises(CommandError, match="at least one --role"):
        call_command("create_user", "nobody")


def test_seed_demo_is_idempotent_and_prints_logins(db, capsys, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    first = capsys.readouterr().out
    call_command("seed_demo")
    second = capsys.readouterr().out
    assert "41 created" in first and "41 already present" in second
    logins = [line for line in second.splitlines() if "login:" in line]
    assert len(logins) == 3 and logins == [line for line in first.splitlines() if "login:" in line]
    username, password = logins[0].split("login: ")[1].split(" / ")
    assert authenticate(username=username, password=password) is not None
    assert Project.objects.get().products.count() == 8


def test_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    import importlib

    import config.settings as settings_module

    monkeypatch.setenv("STAGECRAFT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = importlib.reload(settings_module).SECRET_KEY
    second = importlib.reload(settings_module).SECRET_KEY
    assert first == second and len(first) >= 40
    assert (tmp_path / "secret_key").read_text() == first
    monkeypatch.undo()
    importlib.reload(settings_module)
