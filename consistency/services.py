"""Product-consistency checks on the platform: run the checker on stored images, keep the results,
take human mask corrections, calibrate on human "product intact" labels, promote versions.

The checker itself (plain Python, no Django) lives in `consistency.ml`; this module reads and writes
the database and the storage around it.

How a generation is checked
  original  = the product's first SourceImage and its mask (the stored `SourceImage.mask`, which is
              the latest human correction when there is one; otherwise segmented once and cached).
  generated = `Generation.image`. When the generator recorded where it placed the product
              (`Generation.product_mask`), the original product is pasted at that place into the
              generated frame and compared there (a backend that moved/rescaled the product *on
              purpose* is not blamed for it, but any change after placement is caught). The latest
              human correction of the generated mask, when there is one, replaces the checker's own
              segmentation of the generated image.
  thresholds = defaults (`ConsistencyThresholds`) < `Project.consistency_rules`; a promoted
              calibrated `ModelVersion(kind="consistency")` decides pass/fail when present.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from consistency.models import MaskCorrection
from core.ml.images import ImageRejected, decode_image
from core.models import ModelVersion, Project, SourceImage, TrainingRun
from core.services.storage import store_pixels, validate_image
from generation.models import Generation

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None] | None
LogFn = Callable[[str], None] | None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_LABELLED_GENERATIONS = 8  # labelled generations (with metrics) needed to calibrate
MIN_PER_CLASS = 2  # of each answer ("intact" / "altered") in the whole labelled set
MIN_PRODUCTS = 2  # distinct products: the held-out split is by product
HELD_OUT_FRACTION = 0.3
TARGET_FALSE_ALARM = 0.05
CHECK_SCHEMA = 2  # 2: reference-guided checks with mismatch_fraction and detail_loss


class CalibrationError(ValueError):
    """Calibration cannot run (too few labels, ...); the message says why and what is needed."""


class MaskRejected(ValueError):
    """An uploaded mask is not acceptable; the message is shown to the user."""


# --------------------------------------------------------------------------- thresholds and models
def default_rules() -> dict:
    from consistency.ml import ConsistencyThresholds

    return ConsistencyThresholds().to_dict()


def thresholds_for(project: Project):
    """Defaults with the project's `consistency_rules` merged over them (unknown keys ignored)."""
    from consistency.ml import ConsistencyThresholds

    rules = dict(default_rules())
    for key, value in (project.consistency_rules or {}).items():
        if key in rules:
            rules[key] = value
    return ConsistencyThresholds.from_dict(rules)


def promoted_version(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY,
                                       status=ModelVersion.Status.PROMOTED).first()


def _configured_models() -> dict:
    return getattr(settings, "STAGECRAFT_MODELS", {}) or {}


def configured_sam() -> str:
    """The published SAM the settings point at ("" for the offline default)."""
    return _configured_models().get("sam") or ""


_TIER_LOCK = threading.Lock()
_TIER_CACHE: dict[tuple, tuple] = {}
_CALIBRATED_CACHE: dict[tuple, object] = {}


def _model_tier() -> tuple[object | None, object | None, str]:
    """(locator, box segmenter, note) from settings.STAGECRAFT_MODELS, built once per process.

    Empty settings = offline default (U2-Net); published weights that cannot be loaded (not on
    disk, no network) fall back to the offline default with a note in every result."""
    grounding, sam = _configured_models().get("grounding") or None, configured_sam() or None
    key = (grounding, sam)
    with _TIER_LOCK:
        if key not in _TIER_CACHE:
            if not grounding and not sam:
                _TIER_CACHE[key] = (None, None, "")
            else:
                from consistency.ml import build_checker

                try:
                    checker = build_checker(grounding, sam)
                    _TIER_CACHE[key] = (checker.locator if grounding else None, checker.box_segmenter, "")
                except Exception as exc:  # weights missing, no network, wrong folder
                    log.warning("published consistency models unavailable: %s", exc)
                    _TIER_CACHE[key] = (None, None, f"published models unavailable ({exc}); offline default used")
        return _TIER_CACHE[key]


def load_calibrated(version: ModelVersion | None):
    """The calibrated model of a version (None when the version has no usable artifact)."""
    if version is None or not version.artifact_path:
        return None
    path = Path(version.artifact_path) / "calibration.json"
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    if key not in _CALIBRATED_CACHE:
        _CALIBRATED_CACHE[key] = _load_model(path)
    return _CALIBRATED_CACHE[key]


class FixedMaskLocator:
    """A 'locator' that returns a mask a person drew for the generated image (any resolution)."""

    name = "human-corrected-mask"

    def __init__(self, mask: np.ndarray):
        self.mask = mask.astype(bool)

    def locate(self, rgb, category=None, expected_box=None):
        from consistency.ml import Located
        from core.ml.segmentation import mask_bbox

        h, w = rgb.shape[:2]
        m = self.mask
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        box = mask_bbox(m)
        if box is None:
            return None
        return Located(box, 1.0, m, m.astype(np.float32))


