"""Writes of the reward-model platform: label snapshots, training runs, promotion, scoring.

The ML itself (backbones, feature cache, head, losses, evaluation, threshold and promotion rules)
lives in `rewardmodel.ml` and knows nothing of Django; this module feeds it database rows and
stores what comes back (TrainingRun progress/log/history, ModelVersion, Generation scores).
See docs/rewardmodel-platform.md.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import ImageLabel
from annotate.models import PairwiseLabel as PairwiseLabelRow
from core.ml.images import decode_image
from core.models import ModelVersion, Project, SourceImage, TrainingRun
from generation.models import Generation
from rewardmodel import ml
from rewardmodel.ml.head import json_safe
from rewardmodel.models import RunHeartbeat
from rewardmodel.selectors import active_run, label_project_id, labels_since, promoted_version

logger = logging.getLogger(__name__)

KIND = ModelVersion.Kind.REWARD
REPO_DIR = Path(__file__).resolve().parent.parent
LOG_MAX_LINES = 400


class RewardModelError(Exception):
    """A request we refuse, with a message for the user."""


class PromotionRefused(RewardModelError):
    pass


class NoPromotedModel(RewardModelError):
    pass


class ScoringError(RewardModelError):
    pass


class RunAborted(Exception):
    """The run is no longer RUNNING in the database (the stale-run sweeper failed it)."""


# --- settings ---------------------------------------------------------------------------------


def artifact_root() -> Path:
    root = getattr(settings, "STAGECRAFT_ARTIFACT_DIR", None) or Path(settings.DATA_DIR) / "artifacts"
    return Path(root)


def feature_cache_dir() -> Path:
    return Path(getattr(settings, "STAGECRAFT_FEATURE_CACHE_DIR", None) or artifact_root() / "feature-cache")


def min_labels() -> int:
    return int(getattr(settings, "STAGECRAFT_REWARD_MIN_LABELS", ml.MIN_LABELS))


def retrain_every() -> int:
    return int(getattr(settings, "STAGECRAFT_RETRAIN_EVERY_N_LABELS", 200))


def retrain_check_seconds() -> float:
    return float(getattr(settings, "STAGECRAFT_RETRAIN_CHECK_SECONDS", 30))


def stale_after() -> timedelta:
    return timedelta(minutes=float(getattr(settings, "STAGECRAFT_TRAINING_STALE_MINUTES", 15)))


def queued_timeout() -> timedelta:
    return timedelta(hours=float(getattr(settings, "STAGECRAFT_TRAINING_QUEUED_HOURS", 6)))


def default_promotion_margin() -> float:
    return float(getattr(settings, "STAGECRAFT_REWARD_PROMOTION_MARGIN", 0.01))


def blip_model() -> str:
    return (getattr(settings, "STAGECRAFT_MODELS", None) or {}).get("blip", "") or ""


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the running code (+"-dirty" when the ML code has local changes), if known."""
    if os.environ.get("STAGECRAFT_CODE_VERSION"):
        return os.environ["STAGECRAFT_CODE_VERSION"][:64]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rewardmodel", "core/ml"], cwd=REPO_DIR,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# --- parameters -------------------------------------------------------------------------------

_INT, _FLOAT = "int", "float"
PARAMS = {  # name: (type, min, max)
    "max_epochs": (_INT, 1, 1000),
    "patience": (_INT, 1, 1000),
    "batch_size": (_INT, 1, 100_000),
    "seed": (_INT, 0, 2**31 - 1),
    "split_seed": (_INT, 0, 2**31 - 1),
    "image_size": (_INT, 64, 640),
    "lr": (_FLOAT, 0.0, None),
    "weight_decay": (_FLOAT, 0.0, None),
    "dropout": (_FLOAT, 0.0, 0.9),
    "grad_clip": (_FLOAT, 0.0, None),
    "val_fraction": (_FLOAT, 0.05, 0.5),
    "promotion_margin": (_FLOAT, 0.0, 1.0),
    "min_precision": (_FLOAT, 0.5, 1.0),
}
TRAIN_CONFIG_KEYS = ("max_epochs", "patience", "batch_size", "seed", "lr", "weight_decay", "dropout", "grad_clip",
                     "hidden")


