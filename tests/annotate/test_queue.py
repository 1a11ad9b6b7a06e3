"""Queue semantics: k different annotators per item, no item twice, expiry, idempotent submits, undo, gold."""
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from annotate.services import ClaimConflict, NotFound, next_assignment, submit_image_label, submit_pair_label

from .conftest import make_product

PAIR, IMAGE = Assignment.Kind.PAIR, Assignment.Kind.IMAGE


def label_all(user, project, kind=PAIR):
    """Label everything the queue gives this user; returns the task ids labelled."""
    seen = []
    while (a := next_assignment(user, project, kind)) is not None:
        if kind == PAIR:
            submit_pair_label(user, a.pk, "a")
        else:
            submit_image_label(user, a.pk, True, True)
        seen.append(a.task_id)
    return seen


def test_each_item_gets_k_labels_from_different_annotators(project, annotators):
    project.labels_per_item = 2
    project.save()
    make_product(project, generations=3)  # 3 pairs
    services.create_tasks(project, seed=0)
    assert Assignment.objects.filter(kind=PAIR).count() == 6
    first = label_all(annotators[0], project)
    second = label_all(annotators[1], project)
    third = label_all(annotators[2], project)
    assert sorted(first) == sorted(second) == sorted(ComparisonTask.objects.values_list("pk", flat=True))
    assert len(set(first)) == len(first) == 3  # never the same item twice
    assert third == []  # each item already has its 2 labels
    for task in ComparisonTask.objects.all():
        assert task.labels_required == 2
        assert set(task.labels.values_list("annotator__username", flat=True)) == {"ann0", "ann1"}


def test_reload_returns_the_claim_held_and_exclude_gives_the_next(queued_project, annotator):
    first = next_assignment(annotator, queued_project, PAIR)
    assert next_assignment(annotator, queued_project, PAIR).pk == first.pk  # reload: same item
    second = next_assignment(annotator, queued_project, PAIR, exclude=[first.pk])
    assert second.pk != first.pk and second.task_id != first.task_id
    assert Assignment.objects.filter(annotator=annotator, done_at__isnull=True).count() == 2


def test_queue_is_served_in_priority_order(queued_project, annotator):
    top = Assignment.objects.filter(kind=PAIR).order_by("-priority").first()
    assert next_assignment(annotator, queued_project, PAIR).pk == top.pk


def test_two_annotators_get_different_slots(queued_project, annotators):
    a = next_assignment(annotators[0], queued_project, PAIR)
    b = next_assignment(annotators[1], queued_project, PAIR)
    assert a.pk != b.pk  # labels_per_item=1: different items


def test_abandoned_claim_expires_and_returns_to_the_queue(queued_project, annotators):
    ann, other = annotators[0], annotators[1]
    claim = next_assignment(ann, queued_project, PAIR)
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    taken = next_assignment(other, queued_project, PAIR)
    assert taken.pk == claim.pk  # the highest-priority slot, free again
    assert taken.annotator == other
    # the first annotator's late submit is refused clearly and stores nothing
    with pytest.raises(ClaimConflict, match="not assigned to you"):
        submit_pair_label(ann, claim.pk, "a")
    assert not PairwiseLabel.objects.exists()
    label, created = submit_pair_label(other, claim.pk, "b")
    assert created and label.annotator == other


def test_expired_claim_submit_is_a_conflict(queued_project, annotator):
    claim = next_assignment(annotator, queued_project, PAIR)
    Assignment.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ClaimConflict, match="expired"):
        submit_pair_label(annotator, claim.pk, "a")
    assert not PairwiseLabel.objects.exists()
    # asking again gives the same item back (it is still the top of the queue)
    assert next_assignment(annotator, queued_project, PAIR).pk == claim.pk


def test_submitting_twice_stores_one_label(queued_project, annotator):
    claim = next_assignment(annotator, queued_project, PAIR)
    first, created = submit_pair_label(annotator, claim.pk, "a", ["poor_aesthetics"], 1200)
    again, created_again = submit_pair_label(annotator, claim.pk, "a", ["poor_aesthetics"], 1300)
    assert created and not created_again and first.pk == again.pk
    assert PairwiseLabel.objects.count() == 1
    assert Assignment.objects.get(pk=claim.pk).done_at is not None