@dataclass
class CheckContext:
    """What a batch of checks of one project shares (built once per batch)."""

    project: Project
    version: ModelVersion | None
    calibrated: object | None
    thresholds: object
    locator: object | None
    box_segmenter: object | None
    notes: list[str] = field(default_factory=list)

    def checker(self, generated_mask: np.ndarray | None = None):
        from consistency.ml import ConsistencyChecker

        if generated_mask is not None:
            return ConsistencyChecker(locator=FixedMaskLocator(generated_mask), thresholds=self.thresholds,
                                      calibrated=self.calibrated)
        return ConsistencyChecker(locator=self.locator, box_segmenter=self.box_segmenter,
                                  thresholds=self.thresholds, calibrated=self.calibrated)


def check_context(project: Project, version: ModelVersion | None | str = "promoted") -> CheckContext:
    notes = []
    if version == "promoted":
        version = promoted_version(project)
    calibrated = None
    if version is not None:
        try:
            calibrated = load_calibrated(version)
        except Exception as exc:
            notes.append(f"calibrated model v{version.version} unreadable ({exc}); thresholds used")
        if calibrated is None:
            notes.append(f"promoted v{version.version} has no usable calibration artifact; threshold rules used")
            version = None
    locator, box_segmenter, tier_note = _model_tier()
    if tier_note:
        notes.append(tier_note)
    return CheckContext(project, version, calibrated, thresholds_for(project), locator, box_segmenter, notes)


# --------------------------------------------------------------------------- reading stored images
def _read_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def read_rgb(name: str, what: str) -> np.ndarray:
    """RGB uint8 of a stored image; grey and RGBA files are converted (RGBA on white)."""
    decoded = validate_image(_read_bytes(name), what)
    if decoded.alpha is not None and decoded.alpha.min() < 255:
        a = decoded.alpha.astype(np.float32)[..., None] / 255.0
        return (decoded.pixels.astype(np.float32) * a + 255.0 * (1 - a) + 0.5).astype(np.uint8)
    return decoded.pixels


def read_mask(name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Bool mask of a stored mask PNG (white = product), resized to `shape` (H, W) when given."""
    decoded = decode_image(_read_bytes(name), name="mask", max_bytes=settings.STAGECRAFT_MAX_IMAGE_BYTES,
                           max_pixels=settings.STAGECRAFT_MAX_IMAGE_PIXELS)
    if decoded.alpha is not None and decoded.alpha.min() < 255:
        m = decoded.alpha >= 128
    else:
        m = decoded.pixels.mean(axis=2) >= 128
    if shape is not None and m.shape != tuple(shape):
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return m


def store_mask(mask: np.ndarray) -> str:
    return store_pixels((mask.astype(np.uint8) * 255), folder="masks").name


def latest_correction(generation: Generation, target: str) -> MaskCorrection | None:
    if target == MaskCorrection.Target.ORIGINAL:
        source = generation.product.source_image
        return None if source is None else source.mask_corrections.first()
    return generation.mask_corrections.filter(target=target).first()


def original_mask(source: SourceImage, rgb: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str]:
    """(mask in the source photo's frame, where it came from). Computed masks are cached in
    `SourceImage.mask`; an empty computed mask is not cached (a person should draw one)."""
    from core.ml.segmentation import segment_product

    if source.mask:
        try:
            m = read_mask(source.mask.name, rgb.shape[:2])
            origin = "corrected" if source.mask_corrections.filter(mask=source.mask.name).exists() else "stored"
            return m, origin
        except (ImageRejected, OSError) as exc:
            notes.append(f"stored original mask unreadable ({exc}); segmented again")
    m = segment_product(rgb).mask
    if m.sum() >= 16:
        source.mask = store_mask(m)
        source.save(update_fields=["mask"])
    return m, "computed"


def reference_in_frame(gen_rgb: np.ndarray, src_rgb: np.ndarray, src_mask: np.ndarray, placement: np.ndarray):
    """The original product pasted where the generator placed it (bbox of `placement`), over the
    generated image: the "composite" the checker compares with. Keeps the product's aspect (fit
    inside the box, centred, standing on the box's bottom, as the paste backends place it)."""
    from core.ml.segmentation import mask_bbox

    box, sbox = mask_bbox(placement), mask_bbox(src_mask)
    if box is None or sbox is None:
        return None, None
    H, W = gen_rgb.shape[:2]
    crop = src_rgb[sbox[1]:sbox[3], sbox[0]:sbox[2]]
    alpha = src_mask[sbox[1]:sbox[3], sbox[0]:sbox[2]].astype(np.float32)
    bw, bh, cw, ch = box[2] - box[0], box[3] - box[1], crop.shape[1], crop.shape[0]
    s = min(bw / cw, bh / ch)
    nw, nh = max(1, round(cw * s)), max(1, round(ch * s))
    x0, y0 = box[0] + (bw - nw) // 2, box[3] - nh
    prod = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC).astype(np.float32)
    a = np.clip(cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR), 0, 1)[..., None]
    out = gen_rgb.astype(np.float32).copy()
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + nw), min(H, y0 + nh)
    p, aa = prod[ya - y0:yb - y0, xa - x0:xb - x0], a[ya - y0:yb - y0, xa - x0:xb - x0]
    out[ya:yb, xa:xb] = p * aa + out[ya:yb, xa:xb] * (1 - aa)
    mask = np.zeros((H, W), bool)
    mask[ya:yb, xa:xb] = aa[..., 0] >= 0.5
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask


