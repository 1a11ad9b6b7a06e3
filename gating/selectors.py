"""Reads for QA, export and the monitoring dashboard."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotate.models import ImageLabel, PairwiseLabel
from core.models import ModelVersion, Project
from generation.models import Generation


def _qa_labels():
    return ImageLabel.objects.filter(generation=OuterRef("pk"), source=ImageLabel.Source.QA)


def approved_generations(project: Project, since: datetime | None = None) -> QuerySet:
    """Ads QA approved: the set the export and the downstream API hand out."""
    approved = ImageLabel.objects.filter(source=ImageLabel.Source.QA, background_appropriate=True, product_intact=True)
    if since is not None:
        approved = approved.filter(created_at__gte=since)
    return (Generation.objects.filter(product__project=project, id__in=approved.values("generation_id"))
            .select_related("product", "reward_model", "consistency_model", "retrieval_source")
            .order_by("id"))


@dataclass
class QAFilters:
    category: str = ""
    backend: str = ""
    min_reward: float | None = None
    max_reward: float | None = None
    model_version: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    sort: str = "-created_at"
    include_reviewed: bool = False


SORTS = {"-created_at", "created_at", "-reward_score", "reward_score"}


def qa_queue(project: Project, filters: QAFilters) -> QuerySet:
    """Ads the gate passed, newest first, without those QA already reviewed (unless asked)."""
    qs = (Generation.objects.filter(product__project=project, gate_status=Generation.Gate.PASSED)
          .select_related("product", "reward_model")
          .annotate(qa_reviewed=Exists(_qa_labels())))
    if not filters.include_reviewed:
        qs = qs.filter(qa_reviewed=False)
    if filters.category:
        qs = qs.filter(product__category=filters.category)
    if filters.backend:
        qs = qs.filter(backend=filters.backend)
    if filters.min_reward is not None:
        qs = qs.filter(reward_score__gte=filters.min_reward)
    if filters.max_reward is not None:
        qs = qs.filter(reward_score__lte=filters.max_reward)
    if filters.model_version is not None:
        qs = qs.filter(reward_model__version=filters.model_version)
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lte=filters.until)
    return qs.order_by(filters.sort if filters.sort in SORTS else "-created_at", "id")


def filter_choices(project: Project) -> dict:
    generations = Generation.objects.filter(product__project=project)
    return {
        "categories": sorted(set(generations.values_list("product__category", flat=True))),
        "backends": sorted(set(generations.values_list("backend", flat=True))),
        "model_versions": sorted(set(generations.exclude(reward_model=None).values_list("reward_model__version", flat=True))),
    }


def provenance(generation: Generation) -> dict:
    """What the export and the API say about one approved ad."""
    decision = generation.gate_decisions.filter(is_current=True).first()
    return {
        "id": generation.id,
        "product": {"id": generation.product_id, "title": generation.product.title,
                    "category": generation.product.category, "external_id": generation.product.external_id},
        "backend": generation.backend, "backend_version": generation.backend_version,
        "params": generation.params, "seed": generation.seed,
        "retrieval_source": generation.retrieval_source_id,
        "image": generation.image.name, "sha256": generation.sha256,
        "width": generation.width, "height": generation.height,
        "reward_score": generation.reward_score,
        "reward_model_version": generation.reward_model.version if generation.reward_model else None,
        "consistency_passed": generation.consistency_passed,
        "consistency_model_version": generation.consistency_model.version if generation.consistency_model else None,
        "gate_reasons": decision.reasons if decision else [],
        "created_at": generation.created_at.isoformat(),
    }


def histogram(values: list[float], bins: int = 10, lo: float = 0.0, hi: float = 1.0) -> list[int]:
    if not values:
        return [0] * bins
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    return counts.tolist()


def dashboard(project: Project) -> dict:
    generations = Generation.objects.filter(product__project=project)
    gated = generations.exclude(gate_status=Generation.Gate.PENDING)
    passed = gated.filter(gate_status=Generation.Gate.PASSED)
    qa = ImageLabel.objects.filter(generation__product__project=project, source=ImageLabel.Source.QA)
    qa_on_passed = qa.filter(generation__gate_status=Generation.Gate.PASSED)
    qa_rejected_passed = qa_on_passed.filter(Q(background_appropriate=False) | Q(product_intact=False))
    promoted = ModelVersion.objects.filter(project=project, kind="reward", status="promoted").first()
    since = promoted.created_at if promoted else None
    labels_since = (
        PairwiseLabel.objects.filter(task__project=project, **({"created_at__gt": since} if since else {})).count()
        + ImageLabel.objects.filter(generation__product__project=project,
                                    **({"created_at__gt": since} if since else {})).count()
    )
    per_version = {}
    for version, score in generations.exclude(reward_score=None).values_list("reward_model__version", "reward_score"):
        per_version.setdefault(f"v{version}" if version else "unversioned", []).append(score)
    n_gated, n_qa = gated.count(), qa_on_passed.count()
    return {
        "generations": generations.count(),
        "gated": n_gated,
        "passed": passed.count(),
        "pass_rate": passed.count() / n_gated if n_gated else None,
        "qa_reviewed": n_qa,
        "qa_override_rate": qa_rejected_passed.count() / n_qa if n_qa else None,
        "approved": approved_generations(project).count(),
        "labels_since_retrain": labels_since,
        "promoted_reward_version": promoted.version if promoted else None,
        "score_histograms": {k: histogram(v) for k, v in sorted(per_version.items())},
    }