def clean_params(raw: dict | None) -> dict:
    """Validate training parameters; unknown names and out-of-range values are refused."""
    raw = dict(raw or {})
    out: dict = {}
    for name, value in raw.items():
        if value is None or value == "":
            if name == "grad_clip":
                out[name] = None
            continue
        if name in PARAMS:
            kind, lo, hi = PARAMS[name]
            try:
                v = int(value) if kind == _INT else float(value)
            except (TypeError, ValueError):
                raise RewardModelError(f"{name}: {value!r} is not a number") from None
            if kind == _INT and isinstance(value, float) and not value.is_integer():
                raise RewardModelError(f"{name}: {value!r} is not a whole number")
            if not math.isfinite(v) or v < lo or (hi is not None and v > hi) or (name == "lr" and v <= 0):
                raise RewardModelError(f"{name}: {value!r} is out of range")
            out[name] = v
        elif name == "hidden":
            if isinstance(value, str):
                value = [p for p in re.split(r"[,\s]+", value) if p]
            try:
                hidden = [int(h) for h in value]
            except (TypeError, ValueError):
                raise RewardModelError(f"hidden: {value!r} is not a list of layer sizes") from None
            if not 1 <= len(hidden) <= 4 or any(not 1 <= h <= 4096 for h in hidden):
                raise RewardModelError("hidden: 1 to 4 layers of 1..4096 units")
            out[name] = hidden
        elif name == "auto_promote":
            out[name] = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "on", "yes"}
        elif name == "backbone":
            value = str(value)
            if value != "blip" and not re.fullmatch(r"efficientnet-lite[0-4]", value):
                raise RewardModelError("backbone: 'efficientnet-lite0'..'efficientnet-lite4' or 'blip'")
            out[name] = value
        elif name == "trigger":
            out[name] = str(value)[:50]
        else:
            raise RewardModelError(f"unknown training parameter {name!r}")
    return out


def backbone_spec(params: dict) -> dict:
    """The backbone a run uses: BLIP when STAGECRAFT_MODELS['blip'] is set, else EfficientNet-Lite0."""
    choice = params.get("backbone") or ("blip" if blip_model() else "efficientnet-lite0")
    if choice == "blip":
        if not blip_model():
            raise RewardModelError("the BLIP backbone is not configured (STAGECRAFT_MODELS['blip'] is empty)")
        return {"kind": "blip", "model": blip_model()}
    spec = {"kind": "efficientnet-lite", "variant": choice[len("efficientnet-"):]}
    if params.get("image_size"):
        spec["image_size"] = int(params["image_size"])
    return spec


_backbones: dict[str, object] = {}
_scorers: dict[tuple, ml.RewardScorer] = {}
_cache_lock = threading.Lock()


def get_backbone(spec: dict):
    """Backbones are loaded once per process (weights are large)."""
    key = json.dumps({k: v for k, v in spec.items() if k != "name"}, sort_keys=True)
    with _cache_lock:
        if key not in _backbones:
            _backbones[key] = ml.load_backbone(dict(spec))
        return _backbones[key]


def get_scorer(version: ModelVersion) -> ml.RewardScorer:
    path = Path(version.artifact_path or "")
    weights = path / "head.safetensors"
    if not version.artifact_path or not weights.exists():
        raise ScoringError(f"the artifact of reward model v{version.version} is missing ({path})")
    key = (str(path), weights.stat().st_mtime_ns)
    with _cache_lock:
        scorer = _scorers.get(key)
    if scorer is None:
        head, cfg = ml.load_artifact(path)
        try:
            scorer = ml.RewardScorer(head, get_backbone(cfg["backbone"]), cfg)
        except ml.BackboneMismatch as exc:
            raise ScoringError(f"reward model v{version.version}: {exc}") from None
        with _cache_lock:
            _scorers[key] = scorer
    return scorer


# --- images -----------------------------------------------------------------------------------

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def read_rgb(name: str) -> np.ndarray:
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    max_pixels = int(getattr(settings, "STAGECRAFT_MAX_IMAGE_PIXELS", 40_000_000))
    return decode_image(data, name=name, max_bytes=len(data) + 1, max_pixels=max_pixels).pixels


def _image_key(sha256: str, name: str) -> str | None:
    key = sha256 or Path(name).stem
    return key if key and _KEY_RE.match(key) else None