# --------------------------------------------------------------------------- checking
def _defined_failure(status: str, reason: str, **extra) -> dict:
    return {"passed": False, "status": status, "reasons": [reason], "metrics": {}, **extra}


def _save_result(generation: Generation, result: dict, ctx: CheckContext, passed: bool | None) -> dict:
    result.setdefault("notes", [])
    result["notes"] = list(dict.fromkeys(ctx.notes + result["notes"]))
    result["schema"] = CHECK_SCHEMA
    result["checked_at"] = timezone.now().isoformat()
    result["thresholds"] = ctx.thresholds.to_dict()
    result["model_version"] = None if ctx.version is None else {"id": ctx.version.pk, "version": ctx.version.version}
    generation.consistency = json.loads(json.dumps(result, default=_json_default))
    generation.consistency_passed = passed
    generation.consistency_model = ctx.version
    generation.save(update_fields=["consistency", "consistency_passed", "consistency_model", "updated_at"])
    return generation.consistency


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.bool_):
        return bool(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


def check_generation(generation: Generation, ctx: CheckContext | None = None) -> dict:
    """Check one generation and store the result on it; bad input gives a failed result with a
    reason, never an exception. Returns the stored `Generation.consistency` dict."""
    product = generation.product
    ctx = ctx or check_context(product.project)
    notes: list[str] = []
    if not generation.image:
        return _save_result(generation, _defined_failure(
            "no_image", f"the generation has no image (status {generation.status})"), ctx, False)
    source = product.source_image
    if source is None:
        return _save_result(generation, _defined_failure(
            "no_original", "the product has no original photo to compare with"), ctx, False)
    try:
        gen_rgb = read_rgb(generation.image.name, "generated image")
        src_rgb = read_rgb(source.image.name, "original photo")
    except (ImageRejected, OSError) as exc:
        return _save_result(generation, _defined_failure("unreadable", f"image unreadable: {exc}"), ctx, False)

    inputs: dict = {"source_image": source.pk}
    try:
        src_mask, inputs["original_mask"] = original_mask(source, src_rgb, notes)
    except Exception as exc:  # segmentation weights missing etc.
        log.exception("original segmentation failed for generation %s", generation.pk)
        return _save_result(generation, _defined_failure("error", f"original could not be segmented: {exc}"), ctx, False)
    if src_mask.sum() < 16:
        return _save_result(generation, _defined_failure(
            "no_product_in_original",
            "the original product mask is empty: draw the product on the mask page of the original",
            inputs=inputs), ctx, False)

    original, orig_mask = src_rgb, src_mask
    inputs["placement_hint"] = False
    if generation.product_mask:
        try:
            hint = read_mask(generation.product_mask.name, gen_rgb.shape[:2])
            if hint.sum() >= 16:
                ref, ref_mask = reference_in_frame(gen_rgb, src_rgb, src_mask, hint)
                if ref is not None and ref_mask.sum() >= 16:
                    original, orig_mask = ref, ref_mask
                    inputs["placement_hint"] = True
            else:
                notes.append("the generator's product mask is empty; compared with the original photo's frame")
        except (ImageRejected, OSError) as exc:
            notes.append(f"the generator's product mask is unreadable ({exc}); ignored")

    gen_mask = None
    correction = generation.mask_corrections.filter(target=MaskCorrection.Target.GENERATED).first()
    inputs["generated_mask"] = "segmented"
    if correction is not None:
        try:
            gen_mask = read_mask(correction.mask.name, gen_rgb.shape[:2])
            inputs["generated_mask"] = "corrected"
            inputs["generated_correction"] = correction.pk
        except (ImageRejected, OSError) as exc:
            notes.append(f"corrected generated mask unreadable ({exc}); segmented instead")

    try:
        checker = ctx.checker(gen_mask)
        if gen_mask is not None and gen_mask.sum() < 16:
            # a person marked the product as absent from the generated image
            res = None
            result = _defined_failure("product_missing", "product missing in generated image (human-corrected mask)")
        else:
            res = checker.check(original, gen_rgb, category=product.category or None, original_mask=orig_mask,
                                surroundings_from_generated=inputs["placement_hint"])
            result = res.to_dict(include_masks=False)
    except Exception as exc:  # a checker bug must not take the batch down
        log.exception("consistency check failed for generation %s", generation.pk)
        return _save_result(generation, _defined_failure("error", f"checker failed: {exc}", inputs=inputs), ctx, False)

    files = {}
    if res is not None:
        if res.original_mask is not None:
            files["original"] = store_mask(res.original_mask)
        if res.generated_mask is not None:
            files["generated"] = store_mask(res.generated_mask)
    elif gen_mask is not None:
        files["generated"] = correction.mask.name
    result["mask_files"] = files
    result["inputs"] = inputs
    result["notes"] = notes + list(result.get("notes", []))
    return _save_result(generation, result, ctx, bool(result["passed"]))


def checkable_generations(project: Project, ids=None):
    qs = Generation.objects.filter(product__project=project).select_related("product", "product__project")
    if ids:
        qs = qs.filter(pk__in=[int(i) for i in ids])
    else:
        qs = qs.filter(status=Generation.Status.SUCCEEDED)
    return qs.order_by("id")


def check_generations(project: Project, ids=None, progress: ProgressFn = None) -> dict:
    """Check many generations of a project (all succeeded ones, or `ids`); one shared context."""
    ctx = check_context(project)
    gens = list(checkable_generations(project, ids))
    summary = {"checked": 0, "passed": 0, "failed": 0, "by_status": {}, "missing_ids": []}
    if ids:
        found = {g.pk for g in gens}
        summary["missing_ids"] = [int(i) for i in ids if int(i) not in found]
    for i, generation in enumerate(gens):
        result = check_generation(generation, ctx)
        summary["checked"] += 1
        summary["passed" if result.get("passed") else "failed"] += 1
        status = result.get("status", "?")
        summary["by_status"][status] = summary["by_status"].get(status, 0) + 1
        if progress:
            progress(i + 1, len(gens))
    return summary


# --------------------------------------------------------------------------- mask corrections
def decode_mask_upload(data_url: str | bytes, width: int, height: int) -> np.ndarray:
    """A PNG (data URL or raw bytes) → bool mask; checked to be a real PNG of the image's size."""
    if isinstance(data_url, str):
        text = data_url.strip()
        if not text.startswith("data:"):
            raise MaskRejected("the mask must be sent as a data URL (data:image/png;base64,...)")
        header, _, payload = text.partition(",")
        if header.lower() != "data:image/png;base64":
            raise MaskRejected(f"the mask must be a PNG image, not {header[5:].split(';')[0] or 'unknown'}")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise MaskRejected("the mask data is not valid base64")
    else:
        raw = bytes(data_url)
    if not raw.startswith(PNG_SIGNATURE):
        raise MaskRejected("the mask must be a PNG image (the data is not a PNG)")
    try:
        decoded = validate_image(raw, "mask")
    except ImageRejected as exc:
        raise MaskRejected(str(exc))
    if (decoded.width, decoded.height) != (width, height):
        raise MaskRejected(f"the mask is {decoded.width}x{decoded.height} but the image is {width}x{height}")
    if decoded.alpha is not None and decoded.alpha.min() < 255:
        return (decoded.alpha >= 128) & (decoded.pixels.max(axis=2) >= 128)
    return decoded.pixels.mean(axis=2) >= 128


def save_mask_correction(generation: Generation, target: str, data, user) -> MaskCorrection:
    """Store a person's mask. Original: also becomes `SourceImage.mask`. Either way the
    generation's stored check is marked stale so calibration re-checks it."""
    if target not in MaskCorrection.Target.values:
        raise MaskRejected(f"unknown mask target {target!r}: use original or generated")
    if target == MaskCorrection.Target.ORIGINAL:
        source = generation.product.source_image
        if source is None:
            raise MaskRejected("the product has no original photo")
        width, height = source.width, source.height
    else:
        if not generation.image:
            raise MaskRejected("the generation has no image")
        source = None
        width, height = generation.width, generation.height
        if not width or not height:
            img = read_rgb(generation.image.name, "generated image")
            width, height = img.shape[1], img.shape[0]
    mask = decode_mask_upload(data, width, height)
    if target == MaskCorrection.Target.ORIGINAL and mask.sum() < 16:
        raise MaskRejected("the mask is empty: paint the product before saving")
    name = store_mask(mask)
    with transaction.atomic():
        correction = MaskCorrection.objects.create(
            target=target, source_image=source, generation=generation, mask=name, width=width, height=height,
            coverage=float(mask.mean()), created_by=user)
        if source is not None:
            source.mask = name
            source.save(update_fields=["mask"])
    return correction


def stale_after_corrections(generation: Generation) -> bool:
    """True when a mask correction (of its original or of itself) is newer than the stored check."""
    checked = (generation.consistency or {}).get("checked_at")
    if not checked:
        return True
    try:
        checked_at = datetime.fromisoformat(checked)
    except ValueError:
        return True
    source = generation.product.source_image
    newest = [generation.mask_corrections.aggregate(t=Max("created_at"))["t"]]
    if source is not None:
        newest.append(source.mask_corrections.aggregate(t=Max("created_at"))["t"])
    return any(t is not None and t > checked_at for t in newest)


# --------------------------------------------------------------------------- segmenter fine-tuning
MIN_SEGMENTER_EXAMPLES = 4  # corrected masks with a product in them (one in four is held out)
NO_SAM_CONFIGURED = ("Fine-tuning the segmenter needs published SAM weights: set STAGECRAFT_SAM_MODEL "
                     "(a local folder or a hub id in the local cache)")




def corrected_mask_examples(project: Project, log_fn: LogFn = None) -> list:
    """The project's mask corrections as (photo, mask) training examples, newest correction per
    image only. Empty corrections ("the product is not there") have nothing to segment and are
    left out, as are corrections whose image can no longer be read."""
    from consistency.ml.finetune import MaskExample

    say = log_fn or (lambda s: None)
    corrections = (MaskCorrection.objects
                   .filter(Q(generation__product__project=project) | Q(source_image__product__project=project))
                   .select_related("generation", "source_image").order_by("-created_at", "-pk"))
    seen, examples = set(), []
    for c in corrections:
        original = c.target == MaskCorrection.Target.ORIGINAL
        image = c.source_image.image if original else c.generation.image
        key = (c.target, c.source_image_id if original else c.generation_id)
        if key in seen or not image:
            continue
        seen.add(key)
        try:
            rgb = read_rgb(image.name, "original photo" if original else "generated image")
            mask = read_mask(c.mask.name, rgb.shape[:2])
        except (ImageRejected, OSError) as exc:
            say(f"correction {c.pk} skipped: {exc}")
            continue
        if mask.sum() >= 16:
            examples.append(MaskExample(rgb, mask, f"correction {c.pk}"))
    return list(reversed(examples))  # oldest first: the held-out share is spread over time


def finetune_segmenter(project: Project, out_dir: Path, base_model: str | None = None, epochs: int = 20,
                       log_fn: LogFn = None) -> dict:
    """Fine-tune the published SAM's mask decoder on the project's mask corrections and write the
    model to `out_dir` (point STAGECRAFT_SAM_MODEL at it). Raises CalibrationError with what is
    missing (no published SAM configured, too few corrections)."""
    from consistency.ml.finetune import finetune_mask_decoder

    say = log_fn or (lambda s: None)
    base = base_model or configured_sam()
    if not base:
        raise CalibrationError(NO_SAM_CONFIGURED + " or pass the base model.")
    examples = corrected_mask_examples(project, say)
    if len(examples) < MIN_SEGMENTER_EXAMPLES:
        raise CalibrationError(f"{len(examples)} corrected product masks in project {project.name}, need at least "
                               f"{MIN_SEGMENTER_EXAMPLES}: correct masks on the consistency pages first.")
    say(f"fine-tuning the mask decoder of {base} on {len(examples)} corrected masks")
    report = finetune_mask_decoder(base, examples, Path(out_dir), epochs=epochs,
                                   progress=lambda i, n: say(f"epoch {i}/{n}") if i == n or i % 5 == 0 else None)
    say(f"held-out IoU {report['held_out_iou_before']:.3f} -> {report['held_out_iou_after']:.3f}; "
        f"written to {out_dir}")
    return report


# --------------------------------------------------------------------------- calibration
def _metric_names():
    from consistency.ml import METRIC_NAMES

    return METRIC_NAMES


def human_intact_labels(project: Project) -> dict[int, bool]:
    """generation id → product intact (True/False) from ImageLabels: a QA label wins, otherwise the
    majority of annotator/import labels; ties are left out."""
    from annotate.models import ImageLabel

    votes: dict[int, dict[str, list[bool]]] = {}
    for gid, source, intact in ImageLabel.objects.filter(
            generation__product__project=project, product_intact__isnull=False).values_list(
            "generation_id", "source", "product_intact"):
        votes.setdefault(gid, {"qa": [], "other": []})["qa" if source == "qa" else "other"].append(bool(intact))
    out = {}
    for gid, v in votes.items():
        pool = v["qa"] or v["other"]
        yes = sum(pool)
        if yes * 2 != len(pool):
            out[gid] = yes * 2 > len(pool)
    return out


def _row(metrics: dict) -> dict[str, float]:
    return {k: (float("nan") if metrics.get(k) is None else float(metrics[k])) for k in _metric_names()}


def split_by_product(product_ids: list[int], altered_by_product: dict[int, list[bool]], seed: str,
                     fraction: float = HELD_OUT_FRACTION) -> set[int]:
    """Held-out products: a deterministic shuffle (seeded by the project), then the first products
    until `fraction` of the labels, making sure both sets keep both answers when possible."""
    order = sorted(product_ids, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    total = sum(len(altered_by_product[p]) for p in order)
    held, n = set(), 0
    for p in order:
        if n >= fraction * total and {True, False} <= {a for q in held for a in altered_by_product[q]}:
            break
        rest = [a for q in order if q not in held and q != p for a in altered_by_product[q]]
        if not ({True, False} <= set(rest)):
            continue  # training would lose one of the answers
        held.add(p)
        n += len(altered_by_product[p])
    return held


def _scores(y_altered: list[bool], flagged: list[bool], prob: list[float] | None) -> dict:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y = np.array(y_altered, bool)
    f = np.array(flagged, bool)
    out = {
        "n": int(len(y)), "n_altered": int(y.sum()), "n_intact": int((~y).sum()),
        "precision": float(precision_score(y, f, zero_division=0)),
        "recall": float(recall_score(y, f, zero_division=0)),
        "f1": float(f1_score(y, f, zero_division=0)),
        "false_alarm_rate": float(f[~y].mean()) if (~y).any() else None,
        "accuracy": float((y == f).mean()) if len(y) else None,
    }
    s = np.array(prob if prob is not None else f.astype(float), float)
    out["roc_auc"] = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    return out


def _threshold_decisions(project: Project, rows: list[dict], statuses: list[str]) -> list[bool]:
    """Flag decisions of the plain threshold rules (what serves when nothing is promoted)."""
    from consistency.ml import ConsistencyChecker

    checker = ConsistencyChecker(thresholds=thresholds_for(project))  # only `reasons` is used (cheap)
    out = []
    for r, st in zip(rows, statuses):
        if st != "consistent" and st != "inconsistent":
            out.append(True)
        elif any(math.isnan(r[k]) for k in ("area_change", "expansion", "shrinkage", "iou", "boundary_f")):
            out.append(True)
        else:
            out.append(bool(checker.reasons(r)))
    return out


def _model_decisions(model, rows: list[dict], statuses: list[str]) -> tuple[list[bool], list[float]]:
    probs = [float(p) for p in model.predict_proba(rows)]
    flagged = [True if st not in ("consistent", "inconsistent") else p >= model.threshold
               for p, st in zip(probs, statuses)]
    probs = [1.0 if st not in ("consistent", "inconsistent") else p for p, st in zip(probs, statuses)]
    return flagged, probs


def _better(new: dict, old: dict) -> bool:
    """Promotion rule on the same held-out set: higher F1 of the "altered" decision; on a tie,
    higher ROC-AUC; never a higher false-alarm rate at equal F1."""
    nf, of = new.get("f1") or 0.0, old.get("f1") or 0.0
    if nf != of:
        return nf > of
    na, oa = new.get("roc_auc") or 0.0, old.get("roc_auc") or 0.0
    return na > oa


def calibration_dataset(project: Project, recheck: bool = True, progress: ProgressFn = None, log_fn: LogFn = None):
    """Labelled generations with metrics: re-checks those never checked and those whose masks were
    corrected after their check (with the default thresholds/model tier; the stored result is
    refreshed). Returns (rows, statuses, altered, product ids, generation ids, counts)."""
    labels = human_intact_labels(project)
    gens = list(Generation.objects.filter(pk__in=labels).select_related("product", "product__project").order_by("id"))
    ctx = None
    rows, statuses, altered, products, gids = [], [], [], [], []
    rechecked = 0
    for i, g in enumerate(gens):
        if recheck and (not g.consistency or g.consistency.get("schema") != CHECK_SCHEMA
                        or stale_after_corrections(g)):
            ctx = ctx or check_context(project)
            check_generation(g, ctx)
            rechecked += 1
        c = g.consistency or {}
        st = c.get("status", "")
        if st in ("unreadable", "no_image", "no_original", "error", "no_product_in_original") or not c:
            continue  # not a judgement on the product: nothing to learn from
        rows.append(_row(c.get("metrics") or {}))
        statuses.append(st)
        altered.append(not labels[g.pk])
        products.append(g.product_id)
        gids.append(g.pk)
        if progress:
            progress(i + 1, len(gens))
    if log_fn:
        log_fn(f"{len(labels)} labelled generations, {len(gids)} usable, {rechecked} (re)checked")
    return rows, statuses, altered, products, gids, {"labelled": len(labels), "usable": len(gids),
                                                     "rechecked": rechecked}


def _next_version(project: Project) -> int:
    top = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY).aggregate(v=Max("version"))["v"]
    return (top or 0) + 1


def artifact_root(project: Project) -> Path:
    return Path(getattr(settings, "STAGECRAFT_ARTIFACT_DIR", Path(settings.MEDIA_ROOT) / "artifacts")) \
        / f"project-{project.pk}" / "consistency"


def calibrate(project: Project, user=None, *, promote: str = "auto", progress: ProgressFn = None,
              log_fn: LogFn = None) -> ModelVersion:
    """Fit a calibrated model on human "product intact" labels; held-out split by product.

    promote: "auto" (only if better than what serves now on the same held-out set), "always"
    (explicit override), "never". Raises CalibrationError with the number needed when too few."""
    say = log_fn or (lambda s: None)
    step = progress or (lambda i, n: None)
    rows, statuses, altered, products, gids, counts = calibration_dataset(
        project, progress=lambda i, n: step(int(0.7 * 100 * i / max(n, 1)), 100), log_fn=say)
    n_alt, n_ok = sum(altered), len(altered) - sum(altered)
    problems = []
    if len(gids) < MIN_LABELLED_GENERATIONS:
        problems.append(f"{len(gids)} labelled generations with a check, need at least {MIN_LABELLED_GENERATIONS} "
                        f"({MIN_LABELLED_GENERATIONS - len(gids)} more)")
    if n_alt < MIN_PER_CLASS or n_ok < MIN_PER_CLASS:
        problems.append(f"{n_ok} labelled 'product intact' and {n_alt} 'product changed', need at least "
                        f"{MIN_PER_CLASS} of each")
    if len(set(products)) < MIN_PRODUCTS:
        problems.append(f"labels cover {len(set(products))} product(s), need at least {MIN_PRODUCTS} "
                        "(the held-out split is by product)")
    if problems:
        raise CalibrationError("Too few human labels to calibrate: " + "; ".join(problems)
                               + ". Label 'product intact' on more generations (Labelling → single images).")
    by_product: dict[int, list[bool]] = {}
    for p, a in zip(products, altered):
        by_product.setdefault(p, []).append(a)
    held = split_by_product(sorted(by_product), by_product, seed=f"project-{project.pk}")
    tr = [i for i, p in enumerate(products) if p not in held]
    te = [i for i, p in enumerate(products) if p in held]
    if not te or len({altered[i] for i in tr}) < 2:
        raise CalibrationError("Too few human labels to calibrate: the labels cannot be split by product into a "
                               "training and a held-out set that both contain intact and changed products; "
                               "label more products.")
    say(f"training on {len(tr)} generations of {len(by_product) - len(held)} products, "
        f"held out {len(te)} generations of {len(held)} products")
    # the learned part uses the full-metric rows; rule outcomes (missing product...) stay rules
    fit_idx = [i for i in tr if statuses[i] in ("consistent", "inconsistent")]
    if len({altered[i] for i in fit_idx}) < 2:
        raise CalibrationError("Too few human labels to calibrate: the training products need both intact and "
                               "changed products among checks with full metrics; label more generations.")
    model = _fit_model([rows[i] for i in fit_idx], [altered[i] for i in fit_idx])
    step(80, 100)
    y_te = [altered[i] for i in te]
    flagged, probs = _model_decisions(model, [rows[i] for i in te], [statuses[i] for i in te])
    held_metrics = _scores(y_te, flagged, probs)
    rules_metrics = _scores(y_te, _threshold_decisions(project, [rows[i] for i in te], [statuses[i] for i in te]), None)
    current = promoted_version(project)
    current_model = None
    if current is not None:
        try:
            current_model = load_calibrated(current)
        except Exception as exc:
            say(f"promoted v{current.version} could not be loaded ({exc}); compared with the rules instead")
    if current_model is not None:
        cf, cp = _model_decisions(current_model, [rows[i] for i in te], [statuses[i] for i in te])
        baseline = _scores(y_te, cf, cp)
        baseline_name = f"promoted v{current.version}"
    else:
        baseline, baseline_name = rules_metrics, "threshold rules"
    say(f"held-out: precision {held_metrics['precision']:.2f} recall {held_metrics['recall']:.2f} "
        f"ROC-AUC {held_metrics['roc_auc'] if held_metrics['roc_auc'] is not None else 'n/a'}; "
        f"{baseline_name}: F1 {baseline['f1']:.2f}")

    version = _next_version(project)
    folder = artifact_root(project) / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    _save_model(model, folder / "calibration.json")
    snapshot = {
        "generation_ids": gids, "held_out_products": sorted(held),
        "train_ids": [gids[i] for i in tr], "held_out_ids": [gids[i] for i in te],
        "counts": {**counts, "train": len(tr), "held_out": len(te), "altered": n_alt, "intact": n_ok},
    }
    (folder / "snapshot.json").write_text(json.dumps(snapshot, indent=1))
    metrics = {"held_out": held_metrics, "baseline": {"name": baseline_name, **baseline},
               "rules_held_out": rules_metrics, "target_false_alarm": TARGET_FALSE_ALARM}
    better = _better(held_metrics, baseline) if current_model is not None else not _better(baseline, held_metrics)
    with transaction.atomic():
        mv = ModelVersion.objects.create(
            project=project, kind=ModelVersion.Kind.CONSISTENCY, version=version, artifact_path=str(folder),
            backbone="logistic calibration over checker metrics", metrics=json.loads(json.dumps(metrics, default=_json_default)),
            training_snapshot=snapshot, code_version=_code_version(), threshold=float(model.threshold),
            notes=f"calibrated on {len(tr)} labelled generations; held-out {len(te)}")
        if promote == "always" or (promote == "auto" and better):
            promote_version(mv, user)
            why = "override" if promote == "always" else (
                f"held-out F1 {held_metrics['f1']:.2f} vs {baseline['f1']:.2f} for {baseline_name}")
            say(f"v{version} promoted ({why})")
        else:
            say(f"v{version} kept as a candidate (not better than {baseline_name} on the held-out set)")
    step(100, 100)
    mv.refresh_from_db()
    return mv


def _code_version() -> str:
    try:
        from consistency.ml import checker

        return hashlib.sha256(Path(checker.__file__).read_bytes()).hexdigest()[:12]
    except Exception:
        return ""


def promote_version(version: ModelVersion, user=None) -> ModelVersion:
    """Make `version` the one serving for its project (the previous promoted one is retired)."""
    if version.kind != ModelVersion.Kind.CONSISTENCY:
        raise ValueError("not a consistency model version")
    if not version.artifact_path or not (Path(version.artifact_path) / "calibration.json").is_file():
        raise ValueError(f"v{version.version} has no calibration artifact; it cannot serve")
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(
            project=version.project, kind=version.kind, status=ModelVersion.Status.PROMOTED).exclude(
            pk=version.pk).update(status=ModelVersion.Status.RETIRED)
        version.status = ModelVersion.Status.PROMOTED
        version.promoted_at = timezone.now()
        version.promoted_by = user if (user is not None and user.is_authenticated) else None
        version.save(update_fields=["status", "promoted_at", "promoted_by"])
    return version


# --------------------------------------------------------------------------- background runs
STALE_RUN_AFTER_S = 15 * 60


def start_calibration_run(project: Project, user, promote: str = "auto", finetune_segmenter: bool = False) -> TrainingRun:
    """A new queued run; refused (CalibrationError) while another one of the project is active, or
    when it should fine-tune the segmenter and no published SAM is configured."""
    if finetune_segmenter and not configured_sam():
        raise CalibrationError(NO_SAM_CONFIGURED + " and restart web and worker.")
    notice_stale_runs(project)
    active = TrainingRun.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY,
                                        state__in=[TrainingRun.State.QUEUED, TrainingRun.State.RUNNING]).first()
    if active is not None:
        raise CalibrationError(f"calibration run #{active.pk} is still {active.state}; wait for it to finish")
    return TrainingRun.objects.create(project=project, kind=ModelVersion.Kind.CONSISTENCY, started_by=user,
                                      params={"promote": promote, "finetune_segmenter": finetune_segmenter})


