"""Writes of the annotation app: claiming queue slots, storing and undoing labels, building tasks.

Queue semantics (see docs/annotate.md):
- every regular task has `labels_required` Assignment rows ("slots");
- claiming takes the highest-priority free slot (never claimed, or claim expired) of a task the
  annotator has not labelled or claimed, under `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL
  (SQLite: IMMEDIATE transactions serialise writers, which is equivalent);
- a claim expires after CLAIM_TTL and the slot goes back to the queue;
- a label is unique per (item, annotator): a repeated submit returns the stored label.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from annotate.models import REASON_TAGS, Assignment, ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from core.models import ModelVersion, Project
from generation.models import Generation

CLAIM_TTL = timedelta(minutes=10)
UNDO_WINDOW = timedelta(minutes=30)
MAX_EXCLUDE = 20
MAX_TIME_SPENT_MS = 60 * 60 * 1000
REASON_TAG_KEYS = [key for key, _ in REASON_TAGS]
KINDS = (Assignment.Kind.PAIR, Assignment.Kind.IMAGE)


class AnnotateError(Exception):
    """A request we refuse, with a message for the user. `status` is the HTTP status to answer."""

    status = 400


class NotFound(AnnotateError):
    status = 404


class ClaimConflict(AnnotateError):
    status = 409


def _task_field(kind: str) -> str:
    if kind == Assignment.Kind.PAIR:
        return "comparison_task"
    if kind == Assignment.Kind.IMAGE:
        return "image_task"
    raise AnnotateError(f"unknown queue {kind!r}; use 'pair' or 'image'")


def _lock(qs):
    """Row locks where the database has them; SQLite's IMMEDIATE transactions already serialise."""
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True, of=("self",))
    return qs


# --- claiming -------------------------------------------------------------------------------


def next_assignment(user, project: Project, kind: str, exclude=(), rng: random.Random | None = None):
    """The annotator's next item in this queue, claimed for CLAIM_TTL; None when nothing is left.

    `exclude` lists assignment ids the client already shows (current item, prefetched item), so a
    client can ask for the item after the one on screen.
    """
    task_field = _task_field(kind)
    exclude = [int(x) for x in list(exclude)[:MAX_EXCLUDE]]
    now = timezone.now()
    held = (
        Assignment.objects.filter(project=project, kind=kind, annotator=user, done_at__isnull=True, expires_at__gt=now)
        .exclude(pk__in=exclude)
        .order_by("claimed_at", "id")
        .first()
    )
    if held is not None:  # page reload: the same item again, with a fresh expiry
        Assignment.objects.filter(pk=held.pk, annotator=user).update(expires_at=now + CLAIM_TTL)
        held.expires_at = now + CLAIM_TTL
        return held
    rng = rng or random
    if project.gold_rate > 0 and rng.random() < project.gold_rate:
        gold = _claim_gold(user, project, kind, task_field, rng)
        if gold is not None:
            return gold
    return _claim_slot(user, project, kind, task_field)


def _claim_slot(user, project, kind, task_field):
    for _attempt in range(5):
        now = timezone.now()
        own_other = Assignment.objects.filter(**{task_field: OuterRef(task_field)}, annotator=user).exclude(
            pk=OuterRef("pk")
        )
        candidates = (
            Assignment.objects.filter(project=project, kind=kind, done_at__isnull=True, slot__isnull=False)
            .filter(Q(annotator__isnull=True) | Q(expires_at__lte=now))
            .filter(~Exists(own_other))
            .order_by("-priority", "id")
        )
        try:
            with transaction.atomic():
                slot = _lock(candidates).first()
                if slot is None:
                    return None
                slot.annotator = user
                slot.claimed_at = now
                slot.expires_at = now + CLAIM_TTL
                slot.save(update_fields=["annotator", "claimed_at", "expires_at"])
                return slot
        except IntegrityError:
            # The same annotator claimed another slot of this item in a parallel request: try again.
            continue
    return None


def _claim_gold(user, project, kind, task_field, rng):
    model = ComparisonTask if kind == Assignment.Kind.PAIR else ImageTask
    seen = Assignment.objects.filter(**{task_field: OuterRef("pk")}, annotator=user)
    gold_ids = list(model.objects.filter(project=project, is_gold=True).filter(~Exists(seen)).values_list("pk", flat=True)[:500])
    if not gold_ids:
        return None
    task = model.objects.get(pk=rng.choice(gold_ids))
    now = timezone.now()
    try:
        with transaction.atomic():
            return Assignment.objects.create(
                project=project, kind=kind, slot=None, is_gold=True, priority=task.priority, annotator=user,
                claimed_at=now, expires_at=now + CLAIM_TTL, **{task_field: task},
            )
    except IntegrityError:
        return None