class _Images:
    """Storage names by content key, with one existence check per file."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self._exists: dict[str, bool] = {}

    def exists(self, name: str) -> bool:
        if name not in self._exists:
            self._exists[name] = bool(name) and default_storage.exists(name)
        return self._exists[name]

    def generation(self, g: Generation) -> tuple[str | None, str]:
        """(key, "") or (None, reason)."""
        if g.status != Generation.Status.SUCCEEDED:
            return None, f"generation_{g.status}"
        if not g.image or not self.exists(g.image.name):
            return None, "image_missing"
        key = _image_key(g.sha256, g.image.name)
        if key is None:
            return None, "image_without_content_key"
        self.names[key] = g.image.name
        return key, ""

    def source(self, src: SourceImage | None) -> tuple[str | None, str]:
        if src is None:
            return None, "product_without_photo"
        if not self.exists(src.image.name):
            return None, "product_photo_missing"
        key = _image_key(src.sha256, src.image.name)
        if key is None:
            return None, "image_without_content_key"
        self.names[key] = src.image.name
        return key, ""

    def load(self, key: str) -> np.ndarray:
        return read_rgb(self.names[key])


def _sources(project: Project) -> dict[int, SourceImage]:
    out: dict[int, SourceImage] = {}
    for src in SourceImage.objects.filter(product__project=project).order_by("product_id", "id"):
        out.setdefault(src.product_id, src)
    return out


# --- label snapshot ---------------------------------------------------------------------------


@dataclass
class LabelSnapshot:
    examples: list
    pairwise_ids: list[int]
    image_ids: list[int]
    counts: dict
    skipped: dict[str, int]
    weights: dict[str, float]  # username -> reliability weight (annotator labels only)
    weight_source: str
    images: _Images = field(repr=False, default_factory=_Images)
    # The split is by product *photo* (source sha256): stable across databases, and duplicate
    # products with the same photo can never sit on both sides of the split.
    product_pks: dict[str, list[int]] = field(default_factory=dict)

    def load_image(self, key: str) -> np.ndarray:
        return self.images.load(key)

    def as_json(self) -> dict:
        return {
            "label_ids": {"pairwise": self.pairwise_ids, "image": self.image_ids},
            "counts": self.counts,
            "skipped": self.skipped,
            "weights": self.weights,
            "weight_source": self.weight_source,
        }


def annotator_weights(project: Project) -> tuple[dict[str, float], str]:
    """Reliability weight per annotator from gold accuracy (annotate.selectors.quality_stats).

    With no gold items in the project every label weighs 1. With gold items, each annotator gets
    `ml.annotator_weight(correct, answered)` (0 at chance, 1 when perfect, 0.5 with no gold answers).
    """
    try:
        from annotate.selectors import quality_stats
    except ImportError:  # pragma: no cover - the annotation app always ships it today
        return {}, "no reliability information: every label weighs 1"
    stats = quality_stats(project)
    totals = stats.get("totals", {})
    if not (totals.get("gold_pair_tasks") or totals.get("gold_image_tasks")):
        return {}, "no gold items in the project: every label weighs 1"
    weights = {row["username"]: round(ml.annotator_weight(row["gold_correct"], row["gold"]), 4)
               for row in stats["annotators"]}
    return weights, "annotator labels weighted by gold accuracy; QA and imported labels weigh 1"


def snapshot_labels(project: Project) -> LabelSnapshot:
    """Every usable label of the project as `rewardmodel.ml` records, with ids and counts.

    Pairwise labels (all annotators) and single-image "background appropriate" labels (annotator,
    QA and imported). Labels whose images are gone (deleted file, failed or unfinished generation,
    product without its photo) are skipped and counted by reason.
    """
    weights, weight_source = annotator_weights(project)
    default_weight = ml.annotator_weight(0, 0) if weights else 1.0
    images = _Images()
    sources = _sources(project)
    skipped: dict[str, int] = {}
    examples: list = []
    pairwise_ids: list[int] = []
    image_ids: list[int] = []
    by_source: dict[str, int] = {}
    by_outcome: dict[str, int] = {}
    products: set[int] = set()
    product_pks: dict[str, set[int]] = {}

    def skip(reason: str):
        skipped[reason] = skipped.get(reason, 0) + 1

    pair_rows = (PairwiseLabelRow.objects.filter(task__project=project)
                 .select_related("task__generation_a__product", "task__generation_b", "annotator").order_by("id"))
    for label in pair_rows:
        task = label.task
        product = task.generation_a.product
        orig, why = images.source(sources.get(product.pk))
        key_a, why_a = images.generation(task.generation_a)
        key_b, why_b = images.generation(task.generation_b)
        reason = why or why_a or why_b
        if reason:
            skip(reason)
            continue
        w = weights.get(label.annotator.username, default_weight) if weights else 1.0
        product_pks.setdefault(orig, set()).add(product.pk)
        examples.append(ml.PairwiseLabel(orig, orig, key_a, key_b, label.choice, product.category, w))
        pairwise_ids.append(label.pk)
        by_outcome[label.choice] = by_outcome.get(label.choice, 0) + 1
        products.add(product.pk)

    image_rows = (ImageLabel.objects.filter(generation__product__project=project)
                  .select_related("generation__product", "annotator").order_by("id"))
    positive = 0
    for label in image_rows:
        if label.background_appropriate is None:
            skip("no_background_answer")
            continue
        g = label.generation
        orig, why = images.source(sources.get(g.product_id))
        key, why_g = images.generation(g)
        if why or why_g:
            skip(why or why_g)
            continue
        if label.source == ImageLabel.Source.ANNOTATOR and weights:
            w = weights.get(label.annotator.username, default_weight)
        else:
            w = 1.0
        product_pks.setdefault(orig, set()).add(g.product_id)
        examples.append(ml.SingleLabel(orig, orig, key, bool(label.background_appropriate),
                                       g.product.category, w))
        image_ids.append(label.pk)
        by_source[label.source] = by_source.get(label.source, 0) + 1
        positive += int(bool(label.background_appropriate))
        products.add(g.product_id)

    counts = {
        "total": len(examples),
        "pairwise": len(pairwise_ids),
        "image": len(image_ids),
        "image_by_source": by_source,
        "pairwise_by_outcome": by_outcome,
        "image_positive": positive,
        "image_negative": len(image_ids) - positive,
        "products": len(products),
        "skipped": sum(skipped.values()),
    }
    return LabelSnapshot(examples, pairwise_ids, image_ids, counts, skipped, weights, weight_source, images,
                         {k: sorted(v) for k, v in product_pks.items()})


# --- training runs ----------------------------------------------------------------------------


def _stamp(message: str) -> str:
    return f"[{timezone.now():%Y-%m-%d %H:%M:%S}] {message}"


def _serving_note(project: Project) -> str:
    current = promoted_version(project)
    return (f"the promoted reward model v{current.version} is still serving" if current
            else "no reward model is promoted")


def start_training(project: Project, user=None, params: dict | None = None, *, queue: str | None = None,
                   enqueue: bool = True) -> TrainingRun:
    """Create a queued TrainingRun and enqueue `train_reward_model` (after the transaction commits).

    `enqueue=False` only creates the run (the caller runs `run_training` itself, e.g. `--sync`)."""
    cleaned = clean_params(params)
    mark_stale_runs_failed()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = active_run(project)
        if busy is not None:
            raise RewardModelError(f"training run #{busy.pk} is already {busy.state}; wait for it to finish")
        who = getattr(user, "username", None) if getattr(user, "is_authenticated", False) else None
        task_id = str(uuid.uuid4())
        run = TrainingRun.objects.create(
            project=project, kind=KIND, params=cleaned, celery_task_id=task_id,
            started_by=user if who else None,
            log=_stamp(f"queued by {who or cleaned.get('trigger') or 'the system'}"),
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_training(run.pk, task_id, queue))
    return run


def _enqueue_training(run_id: int, task_id: str, queue: str | None) -> None:
    from rewardmodel.tasks import train_reward_model

    try:
        train_reward_model.apply_async(args=[run_id], task_id=task_id, queue=queue)
    except Exception as exc:  # broker down: say so on the run instead of leaving it queued forever
        logger.exception("could not enqueue training run %s", run_id)
        run = TrainingRun.objects.get(pk=run_id)
        TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.QUEUED).update(
            state=TrainingRun.State.FAILED, finished_at=timezone.now(),
            log=run.log + "\n" + _stamp(f"could not be queued: {exc.__class__.__name__}: {exc}"))


_EPOCH_RE = re.compile(r"epoch (\d+): train loss (\S+), (?:val|train \(no val\)) loss (\S+)$")


class _Reporter:
    """Writes progress, log lines, per-epoch losses and the heartbeat of one RUNNING run."""

    def __init__(self, run: TrainingRun):
        self.run_id = run.pk
        self.lines = [line for line in (run.log or "").splitlines() if line]
        self.history: list[dict] = []
        self.progress = 0.0
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._last_feature_log = -1.0

    def _save(self, **extra) -> None:
        lines = self.lines
        if len(lines) > LOG_MAX_LINES:
            lines = lines[:20] + [f"... ({len(lines) - LOG_MAX_LINES + 20} lines left out) ..."] + lines[-(LOG_MAX_LINES - 21):]
        updated = TrainingRun.objects.filter(pk=self.run_id, state=TrainingRun.State.RUNNING).update(
            progress=min(max(self.progress, 0.0), 1.0), log="\n".join(lines), history=self.history, **extra)
        if not updated:
            raise RunAborted(f"run {self.run_id} is no longer running")
        self.beat()

    def beat(self) -> None:
        RunHeartbeat.objects.update_or_create(run_id=self.run_id,
                                              defaults={"beat_at": timezone.now(), "worker": self.worker})

    def log(self, message: str, progress: float | None = None) -> None:
        logger.info("training run %s: %s", self.run_id, message)
        self.lines.append(_stamp(message))
        if progress is not None:
            self.progress = progress
        self._save()

    def ml_progress(self, done: int, total: int, message: str) -> None:
        """Progress callback of `ml.train_and_evaluate` ("features: ...", "training: ...", "done: ...")."""
        stage, _, rest = message.partition(": ")
        frac = done / total if total else 1.0
        if stage == "features":
            self.progress = 0.05 + 0.35 * frac
            if frac >= 1.0 or frac - self._last_feature_log >= 0.1:
                self._last_feature_log = frac
                self.lines.append(_stamp(f"features: {rest}"))
        elif stage == "training":
            self.progress = 0.4 + 0.5 * frac
            self.lines.append(_stamp(rest))
            m = _EPOCH_RE.search(rest)
            if m:
                try:
                    self.history.append({"epoch": int(m[1]), "train_loss": float(m[2].rstrip(",")),
                                         "val_loss": float(m[3])})
                except ValueError:
                    pass
        else:
            self.progress = 0.92
            self.lines.append(_stamp(f"evaluated on validation: {rest}"))
        self._save()

    def finish(self, state: str, message: str, **extra) -> None:
        self.lines.append(_stamp(message))
        self.progress = 1.0 if state == TrainingRun.State.SUCCEEDED else self.progress
        self._save(state=state, finished_at=timezone.now(), **extra)


def run_training(run_id: int) -> TrainingRun:
    """The body of the `train_reward_model` task. Runs a QUEUED run once; failures end in the run's log."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, state=TrainingRun.State.QUEUED).update(
        state=TrainingRun.State.RUNNING, started_at=now, progress=0.0)
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    if not claimed:
        if run.state == TrainingRun.State.RUNNING:
            # The task was delivered again: its first worker died (acks_late), or the broker's
            # visibility timeout passed while it is still alive. A fresh heartbeat means alive.
            beat = RunHeartbeat.objects.filter(run_id=run_id).first()
            last = beat.beat_at if beat else (run.started_at or run.created_at)
            if now - last > min(stale_after(), timedelta(minutes=2)):
                _fail_run(run, "the worker running it was lost (task delivered again)")
        logger.warning("training run %s is %s; not starting it again", run_id, run.state)
        return TrainingRun.objects.get(pk=run_id)
    reporter = _Reporter(run)
    try:
        reporter.log(f"started on {reporter.worker}", progress=0.01)
        _train(run, reporter)
    except RunAborted:
        logger.warning("training run %s was failed while running (sweeper); stopping", run_id)
    except (ml.NotEnoughLabels, ml.TrainingDiverged, RewardModelError) as exc:
        reporter.finish(TrainingRun.State.FAILED, f"failed: {exc}; {_serving_note(run.project)}")
    except Exception as exc:
        logger.exception("training run %s crashed", run_id)
        try:
            reporter.finish(TrainingRun.State.FAILED,
                            f"failed: {exc.__class__.__name__}: {exc}; {_serving_note(run.project)}")
        except RunAborted:
            pass
        raise
    finally:
        shutil.rmtree(_work_dir(run), ignore_errors=True)
    return TrainingRun.objects.get(pk=run_id)


