"""Many annotators at once, each a real client in its own thread with its own database connection.

On PostgreSQL (DATABASE_URL=postgres://...) 50 annotators; on SQLite fewer. Every label submitted
must be stored exactly once, every item must get exactly labels_per_item labels from different
annotators, and no slot may be handed to two annotators.
"""
import json
import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from annotate.models import Assignment, ComparisonTask, PairwiseLabel
from annotate.services import create_tasks
from core.roles import ANNOTATOR

from .conftest import make_product


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_lose_no_label_and_share_no_slot(project, make_user):
    postgres = connection.vendor == "postgresql"
    n_annotators, products, per_product = (50, 5, 6) if postgres else (6, 2, 5)
    project.labels_per_item = 2
    project.save()
    for i in range(products):
        make_product(project, f"P{i}", generations=per_product)
    create_tasks(project, images=False, seed=0)
    n_tasks = ComparisonTask.objects.count()
    users = [make_user(f"c{i:02d}", ANNOTATOR) for i in range(n_annotators)]
    next_url = reverse("annotate:api_next", args=[project.slug, "pair"])
    submit_url = reverse("annotate:api_submit", args=[project.slug, "pair"])
    barrier = threading.Barrier(n_annotators)
    lock = threading.Lock()
    claims, stored, problems = [], [], []

    def annotate(user):
        try:
            client = Client()
            client.force_login(user)
            barrier.wait(timeout=60)
            while True:
                response = client.get(next_url)
                if response.status_code == 204:
                    break
                if response.status_code != 200:
                    problems.append((user.username, "next", response.status_code, response.content[:200]))
                    break
                task = response.json()
                body = json.dumps({"assignment": task["assignment"], "choice": "a" if task["task"] % 2 else "b"})
                first = client.post(submit_url, data=body, content_type="application/json")
                retry = client.post(submit_url, data=body, content_type="application/json")  # a double click
                with lock:
                    claims.append(task["assignment"])
                    if first.status_code == 201 and retry.status_code == 200 and first.json()["id"] == retry.json()["id"]:
                        stored.append((user.username, task["task"], first.json()["id"]))
                    else:
                        problems.append((user.username, "submit", first.status_code, first.content[:200],
                                         retry.status_code))
        except Exception as exc:  # reported below, with the thread's user
            problems.append((user.username, "exception", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "an annotator thread hung"
    assert problems == []
    # no slot was handed out twice, and every claim was labelled
    assert len(claims) == len(set(claims)) == 2 * n_tasks
    # every label that was acknowledged is in the database, once
    in_db = set(PairwiseLabel.objects.values_list("annotator__username", "task_id", "id"))
    assert set(stored) == in_db and len(in_db) == 2 * n_tasks
    # each item: exactly 2 labels, from 2 different annotators
    per_task = Counter(task_id for _, task_id, _ in in_db)
    assert set(per_task.values()) == {2} and len(per_task) == n_tasks
    assert Assignment.objects.filter(done_at__isnull=True).count() == 0
    assert len({name for name, _, _ in stored}) > 1  # the work was actually shared