# --- labels ---------------------------------------------------------------------------------


def _clean_tags(tags) -> list[str]:
    if tags in (None, ""):
        return []
    if isinstance(tags, str):
        tags = [t for t in tags.replace(";", ",").split(",") if t.strip()]
    if not isinstance(tags, (list, tuple)):
        raise AnnotateError("reason_tags must be a list of tag names")
    cleaned = []
    for tag in tags:
        tag = str(tag).strip()
        if tag not in REASON_TAG_KEYS:
            raise AnnotateError(f"unknown reason tag {tag!r}; known tags: {', '.join(REASON_TAG_KEYS)}")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def _clean_time(value) -> int:
    try:
        value = int(value or 0)
    except (TypeError, ValueError):
        raise AnnotateError("time_spent_ms must be a whole number of milliseconds")
    return max(0, min(value, MAX_TIME_SPENT_MS))


def _clean_bool(value, name: str) -> bool:
    if value in (True, "true", "True", "1", 1, "yes"):
        return True
    if value in (False, "false", "False", "0", 0, "no"):
        return False
    raise AnnotateError(f"{name} must be true or false")


def _locked_assignment(user, assignment_id, kind, project=None) -> Assignment:
    try:
        assignment_id = int(assignment_id)
    except (TypeError, ValueError):
        raise AnnotateError("assignment must be the id of the task you were given")
    qs = Assignment.objects.filter(pk=assignment_id, kind=kind)
    if project is not None:
        qs = qs.filter(project=project)
    assignment = qs.select_for_update().first()
    if assignment is None:
        raise NotFound(f"no {kind} task {assignment_id} in this queue")
    return assignment


def _check_claim(user, assignment: Assignment, now) -> None:
    if assignment.annotator_id != user.pk:
        raise ClaimConflict(
            "This task is not assigned to you (your claim expired and it went to another annotator). "
            "Nothing was stored; take the next task."
        )
    if assignment.done_at is not None:
        raise ClaimConflict("This task is already done. Nothing was stored; take the next task.")
    if assignment.expires_at is None or assignment.expires_at <= now:
        raise ClaimConflict(
            f"Your claim on this task expired (claims last {int(CLAIM_TTL.total_seconds() // 60)} minutes) and "
            "it went back to the queue. Nothing was stored; take the next task."
        )


def submit_pair_label(user, assignment_id, choice, reason_tags=(), time_spent_ms=0, project=None):
    """Store the annotator's choice. Returns (label, created); a repeated submit returns the stored one."""
    if choice not in PairwiseLabel.Choice.values:
        raise AnnotateError(f"choice must be one of {', '.join(PairwiseLabel.Choice.values)}")
    tags = _clean_tags(reason_tags)
    spent = _clean_time(time_spent_ms)
    with transaction.atomic():
        assignment = _locked_assignment(user, assignment_id, Assignment.Kind.PAIR, project)
        existing = PairwiseLabel.objects.filter(task_id=assignment.comparison_task_id, annotator=user).first()
        if existing is not None:
            return existing, False
        now = timezone.now()
        _check_claim(user, assignment, now)
        label = PairwiseLabel.objects.create(
            task_id=assignment.comparison_task_id, annotator=user, choice=choice, reason_tags=tags, time_spent_ms=spent
        )
        assignment.done_at = now
        assignment.save(update_fields=["done_at"])
    return label, True


def submit_image_label(user, assignment_id, background_appropriate, product_intact, reason_tags=(),
                       time_spent_ms=0, project=None):
    if background_appropriate is None or product_intact is None:
        raise AnnotateError("answer both questions: background_appropriate and product_intact (true or false)")
    background = _clean_bool(background_appropriate, "background_appropriate")
    intact = _clean_bool(product_intact, "product_intact")
    tags = _clean_tags(reason_tags)
    spent = _clean_time(time_spent_ms)
    with transaction.atomic():
        assignment = _locked_assignment(user, assignment_id, Assignment.Kind.IMAGE, project)
        task = assignment.image_task
        existing = ImageLabel.objects.filter(generation_id=task.generation_id, annotator=user).first()
        if existing is not None:
            return existing, False
        now = timezone.now()
        _check_claim(user, assignment, now)
        label = ImageLabel.objects.create(
            generation_id=task.generation_id, task=task, annotator=user, source=ImageLabel.Source.ANNOTATOR,
            background_appropriate=background, product_intact=intact, reason_tags=tags, time_spent_ms=spent,
        )
        assignment.done_at = now
        assignment.save(update_fields=["done_at"])
    return label, True