def _work_dir(run: TrainingRun) -> Path:
    return artifact_root() / f"project-{run.project_id}" / "reward" / f".run-{run.pk}"


def _thin_curve(curve: list[dict], chosen: float | None, points: int = 200) -> list[dict]:
    """At most ~`points` evenly spaced PR-curve points for the page (the chosen one always kept)."""
    if len(curve) <= points:
        return curve
    idx = set(np.linspace(0, len(curve) - 1, points).round().astype(int).tolist())
    idx |= {i for i, p in enumerate(curve) if p["threshold"] == chosen}
    return [curve[i] for i in sorted(idx)]


def _train(run: TrainingRun, reporter: _Reporter) -> None:
    project = run.project
    params = run.params or {}
    snap = snapshot_labels(project)
    c = snap.counts
    reporter.log(f"labels: {c['total']} usable ({c['pairwise']} pairwise, {c['image']} single-image "
                 f"{c['image_by_source']}) on {c['products']} products; skipped {c['skipped']}"
                 f"{' ' + json.dumps(snap.skipped) if snap.skipped else ''}; "
                 f"{snap.weight_source}", progress=0.03)
    need = min_labels()
    if c["total"] < need:
        raise ml.NotEnoughLabels(f"need at least {need} labels, have {c['total']}")
    spec = backbone_spec(params)
    backbone = get_backbone(spec)
    reporter.log(f"backbone {backbone.name}; feature cache {feature_cache_dir()}", progress=0.05)

    current = promoted_version(project)
    current_dir = None
    if current is not None:
        if current.artifact_path and (Path(current.artifact_path) / "config.json").exists():
            current_dir = current.artifact_path
        else:
            reporter.log(f"promoted v{current.version} has no artifact on disk; it cannot be re-scored")
    config = ml.TrainConfig(**{k: params[k] for k in TRAIN_CONFIG_KEYS if k in params}, min_labels=need)
    margin = params.get("promotion_margin", default_promotion_margin())
    work = _work_dir(run)
    shutil.rmtree(work, ignore_errors=True)
    result = ml.train_and_evaluate(
        snap.examples, snap.load_image, output_dir=work, cache_dir=feature_cache_dir(), backbone=backbone,
        config=config, val_fraction=params.get("val_fraction", 0.2), split_seed=params.get("split_seed", 0),
        min_precision=params.get("min_precision", 0.95), promoted_artifact_dir=current_dir,
        promotion_margin=margin, progress=reporter.ml_progress,
    )
    train = result.train
    reporter.history = [dict(h) for h in train.history]  # exact values replace the parsed ones
    thr = result.threshold
    metrics = dict(result.metrics)
    metrics.update({
        "threshold_choice": {**{k: v for k, v in thr.to_dict().items() if k != "curve"},
                             "curve": _thin_curve(thr.curve, thr.threshold)},
        "promotion": {"promote": result.promotion.promote, "reason": result.promotion.reason, "margin": margin,
                      "compared_with_id": current.pk if current else None,
                      "compared_with_version": current.version if current else None,
                      "compared_metrics": ({k: v for k, v in result.promoted_metrics.items() if k != "baselines"}
                                           if result.promoted_metrics else None)},
        "training": {k: v for k, v in train.summary().items() if k not in ("history", "train_config")},
        "n_train": result.n_train,
        "n_val": result.n_val,
    })
    snapshot = snap.as_json() | {
        "split": {"val_products": sorted(pk for key in result.val_products for pk in snap.product_pks.get(key, [])), "n_train": result.n_train, "n_val": result.n_val,
                  "val_fraction": params.get("val_fraction", 0.2), "split_seed": params.get("split_seed", 0)},
        "params": params, "train_config": train.summary()["train_config"], "run": run.pk,
    }
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one version number at a time
        number = (ModelVersion.objects.filter(project=project, kind=KIND).aggregate(n=Max("version"))["n"] or 0) + 1
        final = artifact_root() / f"project-{project.pk}" / "reward" / f"v{number}"
        if final.exists():  # left over from another database: never overwrite an artifact
            final = final.with_name(f"v{number}-run{run.pk}")
        os.replace(result.artifact_dir, final)
        version = ModelVersion.objects.create(
            project=project, kind=KIND, version=number, status=ModelVersion.Status.CANDIDATE,
            artifact_path=str(final), backbone=backbone.name, metrics=json_safe(metrics),
            training_snapshot=json_safe(snapshot), code_version=code_version(), threshold=thr.threshold,
            notes=f"trained by run #{run.pk}",
        )
        TrainingRun.objects.filter(pk=run.pk).update(model_version=version)
    m = result.metrics
    reporter.log(f"saved candidate v{number} at {final}: pairwise accuracy {_fmt(m.get('pairwise_accuracy'))}, "
                 f"ROC-AUC {_fmt(m.get('roc_auc'))}, threshold {_fmt(thr.threshold)} ({thr.reason})", progress=0.95)

    if params.get("auto_promote", True) and result.promotion.promote:
        try:
            promote(version, None, reason=f"auto-promoted: {result.promotion.reason}", rescore=False)
        except PromotionRefused as exc:
            reporter.log(f"v{number} stays a candidate: {exc}")
        else:
            reporter.log(f"promoted v{number} ({result.promotion.reason}); re-scoring generations")
            report = score_generations(project, tick=lambda done, total: reporter.beat())
            reporter.log(f"re-scored {report['scored']} generation(s) with v{number}"
                         + (f", skipped {report['skipped']}" if report["skipped"] else ""))
    else:
        why = result.promotion.reason if params.get("auto_promote", True) else "auto-promotion is off for this run"
        reporter.log(f"v{number} stays a candidate: {why}; {_serving_note(project)}")
    reporter.finish(TrainingRun.State.SUCCEEDED, f"done in {train.seconds:.1f}s of training "
                    f"({train.epochs_run} epochs, best {train.best_epoch})")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


