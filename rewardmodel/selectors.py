"""Reads of the reward-model platform: versions, runs, label counts, and the charts of the Models page."""
from __future__ import annotations

from django.utils.html import escape

from annotate.models import ComparisonTask, ImageLabel, PairwiseLabel
from core.models import ModelVersion, Project, TrainingRun
from generation.models import Generation
from rewardmodel.models import RunHeartbeat

KIND = ModelVersion.Kind.REWARD
ACTIVE = (TrainingRun.State.QUEUED, TrainingRun.State.RUNNING)


def promoted_version(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind=KIND, status=ModelVersion.Status.PROMOTED).first()


def active_run(project: Project) -> TrainingRun | None:
    return TrainingRun.objects.filter(project=project, kind=KIND, state__in=ACTIVE).order_by("-created_at").first()


def recent_runs(project: Project, limit: int = 10):
    return list(TrainingRun.objects.filter(project=project, kind=KIND).select_related("model_version", "started_by")
                .order_by("-created_at")[:limit])


def labels_since(project: Project, since=None) -> int:
    """Pairwise + "background appropriate" image labels of the project created after `since` (all when
    None). Image labels that only answer "product intact" train the consistency checker, not this model."""
    pairs = PairwiseLabel.objects.filter(task__project=project)
    images = ImageLabel.objects.filter(generation__product__project=project, background_appropriate__isnull=False)
    if since is not None:
        pairs, images = pairs.filter(created_at__gt=since), images.filter(created_at__gt=since)
    return pairs.count() + images.count()


def label_project_id(label: PairwiseLabel | ImageLabel) -> int | None:
    """The project of a pairwise or image label: one primary-key lookup."""
    if isinstance(label, PairwiseLabel):
        return ComparisonTask.objects.filter(pk=label.task_id).values_list("project_id", flat=True).first()
    return Generation.objects.filter(pk=label.generation_id).values_list("product__project_id", flat=True).first()


def _m(metrics: dict, *path):
    cur = metrics
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def version_row(v: ModelVersion) -> dict:
    m = v.metrics or {}
    return {
        "v": v,
        "pairwise_accuracy": m.get("pairwise_accuracy"),
        "roc_auc": m.get("roc_auc"),
        "precision": _m(m, "threshold_choice", "precision"),
        "recall": _m(m, "threshold_choice", "recall"),
        "cosine_pairwise": _m(m, "baselines", "cosine", "pairwise_accuracy"),
        "cosine_auc": _m(m, "baselines", "cosine", "roc_auc"),
        "aesthetic_pairwise": _m(m, "baselines", "aesthetic_proxy", "pairwise_accuracy"),
        "aesthetic_auc": _m(m, "baselines", "aesthetic_proxy", "roc_auc"),
        "n_val": m.get("n_val"),
        "n_train": m.get("n_train"),
        "n_pairs": m.get("n_pairs"),
        "promotion": m.get("promotion") or {},
        "can_rollback": v.status == ModelVersion.Status.RETIRED and v.promoted_at is not None,
    }


def version_rows(project: Project) -> list[dict]:
    qs = ModelVersion.objects.filter(project=project, kind=KIND).select_related("promoted_by").order_by("-version")
    return [version_row(v) for v in qs]


def run_status(run: TrainingRun, log_lines: int = 80) -> dict:
    """What the Models page polls: state, progress, log tail, losses and the loss curve."""
    beat = RunHeartbeat.objects.filter(run_id=run.pk).first()
    lines = (run.log or "").splitlines()
    mv = run.model_version
    return {
        "id": run.pk,
        "state": run.state,
        "progress": round(run.progress, 4),
        "log": "\n".join(lines[-log_lines:]),
        "history": run.history or [],
        "loss_svg": loss_curve_svg(run.history or []),
        "model_version": {"id": mv.pk, "version": mv.version, "status": mv.status} if mv else None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": beat.beat_at.isoformat() if beat else None,
        "params": run.params or {},
        "done": run.state not in ACTIVE,
    }


# --- charts (inline SVG, no JS and no image files) ---------------------------------------------

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 270, 48, 16, 40, 36