def undo_last_label(user, project: Project, kind: str) -> Assignment:
    """Delete the annotator's most recent label in this queue and give the item back to them."""
    task_field = _task_field(kind)
    now = timezone.now()
    with transaction.atomic():
        if kind == Assignment.Kind.PAIR:
            label = PairwiseLabel.objects.filter(annotator=user, task__project=project).order_by("-created_at", "-id").first()
        else:
            label = (ImageLabel.objects.filter(annotator=user, task__project=project, source=ImageLabel.Source.ANNOTATOR)
                     .order_by("-created_at", "-id").first())
        if label is None:
            raise NotFound("You have no label to undo in this queue.")
        if label.created_at < now - UNDO_WINDOW:
            raise AnnotateError(
                f"Your last label is older than {int(UNDO_WINDOW.total_seconds() // 60)} minutes and can no longer be undone."
            )
        assignment = (Assignment.objects.select_for_update()
                      .filter(**{task_field: label.task_id}, annotator=user).first())
        label.delete()
        if assignment is None:  # a label stored without a claim (e.g. imported): give the user a slot back
            assignment = Assignment.objects.create(
                project=project, kind=kind, slot=None, is_gold=label.task.is_gold, priority=label.task.priority,
                annotator=user, **{task_field: label.task},
            )
        assignment.done_at = None
        assignment.claimed_at = now
        assignment.expires_at = now + CLAIM_TTL
        assignment.save(update_fields=["done_at", "claimed_at", "expires_at"])
    return assignment


# --- building queues ------------------------------------------------------------------------


@dataclass
class TaskReport:
    comparisons: int = 0
    images: int = 0
    skipped: int = 0
    policy: str = "random"
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.comparisons} comparison tasks and {self.images} image tasks created, "
                f"{self.skipped} already queued; priority policy: {self.policy}")


def promoted_reward_model(project: Project):
    return ModelVersion.objects.filter(
        project=project, kind=ModelVersion.Kind.REWARD, status=ModelVersion.Status.PROMOTED
    ).first()


SCORE_SCALE = 0.1  # a reward-score gap of 0.1 halves (e^-1) the "uncertain pair" part of the priority
W_UNCERTAIN = 0.7
W_FEW_LABELS = 0.3


def pair_priority(score_a, score_b, product_labels: int, rng: random.Random) -> float:
    """Active selection: small reward-score gap (the model cannot tell them apart) and few labels first."""
    if score_a is None or score_b is None:
        uncertain = 0.5
    else:
        uncertain = math.exp(-abs(score_a - score_b) / SCORE_SCALE)
    return W_UNCERTAIN * uncertain + W_FEW_LABELS / (1 + product_labels) + 1e-3 * rng.random()


def image_priority(score, threshold: float, product_labels: int, rng: random.Random) -> float:
    """Single images: scores near the gate threshold are the uncertain ones."""
    uncertain = 0.5 if score is None else math.exp(-abs(score - threshold) / SCORE_SCALE)
    return W_UNCERTAIN * uncertain + W_FEW_LABELS / (1 + product_labels) + 1e-3 * rng.random()


def _product_label_counts(project: Project) -> dict[int, int]:
    counts: dict[int, int] = {}
    for row in (PairwiseLabel.objects.filter(task__project=project)
                .values("task__generation_a__product_id").annotate(n=Count("id"))):
        counts[row["task__generation_a__product_id"]] = counts.get(row["task__generation_a__product_id"], 0) + row["n"]
    for row in ImageLabel.objects.filter(generation__product__project=project).values("generation__product_id").annotate(n=Count("id")):
        counts[row["generation__product_id"]] = counts.get(row["generation__product_id"], 0) + row["n"]
    return counts


def _make_slots(project, kind, tasks, task_field):
    slots = [
        Assignment(project=project, kind=kind, slot=i, priority=task.priority, **{task_field: task})
        for task in tasks if not task.is_gold for i in range(task.labels_required)
    ]
    Assignment.objects.bulk_create(slots, batch_size=2000)