# --- stale runs -------------------------------------------------------------------------------


def _fail_run(run: TrainingRun, reason: str) -> bool:
    line = _stamp(f"marked failed: {reason}; {_serving_note(run.project)}")
    return bool(TrainingRun.objects.filter(pk=run.pk, state=run.state).update(
        state=TrainingRun.State.FAILED, finished_at=timezone.now(), log=(run.log + "\n" if run.log else "") + line))


def mark_stale_runs_failed(now=None) -> list[int]:
    """Fail RUNNING runs with no heartbeat for STAGECRAFT_TRAINING_STALE_MINUTES (worker killed or lost)
    and QUEUED runs never picked up within STAGECRAFT_TRAINING_QUEUED_HOURS. Returns their ids."""
    now = now or timezone.now()
    failed = []
    cutoff = now - stale_after()
    for run in TrainingRun.objects.filter(state=TrainingRun.State.RUNNING).select_related("project"):
        beat = RunHeartbeat.objects.filter(run_id=run.pk).first()
        last = beat.beat_at if beat else (run.started_at or run.created_at)
        if last < cutoff:
            minutes = (now - last).total_seconds() / 60
            where = f" on {beat.worker}" if beat and beat.worker else ""
            age = f"{minutes:.0f} min" if minutes >= 10 else f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.1f} min"
            if _fail_run(run, f"no heartbeat for {age}{where} (last {last:%Y-%m-%d %H:%M:%S} UTC); "
                              f"the worker was killed or lost"):
                failed.append(run.pk)
    for run in TrainingRun.objects.filter(state=TrainingRun.State.QUEUED,
                                          created_at__lt=now - queued_timeout()).select_related("project"):
        if _fail_run(run, f"never picked up by a worker within {queued_timeout()}"):
            failed.append(run.pk)
    return failed