def _axes(x0, x1, y0, y1, title: str, xlabel: str, ylabel: str, int_x: bool = False) -> list[str]:
    parts = [f'<text x="{PAD_L}" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
             f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#98a2b3"/>',
             f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#98a2b3"/>']
    for i in range(5):
        fy = i / 4
        y = H - PAD_B - fy * (H - PAD_T - PAD_B)
        parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{y0 + fy * (y1 - y0):.2f}</text>')
        parts.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eaecf0"/>')
        x = PAD_L + fy * (W - PAD_L - PAD_R)
        xv = x0 + fy * (x1 - x0)
        if int_x and abs(xv - round(xv)) > 1e-6:
            continue
        parts.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
                     + (f"{xv:.0f}" if int_x else f"{xv:.2f}") + "</text>")
    parts.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 4}" font-size="11" text-anchor="middle">{escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{(PAD_T + H - PAD_B) / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">{escape(ylabel)}</text>')
    return parts


def _polyline(points, x0, x1, y0, y1, colour, dash="") -> str:
    def sx(x):
        return PAD_L + (x - x0) / ((x1 - x0) or 1) * (W - PAD_L - PAD_R)

    def sy(y):
        return H - PAD_B - (y - y0) / ((y1 - y0) or 1) * (H - PAD_T - PAD_B)

    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2"{extra} points="{pts}"/>'


def _legend(items) -> str:
    out = []
    for i, (name, colour) in enumerate(items):
        x = W - PAD_R - 150 * (len(items) - i)
        out.append(f'<rect x="{x}" y="24" width="12" height="3" fill="{colour}"/>'
                   f'<text x="{x + 16}" y="29" font-size="11">{escape(name)}</text>')
    return "".join(out)


def _svg(parts, label: str, css: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>")


def loss_curve_svg(history: list[dict]) -> str:
    """Train and validation loss per epoch."""
    rows = [h for h in history if isinstance(h, dict) and h.get("epoch") is not None]
    if not rows:
        return ""
    values = [h[k] for h in rows for k in ("train_loss", "val_loss") if isinstance(h.get(k), (int, float))]
    if not values:
        return ""
    x0, x1 = 1, max(2, max(h["epoch"] for h in rows))
    y0, y1 = 0.0, max(values) * 1.05 or 1.0
    parts = _axes(x0, x1, y0, y1, "Loss per epoch", "epoch", "loss", int_x=True)
    for key, colour in (("train_loss", "#2d6cdf"), ("val_loss", "#e8590c")):
        pts = [(h["epoch"], h[key]) for h in rows if isinstance(h.get(key), (int, float))]
        if pts:
            parts.append(_polyline(pts, x0, x1, y0, y1, colour, "" if key == "train_loss" else "5,3"))
    parts.append(_legend([("train loss", "#2d6cdf"), ("validation loss", "#e8590c")]))
    return _svg(parts, "loss curve", "chart loss-curve")


def threshold_curve_svg(curve: list[dict], chosen: float | None, project_threshold: float | None = None) -> str:
    """Precision and recall on validation vs the gate threshold; the chosen threshold is marked."""
    pts = sorted((p for p in curve if p.get("threshold") is not None), key=lambda p: p["threshold"])
    if not pts:
        return ""
    x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    parts = _axes(x0, x1, y0, y1, "Precision / recall vs threshold (validation)", "threshold (score ≥ t passes)",
                  "fraction")
    parts.append(_polyline([(p["threshold"], p["precision"]) for p in pts], x0, x1, y0, y1, "#1e8e3e"))
    parts.append(_polyline([(p["threshold"], p["recall"]) for p in pts], x0, x1, y0, y1, "#7048e8", "5,3"))

    def vline(t, colour, label, dy):
        x = PAD_L + t * (W - PAD_L - PAD_R)
        return (f'<line x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{H - PAD_B}" stroke="{colour}" stroke-width="1.5" '
                f'stroke-dasharray="2,2"/><text x="{x + 4:.1f}" y="{PAD_T + dy}" font-size="11" fill="{colour}">'
                f'{escape(label)}</text>')

    if chosen is not None:
        parts.append(vline(chosen, "#c0392b", f"chosen {chosen:.3f}", 12))
    if project_threshold is not None:
        parts.append(vline(project_threshold, "#475467", f"project {project_threshold:.3f}", 26))
    parts.append(_legend([("precision", "#1e8e3e"), ("recall", "#7048e8")]))
    return _svg(parts, "threshold curve", "chart threshold-curve")


def projects_overview():
    """Projects with their promoted reward model and latest run (Models index)."""
    rows = []
    for project in Project.objects.order_by("name"):
        rows.append({"project": project, "promoted": promoted_version(project),
                     "last_run": TrainingRun.objects.filter(project=project, kind=KIND).order_by("-created_at").first(),
                     "labels": labels_since(project)})
    return rows

