"""Export and import of labels: JSONL and CSV for both queues, HFPC JSONL for single-image labels.

Import is idempotent: a record identical to a stored label is skipped; a record that contradicts a
stored label of the same annotator on the same item is refused with its line number (the stored
label is kept). Every record is written in its own transaction, so one bad line loses nothing else.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotate.models import Assignment, ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from annotate.services import AnnotateError, _clean_bool, _clean_tags, _clean_time
from core.models import Project, SourceImage
from core.services.imports import ImportFailed, ImportReport, jsonl_records
from generation.models import Generation

PAIR_FIELDS = ["task", "generation_a", "generation_b", "product", "annotator", "choice", "reason_tags",
               "time_spent_ms", "created_at", "is_gold"]
IMAGE_FIELDS = ["task", "generation", "product", "annotator", "source", "background_appropriate", "product_intact",
                "reason_tags", "time_spent_ms", "created_at", "is_gold"]
FORMATS = ("jsonl", "csv", "hfpc")
QUEUES = ("pair", "image")


# --- export ---------------------------------------------------------------------------------


def pair_records(project: Project):
    labels = (PairwiseLabel.objects.filter(task__project=project)
              .select_related("task__generation_a", "annotator").order_by("id"))
    for label in labels.iterator(chunk_size=2000):
        yield {
            "task": label.task_id, "generation_a": label.task.generation_a_id, "generation_b": label.task.generation_b_id,
            "product": label.task.generation_a.product_id, "annotator": label.annotator.username,
            "choice": label.choice, "reason_tags": list(label.reason_tags), "time_spent_ms": label.time_spent_ms,
            "created_at": label.created_at.isoformat(), "is_gold": label.task.is_gold,
        }


def image_records(project: Project):
    labels = (ImageLabel.objects.filter(generation__product__project=project)
              .select_related("generation", "task", "annotator").order_by("id"))
    for label in labels.iterator(chunk_size=2000):
        yield {
            "task": label.task_id, "generation": label.generation_id, "product": label.generation.product_id,
            "annotator": label.annotator.username, "source": label.source,
            "background_appropriate": label.background_appropriate, "product_intact": label.product_intact,
            "reason_tags": list(label.reason_tags), "time_spent_ms": label.time_spent_ms,
            "created_at": label.created_at.isoformat(), "is_gold": bool(label.task and label.task.is_gold),
        }


def _file_reference(name: str) -> str:
    """A path another tool can open: the local file when storage is a folder, else its storage URL."""
    try:
        return default_storage.path(name)
    except NotImplementedError:
        return default_storage.url(name)


def hfpc_records(project: Project):
    """HFPC form: {origin, generation, label}; label 1 = background appropriate."""
    labels = (ImageLabel.objects.filter(generation__product__project=project, background_appropriate__isnull=False)
              .select_related("generation").order_by("id"))
    originals: dict[int, str] = {}
    for label in labels.iterator(chunk_size=2000):
        product_id = label.generation.product_id
        if product_id not in originals:
            source = SourceImage.objects.filter(product_id=product_id).order_by("id").first()
            originals[product_id] = _file_reference(source.image.name) if source else ""
        yield {"origin": originals[product_id], "generation": _file_reference(label.generation.image.name),
               "label": int(label.background_appropriate)}


def _csv_value(value):
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def export_lines(project: Project, queue: str, fmt: str):
    """Yields the export as text chunks (streamed by the API and written by the command)."""
    if fmt not in FORMATS:
        raise AnnotateError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if queue not in QUEUES:
        raise AnnotateError(f"unknown queue {queue!r}; use {', '.join(QUEUES)}")
    if fmt == "hfpc":
        if queue != "image":
            raise AnnotateError("the HFPC format holds single-image labels only (queue=image)")
        for record in hfpc_records(project):
            yield json.dumps(record) + "\n"
        return
    records = pair_records(project) if queue == "pair" else image_records(project)
    if fmt == "jsonl":
        for record in records:
            yield json.dumps(record) + "\n"
        return
    fields = PAIR_FIELDS if queue == "pair" else IMAGE_FIELDS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_value(v) for k, v in record.items()})
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- import ---------------------------------------------------------------------------------


def _read_records(path: Path, fmt: str, report: ImportReport):
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=2):
                yield number, row
        return
    yield from jsonl_records(path, report)


def _user(username, cache):
    if not username:
        raise AnnotateError("needs 'annotator' (a username)")
    if username not in cache:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise AnnotateError(f"no user {username!r}; create the account first")
        cache[username] = user
    return cache[username]


def _int(record, key):
    try:
        return int(record.get(key))
    except (TypeError, ValueError):
        raise AnnotateError(f"needs {key!r} (a number)")


def _consume_slot(task, kind: str, user) -> None:
    """An imported label counts towards the item's labels_required, like a label given in the app."""
    field = "comparison_task" if kind == Assignment.Kind.PAIR else "image_task"
    now = timezone.now()
    mine = Assignment.objects.select_for_update().filter(**{field: task}, annotator=user).first()
    if mine is None:
        mine = (Assignment.objects.select_for_update().filter(**{field: task}, done_at__isnull=True, slot__isnull=False)
                .filter(annotator__isnull=True).order_by("slot").first())
    if mine is not None:
        mine.annotator, mine.done_at = user, now
        mine.claimed_at = mine.claimed_at or now
        mine.save(update_fields=["annotator", "done_at", "claimed_at"])