# --- promotion --------------------------------------------------------------------------------


def promote(version: ModelVersion, user=None, override: bool = False, *, reason: str = "",
            rescore: bool = True) -> ModelVersion:
    """Make `version` the promoted reward model of its project; the old one is retired.

    Without `override` only a candidate whose evaluation beat the *currently* promoted model (on the
    candidate's validation split, by the margin) may be promoted. `override=True` is an ML engineer's
    explicit decision. After the commit, every generation is re-scored (`rescore`).
    """
    with transaction.atomic():
        current_rows = list(ModelVersion.objects.select_for_update().filter(
            project_id=version.project_id, kind=version.kind, status=ModelVersion.Status.PROMOTED))
        version = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
        current = current_rows[0] if current_rows else None
        if version.kind != KIND:
            raise PromotionRefused(f"{version} is not a reward model")
        if version.status == ModelVersion.Status.PROMOTED:
            raise PromotionRefused(f"v{version.version} is already promoted")
        if not version.artifact_path or not (Path(version.artifact_path) / "head.safetensors").exists():
            raise PromotionRefused(f"v{version.version} has no artifact on disk ({version.artifact_path or 'none'})")
        if not override:
            decision = (version.metrics or {}).get("promotion") or {}
            if not decision.get("promote"):
                raise PromotionRefused(f"v{version.version} did not pass the promotion rule "
                                       f"({decision.get('reason', 'not evaluated')}); an override is needed")
            compared = decision.get("compared_with_id")
            if (current.pk if current else None) != compared:
                was = f"v{decision.get('compared_with_version')}" if compared else "no promoted model"
                now_ = f"v{current.version}" if current else "none"
                raise PromotionRefused(f"v{version.version} was compared with {was}, but the promoted model is now "
                                       f"{now_}; retrain, or override")
        now = timezone.now()
        ModelVersion.objects.filter(pk__in=[r.pk for r in current_rows]).update(status=ModelVersion.Status.RETIRED)
        who = getattr(user, "username", None) if getattr(user, "is_authenticated", False) else None
        what = reason or ("promoted with an override" if override else "promoted")
        note = _stamp(f"{what} by {who or 'the system'}" + (f"; replaced v{current.version}" if current else ""))
        version.status = ModelVersion.Status.PROMOTED
        version.promoted_at = now
        version.promoted_by = user if who else None
        version.notes = (version.notes + "\n" if version.notes else "") + note
        version.save(update_fields=["status", "promoted_at", "promoted_by", "notes"])
        if current is not None:
            ModelVersion.objects.filter(pk=current.pk).update(
                notes=(current.notes + "\n" if current.notes else "") + _stamp(f"retired: v{version.version} promoted"))
        if rescore:
            project_id = version.project_id
            transaction.on_commit(lambda: enqueue_scoring(project_id))
    return version