def test_bad_input_is_refused_and_stores_nothing(queued_project, annotator):
    claim = next_assignment(annotator, queued_project, PAIR)
    with pytest.raises(services.AnnotateError, match="choice must be one of"):
        submit_pair_label(annotator, claim.pk, "c")
    with pytest.raises(services.AnnotateError, match="unknown reason tag 'ugly'"):
        submit_pair_label(annotator, claim.pk, "a", ["ugly"])
    with pytest.raises(NotFound):
        submit_pair_label(annotator, 999999, "a")
    image = next_assignment(annotator, queued_project, IMAGE)
    with pytest.raises(services.AnnotateError, match="answer both questions"):
        submit_image_label(annotator, image.pk, True, None)
    with pytest.raises(NotFound):  # a pair claim is not an image claim
        submit_image_label(annotator, claim.pk, True, True)
    assert not PairwiseLabel.objects.exists() and not ImageLabel.objects.exists()


def test_undo_gives_the_item_back(queued_project, annotator):
    first = next_assignment(annotator, queued_project, PAIR)
    submit_pair_label(annotator, first.pk, "a")
    second = next_assignment(annotator, queued_project, PAIR)
    submit_pair_label(annotator, second.pk, "tie")
    undone = services.undo_last_label(annotator, queued_project, PAIR)
    assert undone.pk == second.pk and undone.done_at is None and undone.annotator == annotator
    assert list(PairwiseLabel.objects.values_list("choice", flat=True)) == ["a"]
    label, created = submit_pair_label(annotator, second.pk, "b")
    assert created and label.choice == "b"
    services.undo_last_label(annotator, queued_project, PAIR)
    services.undo_last_label(annotator, queued_project, PAIR)
    assert not PairwiseLabel.objects.exists()
    with pytest.raises(NotFound):
        services.undo_last_label(annotator, queued_project, PAIR)


def test_undo_of_an_image_label(queued_project, annotator):
    claim = next_assignment(annotator, queued_project, IMAGE)
    submit_image_label(annotator, claim.pk, False, True, ["inappropriate_background"])
    assert services.undo_last_label(annotator, queued_project, IMAGE).pk == claim.pk
    assert not ImageLabel.objects.exists()


def test_gold_items_are_mixed_in_and_not_part_of_the_k_labels(queued_project, annotators):
    gold = ComparisonTask.objects.filter(project=queued_project).first()
    services.mark_gold(gold, "a")
    assert not gold.assignments.exists()  # its unclaimed slot is gone
    queued_project.gold_rate = 1.0
    queued_project.save()
    for ann in annotators[:2]:  # every annotator gets the gold item once
        claim = next_assignment(ann, queued_project, PAIR)
        assert claim.is_gold and claim.comparison_task_id == gold.pk
        submit_pair_label(ann, claim.pk, "a")
        nxt = next_assignment(ann, queued_project, PAIR)
        assert nxt.comparison_task_id != gold.pk
    assert gold.labels.count() == 2


def test_gold_rate_zero_never_serves_gold(queued_project, annotator):
    gold = ComparisonTask.objects.filter(project=queued_project).first()
    services.mark_gold(gold, "b")
    assert gold.pk not in label_all(annotator, queued_project)


def test_gold_rate_is_respected_on_average(project, annotators):
    for title in ("A", "B", "C", "D"):
        make_product(project, title, generations=5)  # 40 pairs
    services.create_tasks(project, seed=3)
    for task in ComparisonTask.objects.all()[:20]:
        services.mark_gold(task, "tie")
    project.gold_rate = 0.25
    project.save()
    rng = random.Random(5)
    served = []
    for _ in range(20):
        claim = next_assignment(annotators[0], project, PAIR, rng=rng)
        served.append(claim.is_gold)
        submit_pair_label(annotators[0], claim.pk, "a")
    assert 1 <= sum(served) <= 10  # 5 expected


def test_image_queue_labels_each_generation(queued_project, annotator):
    labelled = label_all(annotator, queued_project, IMAGE)
    assert sorted(labelled) == sorted(ImageTask.objects.values_list("pk", flat=True))
    assert ImageLabel.objects.filter(source="annotator").count() == 6