def _import_pair(project, record, users):
    user = _user(record.get("annotator"), users)
    a_id, b_id = _int(record, "generation_a"), _int(record, "generation_b")
    choice = record.get("choice")
    if choice not in PairwiseLabel.Choice.values:
        raise AnnotateError(f"choice must be one of {', '.join(PairwiseLabel.Choice.values)}")
    tags = _clean_tags(record.get("reason_tags"))
    spent = _clean_time(record.get("time_spent_ms"))
    with transaction.atomic():
        generations = {g.pk: g for g in Generation.objects.filter(pk__in=[a_id, b_id], product__project=project)}
        if len(generations) != 2:
            raise AnnotateError(f"generations {a_id} and {b_id} are not two generations of this project")
        if generations[a_id].product_id != generations[b_id].product_id:
            raise AnnotateError("a comparison needs two generations of the same product")
        task = ComparisonTask.objects.filter(project=project, generation_a_id=a_id, generation_b_id=b_id).first()
        if task is None:
            reversed_task = ComparisonTask.objects.filter(project=project, generation_a_id=b_id, generation_b_id=a_id).first()
            if reversed_task is not None:  # the same pair shown the other way round
                task = reversed_task
                choice = {"a": "b", "b": "a"}.get(choice, choice)
        if task is None:
            task = ComparisonTask.objects.create(project=project, generation_a_id=a_id, generation_b_id=b_id,
                                                 labels_required=project.labels_per_item)
            Assignment.objects.bulk_create([Assignment(project=project, kind="pair", comparison_task=task, slot=i)
                                            for i in range(task.labels_required)])
        existing = PairwiseLabel.objects.filter(task=task, annotator=user).first()
        if existing is not None:
            if existing.choice == choice and list(existing.reason_tags) == tags:
                return False
            raise AnnotateError(
                f"duplicate label: {user.username} already labelled this pair as {existing.choice!r} "
                f"{existing.reason_tags}; refusing {choice!r} {tags} (the stored label is kept)"
            )
        PairwiseLabel.objects.create(task=task, annotator=user, choice=choice, reason_tags=tags, time_spent_ms=spent)
        _consume_slot(task, Assignment.Kind.PAIR, user)
    return True


def _import_image(project, record, users):
    user = _user(record.get("annotator"), users)
    generation_id = _int(record, "generation")
    background = record.get("background_appropriate")
    intact = record.get("product_intact")
    background = None if background in (None, "") else _clean_bool(background, "background_appropriate")
    intact = None if intact in (None, "") else _clean_bool(intact, "product_intact")
    if background is None and intact is None:
        raise AnnotateError("needs background_appropriate and/or product_intact (true or false)")
    tags = _clean_tags(record.get("reason_tags"))
    spent = _clean_time(record.get("time_spent_ms"))
    source = record.get("source") or ImageLabel.Source.IMPORT
    if source not in ImageLabel.Source.values:
        raise AnnotateError(f"source must be one of {', '.join(ImageLabel.Source.values)}")
    with transaction.atomic():
        generation = Generation.objects.filter(pk=generation_id, product__project=project).first()
        if generation is None:
            raise AnnotateError(f"no generation {generation_id} in this project")
        existing = ImageLabel.objects.filter(generation=generation, annotator=user).first()
        if existing is not None:
            if (existing.background_appropriate, existing.product_intact, list(existing.reason_tags)) == (background, intact, tags):
                return False
            raise AnnotateError(
                f"duplicate label: {user.username} already labelled generation {generation_id} "
                f"(background_appropriate={existing.background_appropriate}, product_intact={existing.product_intact}); "
                "refusing a different label (the stored label is kept)"
            )
        task = ImageTask.objects.filter(generation=generation).first()
        ImageLabel.objects.create(generation=generation, task=task, annotator=user, source=source,
                                  background_appropriate=background, product_intact=intact, reason_tags=tags,
                                  time_spent_ms=spent)
        if task is not None:
            _consume_slot(task, Assignment.Kind.IMAGE, user)
    return True


def import_labels(project: Project, path, queue: str, fmt: str = "auto") -> ImportReport:
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown import format {fmt!r}; use {', '.join(FORMATS)}")
    if fmt == "hfpc":
        from core.services.imports import import_hfpc_labels

        return import_hfpc_labels(project, path)
    if queue not in QUEUES:
        raise ImportFailed(f"unknown queue {queue!r}; use {', '.join(QUEUES)}")
    report = ImportReport()
    users: dict = {}
    handler = _import_pair if queue == "pair" else _import_image
    for number, record in _read_records(path, fmt, report):
        try:
            created = handler(project, record, users)
        except AnnotateError as exc:
            report.errors.append(f"line {number}: {exc}")
            continue
        if created:
            report.created += 1
        else:
            report.skipped += 1
    return report