def rollback(to_version: ModelVersion, user=None) -> ModelVersion:
    """Serve an earlier, previously promoted version again (the current one is retired)."""
    to_version = ModelVersion.objects.select_related("project").get(pk=to_version.pk)
    if to_version.promoted_at is None:
        raise PromotionRefused(f"v{to_version.version} was never promoted; promote it with an override instead")
    current = promoted_version(to_version.project)
    return promote(to_version, user, override=True,
                   reason=f"rollback from v{current.version}" if current else "rollback")


def enqueue_scoring(project_id: int) -> None:
    """Queue re-scoring of the project's generations with its promoted model."""
    from rewardmodel.tasks import score_generations_task

    try:
        score_generations_task.apply_async(args=[project_id])
    except Exception:
        logger.exception("could not enqueue re-scoring of project %s", project_id)


# --- scoring ----------------------------------------------------------------------------------


def _score_with(version: ModelVersion, generations: list[Generation], batch: int = 64, tick=None) -> dict:
    scorer = get_scorer(version)
    cache = ml.FeatureCache(feature_cache_dir())
    images = _Images()
    sources = _sources(version.project)
    skipped: dict[str, int] = {}
    scored = 0
    for start in range(0, len(generations), batch):
        chunk, keys = [], []
        for g in generations[start:start + batch]:
            orig, why = images.source(sources.get(g.product_id))
            key, why_g = images.generation(g)
            if why or why_g:
                skipped[why or why_g] = skipped.get(why or why_g, 0) + 1
                continue
            chunk.append(g)
            keys.append((orig, key))
        if not chunk:
            continue
        feats = cache.image_features(scorer.backbone, [k for pair in keys for k in pair], images.load)
        text = None
        if scorer.head.config.text_dim:
            tf = cache.text_features(scorer.backbone, {g.product.category for g in chunk})
            text = np.stack([tf[ml.text_key(ml.category_prompt(g.product.category))] for g in chunk])
        scores = scorer.score_features(np.stack([feats[o] for o, _ in keys]), np.stack([feats[k] for _, k in keys]),
                                       text)
        if ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.PROMOTED).exists() is False:
            skipped["model_no_longer_promoted"] = skipped.get("model_no_longer_promoted", 0) + len(generations) - start
            break
        for g, s in zip(chunk, scores):
            g.reward_score = float(s)
            g.reward_model = version
        Generation.objects.bulk_update(chunk, ["reward_score", "reward_model"])
        scored += len(chunk)
        if tick is not None:
            tick(scored, len(generations))
    return {"scored": scored, "skipped": skipped, "model_version": version.version}


