"""Read-only queries for the consistency pages."""
from __future__ import annotations

from django.db.models import Q

from consistency.models import MaskCorrection
from core.models import ModelVersion, Project, TrainingRun
from generation.models import Generation

# metric → (label, threshold key, "max"/"min") for the metrics table
METRIC_ROWS = [
    ("area_change", "Area change", "max_area_change", "abs_max"),
    ("iou", "Mask IoU after alignment", "min_iou", "min"),
    ("expansion", "Outline expansion", "max_expansion", "max"),
    ("shrinkage", "Shrinkage (part missing)", "max_shrinkage", "max"),
    ("boundary_f", "Boundary F-score", "min_boundary_f", "min"),
    ("ssim", "SSIM inside product", "min_ssim", "min"),
    ("delta_e_mean_colour", "ΔE2000 of mean colour", "max_delta_e", "max"),
    ("delta_e_median", "Median ΔE2000", None, None),
    ("colour_changed_fraction", "Share of pixels with ΔE > 10", "max_colour_changed_fraction", "max"),
    ("edge_difference", "Edge/print difference", "max_edge_difference", "max"),
    ("scale", "Scale (original → generated)", None, None),
    ("shift", "Shift (product sizes)", None, None),
]


def metrics_table(consistency: dict | None) -> list[dict]:
    if not consistency:
        return []
    metrics = consistency.get("metrics") or {}
    th = consistency.get("thresholds") or {}
    rows = []
    for key, label, th_key, kind in METRIC_ROWS:
        if key not in metrics:
            continue
        value = metrics[key]
        limit = th.get(th_key) if th_key else None
        ok = None
        if value is not None and limit is not None:
            if kind == "abs_max":
                ok = abs(value) <= limit or bool(th.get("allow_rescale"))
            elif kind == "max":
                ok = value <= limit
            else:
                ok = value >= limit
        rows.append({"key": key, "label": label, "value": value, "limit": limit,
                     "limit_kind": {"abs_max": "≤ ±", "max": "≤", "min": "≥"}.get(kind, ""), "ok": ok})
    return rows


def generation_for_page(pk: int) -> Generation:
    return Generation.objects.select_related("product", "product__project", "consistency_model").get(pk=pk)


def corrections_for(generation: Generation):
    source = generation.product.source_image
    q = Q(generation=generation)
    if source is not None:
        q |= Q(source_image=source, target=MaskCorrection.Target.ORIGINAL)
    return MaskCorrection.objects.filter(q).select_related("created_by").order_by("-created_at", "-id")


def versions(project: Project):
    return ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY).select_related(
        "promoted_by").order_by("-version")


def runs(project: Project, limit: int = 10):
    return TrainingRun.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY).select_related(
        "model_version", "started_by").order_by("-created_at")[:limit]


def run_as_dict(run: TrainingRun) -> dict:
    return {
        "id": run.pk, "state": run.state, "progress": run.progress, "log": run.log,
        "model_version": None if run.model_version is None else {
            "id": run.model_version.pk, "version": run.model_version.version, "status": run.model_version.status},
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def checked_generations(project: Project, limit: int = 60):
    return Generation.objects.filter(product__project=project, status=Generation.Status.SUCCEEDED).select_related(
        "product").order_by("-updated_at")[:limit]


def check_counts(project: Project) -> dict:
    qs = Generation.objects.filter(product__project=project, status=Generation.Status.SUCCEEDED)
    return {"total": qs.count(), "passed": qs.filter(consistency_passed=True).count(),
            "failed": qs.filter(consistency_passed=False).count(),
            "unchecked": qs.filter(consistency_passed__isnull=True).count()}


def failed_generations(project: Project, limit: int = 12):
    return Generation.objects.filter(product__project=project, consistency_passed=False).select_related(
        "product").order_by("-updated_at")[:limit]
