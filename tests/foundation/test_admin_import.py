from django.urls import reverse

from core.models import CatalogImage, Product


def test_admin_action_imports_a_manifest_into_the_selected_project(client, project, sample_dir, settings, db):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.create_superuser("root", password="root-pass-123")
        client.force_login(admin)
        url = reverse("admin:core_project_changelist")
        form = client.post(url, {"action": "import_data", "_selected_action": [project.pk]})
        assert form.status_code == 200 and "Import into Test project" in form.content.decode()
        done = client.post(url, {"action": "import_data", "_selected_action": [project.pk], "apply": "1",
                                 "path": str(sample_dir / "manifest.jsonl"), "format": "auto", "category": ""},
                           follow=True)
        assert "Import queued as task" in done.content.decode()
        assert Product.objects.filter(project=project).count() == 8
        assert CatalogImage.objects.filter(project=project).count() == 33
    finally:
        app.conf.task_always_eager = False