def score_generations(project: Project, generation_ids=None, *, force: bool = False, tick=None) -> dict:
    """Score generations of the project with its promoted reward model; stores score + version.

    Without ids: every finished generation not yet scored by the promoted version (`force`: all).
    """
    version = promoted_version(project)
    if version is None:
        return {"scored": 0, "skipped": {}, "model_version": None, "message": "no promoted reward model"}
    qs = (Generation.objects.filter(product__project=project, status=Generation.Status.SUCCEEDED)
          .exclude(image="").select_related("product").order_by("id"))
    if generation_ids is not None:
        qs = qs.filter(pk__in=[int(i) for i in generation_ids])
    elif not force:
        qs = qs.exclude(reward_model=version)
    t0 = time.perf_counter()
    report = _score_with(version, list(qs), tick=tick)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def score_one(generation: Generation) -> dict:
    """Score one generation now (synchronous API); stores the score and version on it."""
    generation = Generation.objects.select_related("product__project").get(pk=generation.pk)
    project = generation.product.project
    if generation.status != Generation.Status.SUCCEEDED or not generation.image:
        raise ScoringError(f"generation {generation.pk} has no finished image (status {generation.status})")
    version = promoted_version(project)
    if version is None:
        raise NoPromotedModel(f"project {project.slug!r} has no promoted reward model")
    report = _score_with(version, [generation])
    if not report["scored"]:
        raise ScoringError(f"generation {generation.pk} could not be scored: {', '.join(report['skipped']) or 'unknown'}")
    generation.refresh_from_db(fields=["reward_score", "reward_model"])
    return {
        "generation": generation.pk,
        "score": generation.reward_score,
        "model_version": {"id": version.pk, "version": version.version, "backbone": version.backbone},
        "project_threshold": project.reward_threshold,
        "passes_threshold": generation.reward_score >= project.reward_threshold,
    }


# --- thresholds and retraining ------------------------------------------------------------------


def apply_threshold(version: ModelVersion, user=None) -> Project:
    """Set the project's gate threshold to the one chosen for this version on validation."""
    if version.threshold is None:
        reason = ((version.metrics or {}).get("threshold_choice") or {}).get("reason") or "no threshold chosen"
        raise RewardModelError(f"v{version.version} has no threshold to apply: {reason}")
    project = version.project
    Project.objects.filter(pk=project.pk).update(reward_threshold=version.threshold)
    project.refresh_from_db(fields=["reward_threshold"])
    who = getattr(user, "username", None) or "the system"
    ModelVersion.objects.filter(pk=version.pk).update(
        notes=(version.notes + "\n" if version.notes else "") + _stamp(f"threshold {version.threshold:.4f} applied "
                                                                         f"to the project by {who}"))
    return project


def maybe_retrain(project: Project, *, every: int | None = None, queue: str | None = None,
                  params: dict | None = None):
    """Start a run when `every` labels (STAGECRAFT_RETRAIN_EVERY_N_LABELS) arrived since the last run.

    Returns (run or None, reason). Nothing starts while a run is queued or running.
    """
    every = retrain_every() if every is None else every
    if every <= 0:
        return None, "automatic retraining is off"
    mark_stale_runs_failed()
    if active_run(project) is not None:
        return None, "a training run is already queued or running"
    last = TrainingRun.objects.filter(project=project, kind=KIND).order_by("-created_at").first()
    new = labels_since(project, last.created_at if last else None)
    if new < every:
        return None, f"{new} new label(s) since the last run; retraining after {every}"
    total = labels_since(project, None)
    if total < min_labels():
        return None, f"{total} label(s) in all; training needs {min_labels()}"
    run = start_training(project, None, {**(params or {}), "trigger": f"auto after {new} new labels"}, queue=queue)
    return run, f"started run #{run.pk} after {new} new labels"


def label_committed(label) -> bool:
    """A new pairwise or image label was committed: queue the retrain check `maybe_retrain` of its
    project, at most once per project every STAGECRAFT_RETRAIN_CHECK_SECONDS. Returns whether a check
    was queued.

    This runs on the label-submit path, so it counts nothing: one primary-key lookup and one cache
    `add` (atomic in a shared cache; per process in the default local-memory cache, then at most one
    check per window per process); the worker does the counts. A threshold crossed inside a window is
    seen by the next label's check, or by the beat check when labelling stops.
    """
    if retrain_every() <= 0:
        return False
    project_id = label_project_id(label)
    if project_id is None:
        return False
    window = retrain_check_seconds()
    if window > 0 and not cache.add(f"stagecraft:reward-retrain-check:{project_id}", True, timeout=window):
        return False
    from rewardmodel.tasks import maybe_retrain as maybe_retrain_task

    try:
        maybe_retrain_task.apply_async(args=[project_id])
    except Exception:  # a broker hiccup must not fail the annotator's submit; beat checks again
        logger.exception("could not enqueue the retrain check of project %s", project_id)
        return False
    return True