def create_tasks(project: Project, *, pairs: bool = True, images: bool = True, max_pairs_per_product: int | None = None,
                 seed: int | None = None) -> TaskReport:
    """Queue comparison tasks (pairs of succeeded generations of the same product) and image tasks.

    Idempotent: a pair (in either order) or a generation already queued is skipped.
    """
    rng = random.Random(seed)
    reward = promoted_reward_model(project)
    report = TaskReport(policy=f"active selection (reward model v{reward.version})" if reward else "random")
    label_counts = _product_label_counts(project) if reward else {}
    generations = list(
        Generation.objects.filter(product__project=project, status=Generation.Status.SUCCEEDED)
        .exclude(image="").order_by("product_id", "id")
    )

    def score(g):
        if reward is None or g.reward_score is None or g.reward_model_id != reward.pk:
            return None
        return g.reward_score

    by_product: dict[int, list[Generation]] = {}
    for g in generations:
        by_product.setdefault(g.product_id, []).append(g)
    with transaction.atomic():
        if pairs:
            existing = set(ComparisonTask.objects.filter(project=project).values_list("generation_a_id", "generation_b_id"))
            new_tasks = []
            for product_id, gens in by_product.items():
                candidates = [(a, b) for a, b in combinations(gens, 2)]
                rng.shuffle(candidates)
                made = 0
                for a, b in candidates:
                    if (a.pk, b.pk) in existing or (b.pk, a.pk) in existing:
                        report.skipped += 1
                        continue
                    if max_pairs_per_product is not None and made >= max_pairs_per_product:
                        break
                    if rng.random() < 0.5:  # no position bias: the better one is on either side
                        a, b = b, a
                    priority = (pair_priority(score(a), score(b), label_counts.get(product_id, 0), rng)
                                if reward else rng.random())
                    new_tasks.append(ComparisonTask(project=project, generation_a=a, generation_b=b,
                                                    labels_required=project.labels_per_item, priority=priority))
                    made += 1
            created = ComparisonTask.objects.bulk_create(new_tasks, batch_size=2000)
            if created and created[0].pk is None:  # backends without RETURNING ids
                created = list(ComparisonTask.objects.filter(project=project, assignments__isnull=True, is_gold=False))
            _make_slots(project, Assignment.Kind.PAIR, created, "comparison_task")
            report.comparisons = len(new_tasks)
        if images:
            queued = set(ImageTask.objects.filter(generation__product__project=project).values_list("generation_id", flat=True))
            new_images = []
            for g in generations:
                if g.pk in queued:
                    report.skipped += 1
                    continue
                priority = (image_priority(score(g), project.reward_threshold, label_counts.get(g.product_id, 0), rng)
                            if reward else rng.random())
                new_images.append(ImageTask(project=project, generation=g, labels_required=project.labels_per_item,
                                            priority=priority))
            created = ImageTask.objects.bulk_create(new_images, batch_size=2000)
            if created and created[0].pk is None:
                created = list(ImageTask.objects.filter(project=project, assignments__isnull=True, is_gold=False))
            _make_slots(project, Assignment.Kind.IMAGE, created, "image_task")
            report.images = len(new_images)
    return report


def mark_gold(task, answer: dict | str) -> None:
    """Make a task a gold item with a known answer: it is then served to every annotator at gold_rate.

    Pairs: answer is a choice ('a', 'b', 'tie', 'both_bad'). Images: {'background_appropriate': bool,
    'product_intact': bool}. Unclaimed regular slots are removed (gold items are not part of the k labels).
    """
    with transaction.atomic():
        if isinstance(task, ComparisonTask):
            if answer not in PairwiseLabel.Choice.values:
                raise AnnotateError(f"gold answer must be one of {', '.join(PairwiseLabel.Choice.values)}")
            task.gold_choice = answer
        else:
            if not isinstance(answer, dict) or not {"background_appropriate", "product_intact"} & set(answer):
                raise AnnotateError("gold answer for an image needs background_appropriate and/or product_intact")
            task.gold_background_appropriate = answer.get("background_appropriate")
            task.gold_product_intact = answer.get("product_intact")
        task.is_gold = True
        task.save()
        task.assignments.filter(annotator__isnull=True, done_at__isnull=True).delete()
        # claims in progress finish as gold labels; they are no longer regular slots
        task.assignments.filter(done_at__isnull=True).update(is_gold=True, slot=None)
