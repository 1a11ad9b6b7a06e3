"""Reads of the annotation app: what an annotator is shown, queue progress, quality statistics."""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from annotate.metrics import cohen_kappa, krippendorff_alpha, median_or_none
from annotate.models import REASON_TAGS, Assignment, ComparisonTask, ImageLabel, ImageTask, PairwiseLabel
from core.models import Project, SourceImage


def media_url(name: str) -> str:
    return reverse("media", args=[name]) if name else ""


def _original_url(product) -> str:
    source = SourceImage.objects.filter(product=product).order_by("id").first()
    return media_url(source.image.name) if source else ""


def task_payload(assignment: Assignment) -> dict:
    """What the annotator sees: images and product text. Never scores, backends or others' labels."""
    data = {
        "assignment": assignment.pk,
        "kind": assignment.kind,
        "expires_at": assignment.expires_at.isoformat() if assignment.expires_at else None,
    }
    if assignment.kind == Assignment.Kind.PAIR:
        task = ComparisonTask.objects.select_related("generation_a__product", "generation_b").get(
            pk=assignment.comparison_task_id)
        product = task.generation_a.product
        data.update(task=task.pk, a=media_url(task.generation_a.image.name), b=media_url(task.generation_b.image.name))
    else:
        task = ImageTask.objects.select_related("generation__product").get(pk=assignment.image_task_id)
        product = task.generation.product
        data.update(task=task.pk, image=media_url(task.generation.image.name))
    data.update(product={"title": product.title, "category": product.category}, original=_original_url(product))
    return data


def reason_tags() -> list[dict]:
    keys = "qwerty"
    return [{"key": keys[i], "tag": tag, "label": label} for i, (tag, label) in enumerate(REASON_TAGS)]


def queue_progress(project: Project, user=None) -> dict:
    """Per queue: open slots, labels stored, and (for a user) how many they labelled."""
    out = {}
    now = timezone.now()
    for kind in Assignment.Kind.values:
        slots = Assignment.objects.filter(project=project, kind=kind, slot__isnull=False)
        open_slots = slots.filter(done_at__isnull=True).filter(Q(annotator__isnull=True) | Q(expires_at__lte=now)).count()
        row = {"open": open_slots, "claimed": slots.filter(done_at__isnull=True, expires_at__gt=now).count()}
        if kind == Assignment.Kind.PAIR:
            labels = PairwiseLabel.objects.filter(task__project=project)
        else:
            labels = ImageLabel.objects.filter(task__project=project)
        row["labels"] = labels.count()
        if user is not None:
            row["mine"] = labels.filter(annotator=user).count()
        out[kind] = row
    return out


# --- quality --------------------------------------------------------------------------------


def _pair_gold_correct(label: PairwiseLabel) -> bool:
    return label.choice == label.task.gold_choice


def _image_gold_correct(label: ImageLabel) -> bool:
    task = label.task
    checks = []
    if task.gold_background_appropriate is not None:
        checks.append(label.background_appropriate == task.gold_background_appropriate)
    if task.gold_product_intact is not None:
        checks.append(label.product_intact == task.gold_product_intact)
    return all(checks) if checks else False


def _annotator_rows(labels, gold_correct) -> dict[int, dict]:
    rows: dict[int, dict] = defaultdict(lambda: {"labels": 0, "times": [], "gold": 0, "gold_correct": 0})
    for label in labels:
        row = rows[label.annotator_id]
        row["username"] = label.annotator.username
        row["labels"] += 1
        if label.time_spent_ms:
            row["times"].append(label.time_spent_ms / 1000)
        if label.task is not None and label.task.is_gold:
            row["gold"] += 1
            row["gold_correct"] += int(gold_correct(label))
    for row in rows.values():
        row["median_s"] = median_or_none(row.pop("times"))
        row["gold_accuracy"] = row["gold_correct"] / row["gold"] if row["gold"] else None
    return rows


