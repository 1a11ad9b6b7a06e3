"""The labelling API and pages as clients use them: roles, CSRF, status codes, what annotators see."""
import base64
import json
from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotate.models import Assignment, PairwiseLabel
from core.models import ModelVersion
from generation.models import Generation


def url(name, project, queue=None):
    args = [project.slug] + ([queue] if queue else [])
    return reverse(f"annotate:{name}", args=args)


def post_json(client, path, data):
    return client.post(path, data=json.dumps(data), content_type="application/json")


def test_label_pages_are_for_annotators(client, queued_project, annotator, ml_engineer, qa_user):
    for screen in ("pairs", "images"):
        path = reverse("annotate:screen", args=[queued_project.slug, screen])
        client.logout()
        assert client.get(path).status_code == 302  # anonymous -> login
        client.force_login(annotator)
        page = client.get(path)
        assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
        for other in (ml_engineer, qa_user):
            client.force_login(other)
            assert client.get(path).status_code == 403
    client.force_login(annotator)
    assert client.get(reverse("annotate:screen", args=[queued_project.slug, "nope"])).status_code == 404


def test_labelling_index_and_stats_pages(client, queued_project, annotator, ml_engineer, qa_user):
    client.force_login(annotator)
    index = client.get(reverse("annotate:index")).content.decode()
    assert "Compare pairs" in index and "Quality stats" not in index
    assert client.get(reverse("annotate:stats", args=[queued_project.slug])).status_code == 403
    for user in (ml_engineer, qa_user):
        client.force_login(user)
        assert client.get(reverse("annotate:stats", args=[queued_project.slug])).status_code == 200
        assert "Quality stats" in client.get(reverse("annotate:index")).content.decode()


def test_next_submit_undo_through_the_api(client, queued_project, annotator):
    client.force_login(annotator)
    response = client.get(url("api_next", queued_project, "pair"))
    assert response.status_code == 200
    task = response.json()
    assert set(task) == {"assignment", "kind", "task", "expires_at", "product", "original", "a", "b"}
    assert task["a"].startswith("/media/") and task["original"].startswith("/media/")
    assert client.get(task["a"]).status_code == 200  # the image is served to the annotator
    body = {"assignment": task["assignment"], "choice": "b", "reason_tags": ["bad_edges"], "time_spent_ms": 2345}
    created = post_json(client, url("api_submit", queued_project, "pair"), body)
    assert created.status_code == 201
    repeat = post_json(client, url("api_submit", queued_project, "pair"), body)
    assert repeat.status_code == 200 and repeat.json()["id"] == created.json()["id"]
    label = PairwiseLabel.objects.get()
    assert (label.choice, label.reason_tags, label.time_spent_ms) == ("b", ["bad_edges"], 2345)
    undo = client.post(url("api_undo", queued_project, "pair"))
    assert undo.status_code == 200 and undo.json()["assignment"] == task["assignment"]
    assert not PairwiseLabel.objects.exists()
    assert client.post(url("api_undo", queued_project, "pair")).status_code == 404


def test_image_label_through_the_api(client, queued_project, annotator):
    client.force_login(annotator)
    task = client.get(url("api_next", queued_project, "image")).json()
    assert "image" in task and "a" not in task
    bad = post_json(client, url("api_submit", queued_project, "image"), {"assignment": task["assignment"]})
    assert bad.status_code == 400 and "background_appropriate" in bad.json()["detail"]
    ok = post_json(client, url("api_submit", queued_project, "image"),
                   {"assignment": task["assignment"], "background_appropriate": False, "product_intact": True})
    assert ok.status_code == 201


def test_annotators_never_see_scores_or_other_labels(client, project, annotator, make_user):
    from annotate.services import create_tasks

    from .conftest import make_product

    reward = ModelVersion.objects.create(project=project, kind="reward", version=1, status="promoted")
    make_product(project, generations=2, scores=[0.8123, 0.1177])
    Generation.objects.update(reward_model=reward)
    create_tasks(project)
    client.force_login(annotator)
    for queue, screen in (("pair", "pairs"), ("image", "images")):
        payload = client.get(url("api_next", project, queue)).content.decode()
        page = client.get(reverse("annotate:screen", args=[project.slug, screen])).content.decode()
        for text in (payload, page):
            assert "0.8123" not in text and "0.1177" not in text and "reward" not in text.lower()
            assert "test-backend" not in text
    # exports (everyone's labels) are for ML engineers and QA only
    assert client.get(reverse("annotate:api_export", args=[project.slug])).status_code == 403