def run_log(run: TrainingRun, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    run.log = (run.log + f"[{stamp}] {line}\n")[-100_000:]
    run.params = {**run.params, "heartbeat_at": timezone.now().isoformat()}
    run.save(update_fields=["log", "params"])


def run_progress(run: TrainingRun, fraction: float) -> None:
    run.progress = max(0.0, min(1.0, float(fraction)))
    run.params = {**run.params, "heartbeat_at": timezone.now().isoformat()}
    run.save(update_fields=["progress", "params"])


def fail_run(run: TrainingRun, message: str) -> None:
    run.state = TrainingRun.State.FAILED
    run.finished_at = timezone.now()
    run_log(run, message)
    run.save(update_fields=["state", "finished_at"])


def notice_stale_runs(project: Project) -> int:
    """Runs whose worker died (no heartbeat for STALE_RUN_AFTER_S) are marked failed, log kept."""
    n = 0
    now = timezone.now()
    for run in TrainingRun.objects.filter(project=project, kind=ModelVersion.Kind.CONSISTENCY,
                                          state__in=[TrainingRun.State.RUNNING, TrainingRun.State.QUEUED]):
        beat = run.params.get("heartbeat_at")
        last = datetime.fromisoformat(beat) if beat else (run.started_at or run.created_at)
        if (now - last).total_seconds() <= STALE_RUN_AFTER_S:
            continue
        if run.state == TrainingRun.State.RUNNING:
            fail_run(run, f"no progress for {STALE_RUN_AFTER_S // 60} minutes: the worker stopped; "
                          "the promoted version keeps serving")
        else:
            fail_run(run, f"not picked up by a worker within {STALE_RUN_AFTER_S // 60} minutes: "
                          "is the Celery worker running? Start a new calibration.")
        n += 1
    return n


def execute_calibration_run(run: TrainingRun, task_id: str = "") -> TrainingRun:
    """Body of the background task. A run found already 'running' was interrupted (the worker
    died and the broker redelivered it): it is marked failed instead of silently restarting."""
    run.refresh_from_db()
    if run.state == TrainingRun.State.RUNNING:
        fail_run(run, "the worker stopped during this run (redelivered after a worker loss); "
                      "the promoted version keeps serving. Start a new calibration.")
        return run
    if run.state != TrainingRun.State.QUEUED:
        return run
    run.state = TrainingRun.State.RUNNING
    run.started_at = timezone.now()
    run.celery_task_id = task_id or run.celery_task_id
    run.save(update_fields=["state", "started_at", "celery_task_id"])
    run_log(run, "calibration started")
    try:
        mv = calibrate(run.project, run.started_by, promote=run.params.get("promote", "auto"),
                       progress=lambda i, n: run_progress(run, i / max(n, 1)), log_fn=lambda s: run_log(run, s))
    except CalibrationError as exc:
        fail_run(run, str(exc))
        return run
    except Exception as exc:
        log.exception("consistency calibration run %s failed", run.pk)
        fail_run(run, f"failed: {type(exc).__name__}: {exc}")
        return run
    if run.params.get("finetune_segmenter"):
        _finetune_into_version(run, mv)
    run.model_version = mv
    run.state = TrainingRun.State.SUCCEEDED
    run.progress = 1.0
    run.finished_at = timezone.now()
    run.save(update_fields=["model_version", "state", "progress", "finished_at"])
    run_log(run, f"done: v{mv.version} ({mv.status})")
    return run




def _finetune_into_version(run: TrainingRun, mv: ModelVersion) -> None:
    """The run's optional step: SAM's mask decoder fine-tuned on the corrections, written beside
    the calibration. It does not serve until STAGECRAFT_SAM_MODEL points at it (a deployment
    setting, read once per process); a failure here is logged and leaves the calibration done."""
    folder = Path(mv.artifact_path) / "segmenter"
    try:
        report = finetune_segmenter(run.project, folder, log_fn=lambda s: run_log(run, s))
    except (CalibrationError, ValueError, OSError) as exc:
        run_log(run, f"segmenter not fine-tuned: {exc}")
        return
    mv.metrics = {**mv.metrics, "segmenter": {**report, "path": str(folder)}}
    mv.save(update_fields=["metrics"])
    run_log(run, f"to serve the fine-tuned segmenter, set STAGECRAFT_SAM_MODEL={folder} and restart web and worker")


# --------------------------------------------------------------------------- calibration model (consistency.ml)
def _fit_model(rows, altered):
    from consistency.ml.calibration import fit_calibration

    return fit_calibration(rows, altered, target_false_alarm=TARGET_FALSE_ALARM)


def _save_model(model, path: Path) -> None:
    from consistency.ml.calibration import save_calibration

    save_calibration(model, path)


def _load_model(path: Path):
    from consistency.ml.calibration import load_calibration

    return load_calibration(path)