def _agreement(values_by_item: dict, usernames: dict[int, str]) -> dict:
    """values_by_item: item -> {annotator_id: value}."""
    alpha = krippendorff_alpha(list(v.values()) for v in values_by_item.values())
    by_annotator: dict[int, dict] = defaultdict(dict)
    for item, values in values_by_item.items():
        for annotator_id, value in values.items():
            by_annotator[annotator_id][item] = value
    pairs = []
    for first, second in combinations(sorted(by_annotator), 2):
        common = sorted(set(by_annotator[first]) & set(by_annotator[second]))
        if not common:
            continue
        kappa = cohen_kappa([by_annotator[first][i] for i in common], [by_annotator[second][i] for i in common])
        pairs.append({"a": usernames.get(first, first), "b": usernames.get(second, second), "items": len(common),
                      "kappa": kappa})
    overlapping = sum(1 for v in values_by_item.values() if len(v) >= 2)
    return {"alpha": alpha, "pairs": pairs, "overlapping_items": overlapping}


def quality_stats(project: Project) -> dict:
    """Per-annotator gold accuracy, speed, and agreement (Cohen's kappa per pair, Krippendorff's alpha)."""
    pair_labels = list(PairwiseLabel.objects.filter(task__project=project).select_related("task", "annotator"))
    image_labels = list(
        ImageLabel.objects.filter(task__project=project, source=ImageLabel.Source.ANNOTATOR).select_related("task", "annotator")
    )
    usernames = {label.annotator_id: label.annotator.username for label in pair_labels + image_labels}
    pair_values: dict = defaultdict(dict)
    for label in pair_labels:
        pair_values[label.task_id][label.annotator_id] = label.choice
    background_values: dict = defaultdict(dict)
    intact_values: dict = defaultdict(dict)
    for label in image_labels:
        if label.background_appropriate is not None:
            background_values[label.generation_id][label.annotator_id] = label.background_appropriate
        if label.product_intact is not None:
            intact_values[label.generation_id][label.annotator_id] = label.product_intact
    pair_rows = _annotator_rows(pair_labels, _pair_gold_correct)
    image_rows = _annotator_rows(image_labels, _image_gold_correct)
    annotators = []
    for annotator_id in sorted(set(pair_rows) | set(image_rows), key=lambda i: usernames[i]):
        p, i = pair_rows.get(annotator_id), image_rows.get(annotator_id)
        gold = (p["gold"] if p else 0) + (i["gold"] if i else 0)
        correct = (p["gold_correct"] if p else 0) + (i["gold_correct"] if i else 0)
        annotators.append({
            "username": usernames[annotator_id],
            "pair_labels": p["labels"] if p else 0,
            "image_labels": i["labels"] if i else 0,
            "pair_median_s": p["median_s"] if p else None,
            "image_median_s": i["median_s"] if i else None,
            "gold": gold,
            "gold_correct": correct,
            "gold_accuracy": correct / gold if gold else None,
        })
    return {
        "annotators": annotators,
        "pair_agreement": _agreement(pair_values, usernames),
        "background_agreement": _agreement(background_values, usernames),
        "intact_agreement": _agreement(intact_values, usernames),
        "totals": {"pair_labels": len(pair_labels), "image_labels": len(image_labels),
                   "gold_pair_tasks": ComparisonTask.objects.filter(project=project, is_gold=True).count(),
                   "gold_image_tasks": ImageTask.objects.filter(project=project, is_gold=True).count()},
    }


def bar_chart_svg(rows: list[tuple[str, float | None]], *, title: str, unit: str = "", max_value: float | None = None) -> str:
    """A small horizontal bar chart as inline SVG (no JS, no image files)."""
    from django.utils.html import escape

    width, bar_h, gap, label_w = 520, 18, 6, 140
    values = [v for _, v in rows if v is not None]
    top = max_value or (max(values) if values else 1) or 1
    height = 28 + len(rows) * (bar_h + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="16" font-weight="600">{escape(title)}</text>']
    for index, (name, value) in enumerate(rows):
        y = 26 + index * (bar_h + gap)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(name)}</text>')
        if value is None:
            parts.append(f'<text x="{label_w}" y="{y + 13}" font-size="12" fill="#667085">n/a</text>')
            continue
        w = max(1, int((width - label_w - 70) * min(value / top, 1)))
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#2d6cdf" rx="3"></rect>')
        text = f"{value:.0%}" if unit == "%" else f"{value:.1f}{unit}"
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 13}" font-size="12">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)