def test_conflicts_are_409_with_a_message(client, queued_project, annotators):
    ann, other = annotators[0], annotators[1]
    client.force_login(ann)
    task = client.get(url("api_next", queued_project, "pair")).json()
    Assignment.objects.filter(pk=task["assignment"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    expired = post_json(client, url("api_submit", queued_project, "pair"), {"assignment": task["assignment"], "choice": "a"})
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]
    other_client = Client()
    other_client.force_login(other)
    theirs = other_client.get(url("api_next", queued_project, "pair")).json()
    assert theirs["assignment"] == task["assignment"]
    stolen = post_json(client, url("api_submit", queued_project, "pair"), {"assignment": theirs["assignment"], "choice": "a"})
    assert stolen.status_code == 409 and "not assigned to you" in stolen.json()["detail"]
    assert not PairwiseLabel.objects.exists()


def test_bad_requests_get_clear_errors(client, queued_project, annotator):
    client.force_login(annotator)
    task = client.get(url("api_next", queued_project, "pair")).json()
    bad_choice = post_json(client, url("api_submit", queued_project, "pair"), {"assignment": task["assignment"], "choice": "x"})
    assert bad_choice.status_code == 400 and "choice" in bad_choice.json()["detail"]
    bad_tag = post_json(client, url("api_submit", queued_project, "pair"),
                        {"assignment": task["assignment"], "choice": "a", "reason_tags": ["nope"]})
    assert bad_tag.status_code == 400 and "unknown reason tag" in bad_tag.json()["detail"]
    assert client.get(url("api_next", queued_project, "nope")).status_code == 404
    assert client.get(url("api_next", queued_project, "pair") + "?exclude=x").status_code == 400
    missing = post_json(client, url("api_submit", queued_project, "pair"), {"assignment": 10**9, "choice": "a"})
    assert missing.status_code == 404
    assert not PairwiseLabel.objects.exists()


def test_empty_queue_answers_204(client, project, annotator):
    client.force_login(annotator)
    assert client.get(url("api_next", project, "pair")).status_code == 204


def test_only_annotators_label_through_the_api(client, queued_project, ml_engineer, qa_user):
    assert client.get(url("api_next", queued_project, "pair")).status_code in (401, 403)
    for user in (ml_engineer, qa_user):
        client.force_login(user)
        assert client.get(url("api_next", queued_project, "pair")).status_code == 403
        assert post_json(client, url("api_submit", queued_project, "pair"), {"assignment": 1, "choice": "a"}).status_code == 403


def test_session_posts_need_the_csrf_token(queued_project, annotator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    task = client.get(url("api_next", queued_project, "pair")).json()
    body = {"assignment": task["assignment"], "choice": "a"}
    refused = post_json(client, url("api_submit", queued_project, "pair"), body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    page = client.get(reverse("annotate:screen", args=[queued_project.slug, "pairs"]))
    token = page.context["csrf_token"] if page.context else client.cookies["csrftoken"].value
    accepted = client.post(url("api_submit", queued_project, "pair"), data=json.dumps(body),
                           content_type="application/json", HTTP_X_CSRFTOKEN=str(token))
    assert accepted.status_code == 201


def test_basic_auth_drives_labelling(queued_project, annotator):
    client = Client()
    auth = "Basic " + base64.b64encode(b"ann:correct-horse-9").decode()
    task = client.get(url("api_next", queued_project, "pair"), HTTP_AUTHORIZATION=auth)
    assert task.status_code == 200
    done = client.post(url("api_submit", queued_project, "pair"), data=json.dumps({"assignment": task.json()["assignment"],
                       "choice": "tie"}), content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert done.status_code == 201
    wrong = client.get(url("api_next", queued_project, "pair"),
                       HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"ann:wrong").decode())
    assert wrong.status_code in (401, 403)


def test_create_tasks_button_is_for_ml_engineers(client, project, annotator, ml_engineer):
    from .conftest import make_product

    make_product(project, generations=3)
    client.force_login(annotator)
    assert client.post(reverse("annotate:create_tasks", args=[project.slug])).status_code == 403
    assert client.get(reverse("annotate:create_tasks", args=[project.slug])).status_code in (403, 405)
    client.force_login(ml_engineer)
    response = client.post(reverse("annotate:create_tasks", args=[project.slug]), follow=True)
    assert "3 comparison tasks and 3 image tasks created" in response.content.decode()
    assert project.comparison_tasks.count() == 3


def test_schema_lists_the_annotate_api(client, annotator):
    client.force_login(annotator)
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/json").content.decode()
    for path in ("/api/annotate/{slug}/{queue}/next/", "/api/annotate/{slug}/{queue}/labels/",
                 "/api/annotate/{slug}/{queue}/undo/", "/api/annotate/{slug}/export/"):
        assert path in schema
