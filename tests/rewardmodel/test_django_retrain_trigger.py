"""Retraining after every N new labels, triggered from the label-submit paths (annotate submit, QA review).

Labels go through the real services; their commit callbacks run the real `rewardmodel.maybe_retrain`
task (Celery eager). The training task that a started run enqueues is captured, not executed."""
from __future__ import annotations

import pytest
from django.core.cache import cache

from annotate import services as annotate
from annotate.models import Assignment, ImageLabel
from core.models import TrainingRun
from gating.services import review
from rewardmodel.selectors import labels_since
from rewardmodel.tasks import maybe_retrain as maybe_retrain_task
from tests.rewardmodel.test_django_data import build_labelled_project, reward_settings  # noqa: F401  (fixture)


@pytest.fixture
def project_with_history(demo_project, annotator, qa_user, reward_settings, eager_celery):
    """86 labels and a finished run, so only labels stored from here on are new; open queues for
    a second annotator."""
    cache.clear()
    built = build_labelled_project(demo_project, annotator, qa_user)
    TrainingRun.objects.create(project=demo_project, kind="reward", state=TrainingRun.State.SUCCEEDED)
    annotate.create_tasks(demo_project, seed=0)
    yield built
    cache.clear()


def committed(django_capture_on_commit_callbacks, store):
    """Store a label, then run its commit callbacks; returns the callbacks those register in turn
    (the enqueue of a training run that the retrain check started)."""
    with django_capture_on_commit_callbacks() as label_callbacks:
        store()
    with django_capture_on_commit_callbacks() as started:
        for callback in label_callbacks:
            callback()
    return started


def submit_pair(user, project):
    slot = annotate.next_assignment(user, project, Assignment.Kind.PAIR)
    return annotate.submit_pair_label(user, slot.pk, "a")


def submit_image(user, project):
    slot = annotate.next_assignment(user, project, Assignment.Kind.IMAGE)
    return annotate.submit_image_label(user, slot.pk, True, True)


def auto_runs(project):
    return list(TrainingRun.objects.filter(project=project, kind="reward", params__trigger__startswith="auto"))


def test_a_run_is_queued_when_the_nth_new_label_is_committed_and_not_before(
        demo_project, make_user, qa_user, project_with_history, settings, django_capture_on_commit_callbacks):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 3
    settings.STAGECRAFT_RETRAIN_CHECK_SECONDS = 0  # check on every label
    second = make_user("ann2", "annotator")

    assert committed(django_capture_on_commit_callbacks, lambda: submit_pair(second, demo_project)) == []
    assert committed(django_capture_on_commit_callbacks, lambda: submit_image(second, demo_project)) == []
    assert auto_runs(demo_project) == []

    # the third new label is a QA rejection of an ad no QA user has reviewed yet
    not_reviewed = project_with_history["bad"][1]
    started = committed(django_capture_on_commit_callbacks,
                        lambda: review(not_reviewed, qa_user, approve=False, reason_tags=["wrong_scale"]))
    [run] = auto_runs(demo_project)
    assert run.state == TrainingRun.State.QUEUED and run.params["trigger"] == "auto after 3 new labels"
    assert len(started) == 1  # the training task is enqueued when the run's transaction commits

    # while it is queued, more labels start nothing
    assert committed(django_capture_on_commit_callbacks, lambda: submit_pair(second, demo_project)) == []
    assert len(auto_runs(demo_project)) == 1


def test_a_qa_decision_changed_later_is_not_a_new_label(demo_project, qa_user, project_with_history, settings,
                                                        django_capture_on_commit_callbacks):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 1
    settings.STAGECRAFT_RETRAIN_CHECK_SECONDS = 0
    reviewed = project_with_history["good"][0]  # QA labelled it in the fixture
    committed(django_capture_on_commit_callbacks, lambda: review(reviewed, qa_user, approve=False,
                                                                 reason_tags=["poor_aesthetics"]))
    assert auto_runs(demo_project) == []


def test_checks_are_throttled_per_project_and_beat_catches_up(demo_project, make_user, project_with_history, settings,
                                                              django_capture_on_commit_callbacks):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 2
    settings.STAGECRAFT_RETRAIN_CHECK_SECONDS = 60
    second = make_user("ann2", "annotator")

    committed(django_capture_on_commit_callbacks, lambda: submit_pair(second, demo_project))  # checked: 1 new
    committed(django_capture_on_commit_callbacks, lambda: submit_pair(second, demo_project))  # inside the window
    assert auto_runs(demo_project) == []

    with django_capture_on_commit_callbacks():
        maybe_retrain_task.delay(demo_project.pk)  # what the periodic beat check does
    [run] = auto_runs(demo_project)
    assert run.params["trigger"] == "auto after 2 new labels"


def test_with_automatic_retraining_off_labels_start_no_run(demo_project, make_user, project_with_history, settings,
                                                  django_capture_on_commit_callbacks):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 0
    settings.STAGECRAFT_RETRAIN_CHECK_SECONDS = 0
    second = make_user("ann2", "annotator")
    for _ in range(3):
        committed(django_capture_on_commit_callbacks, lambda: submit_image(second, demo_project))
    assert TrainingRun.objects.filter(project=demo_project).count() == 1  # the fixture's finished run


def test_product_intact_only_labels_do_not_count_towards_retraining(demo_project, make_user, project_with_history,
                                                                     settings, django_capture_on_commit_callbacks):
    settings.STAGECRAFT_RETRAIN_EVERY_N_LABELS = 1
    settings.STAGECRAFT_RETRAIN_CHECK_SECONDS = 0
    before = labels_since(demo_project)
    consistency_only = project_with_history["bad"][2]
    committed(django_capture_on_commit_callbacks, lambda: ImageLabel.objects.create(
        generation=consistency_only, annotator=make_user("ann2", "annotator"), product_intact=False))
    assert labels_since(demo_project) == before
    assert auto_runs(demo_project) == []

