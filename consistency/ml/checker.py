"""Product-consistency checker: is the product in the generated ad the product we were given?

Pipeline (all plain numpy; no Django):
  1. frame    – the original (the generator's input: product photo or composite) is mapped into the
                generated image's frame (same aspect: resize; other aspect: fit inside, centred);
  2. locate   – the product in the original: its stored mask, or a locator when none is given;
  3. find     – the product in the generated image. Two modes:
                reference-guided (default, offline): template matching of the original product
                (U2-Net saliency as fallback), affine ECC alignment, a per-pixel test of the
                aligned original against the generated pixels, and GrabCut only for what grew or
                was lost (`reference.py`);
                segment-both (published tier, human-corrected masks): a text-grounded locator and
                a box-prompted segmenter give the generated mask; a similarity transform from the
                masks refined by ECC aligns the original to it;
  4. compare  – shape metrics (area change, IoU, expansion, shrinkage, boundary F) and appearance
                metrics inside the product (SSIM, CIEDE2000, edge-map difference, mismatching pixels);
  5. decide   – thresholds (`ConsistencyThresholds`) or a calibrated model → `ConsistencyResult`.
"""
from __future__ import annotations

import base64
import io
import math
import os
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from core.ml.segmentation import ProductSegmenter, as_rgb_uint8, fill_holes, mask_bbox, segment_product

from . import metrics as M
from .align import estimate_similarity, moments_similarity
from .reference import affine_scale, aligned_original, refine_alignment, segment_generated
from .locate import (
    Box,
    BoxSegmenter,
    GroundingDinoLocator,
    Located,
    OriginalPriorRefiner,
    ProductLocator,
    SalientLocator,
    SamBoxSegmenter,
    TemplateLocator,
)

GROUNDING_ENV_VAR = "STAGECRAFT_GROUNDING_MODEL"
SAM_ENV_VAR = "STAGECRAFT_SAM_MODEL"

# ECC correlation (shading, invariant to gain and offset) at which the original's shape is taken
# as found even when its colours match nowhere
RECOLOURED_CORRELATION = 0.9

METRIC_NAMES = (
    "area_change",
    "iou",
    "expansion",
    "shrinkage",
    "boundary_f",
    "ssim",
    "delta_e_mean_colour",
    "delta_e_median",
    "colour_changed_fraction",
    "edge_difference",
    "mismatch_fraction",
    "detail_loss",
    "scale",
    "shift",
)


@dataclass
class ConsistencyThresholds:
    """Pass/fail limits, one per metric. Defaults set from bench/consistency_alterations.py runs
    (see docs/consistency.md for the measured rates)."""

    max_area_change: float = 0.05  # |area_gen / area_orig − 1| (ignored when allow_rescale)
    min_iou: float = 0.85  # mask IoU after alignment
    max_expansion: float = 0.05  # Eshratifar et al. 2024 expansion after alignment
    max_shrinkage: float = 0.07  # share of the original silhouette lost after alignment
    min_boundary_f: float = 0.45  # boundary F-score after alignment (tolerance 2 px at work size)
    min_ssim: float = 0.95  # SSIM inside the product (segment-both alignment is looser: calibrate it)
    max_delta_e: float = 4.0  # ΔE2000 between mean product colours
    max_colour_changed_fraction: float = 0.10  # share of product pixels with ΔE2000 > 10
    max_edge_difference: float = 0.7  # 1 − edge-map F-score inside the product
    max_mismatch_fraction: float = 0.04  # share of product pixels unlike the aligned original
    max_detail_loss: float = 0.03  # share of the product whose print/texture detail was lost
    min_presence: float = 0.2  # generated area below this share of the original = "missing"
    min_alignment_correlation: float = 0.5  # ECC correlation below this: the original is not there
    allow_rescale: bool = False  # a backend allowed to resize the product: skip area_change
    allow_rotation: bool = False  # estimate rotation in the alignment too

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConsistencyThresholds":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def mask_to_png_base64(mask: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_from_png_base64(data: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L")) >= 128


@dataclass
class ConsistencyResult:
    passed: bool
    status: str  # "consistent" | "inconsistent" | "product_missing" | "no_product_in_original"
    reasons: list[str]
    metrics: dict[str, float]
    original_box: Box | None = None  # in the generated image's pixel frame
    generated_box: Box | None = None
    transform: dict | None = None
    original_mask: np.ndarray | None = None  # HxW bool in the generated image's frame (display)
    generated_mask: np.ndarray | None = None
    models: dict = field(default_factory=dict)
    seconds: float = 0.0
    calibrated_probability: float | None = None

    def metric_row(self) -> dict[str, float]:
        return {k: float(self.metrics.get(k, float("nan"))) for k in METRIC_NAMES}

    def to_dict(self, include_masks: bool = True) -> dict:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        d = {
            "passed": bool(self.passed),
            "status": self.status,
            "reasons": list(self.reasons),
            "metrics": {k: clean(float(v)) for k, v in self.metrics.items()},
            "original_box": list(self.original_box) if self.original_box else None,
            "generated_box": list(self.generated_box) if self.generated_box else None,
            "transform": self.transform,
            "models": dict(self.models),
            "seconds": round(float(self.seconds), 4),
            "calibrated_probability": self.calibrated_probability,
        }
        if include_masks:
            d["original_mask_png"] = mask_to_png_base64(self.original_mask) if self.original_mask is not None else None
            d["generated_mask_png"] = mask_to_png_base64(self.generated_mask) if self.generated_mask is not None else None
        return d


# --------------------------------------------------------------------------- frame mapping
def fit_into_frame(rgb: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int], aspect_tolerance: float = 0.02):
    """Map the original (and its mask) into a HxW frame: plain resize when the aspect ratios agree,
    otherwise fit inside and centre on white (the generator outpainted to another aspect)."""
    h, w = shape
    oh, ow = rgb.shape[:2]
    if abs((ow / oh) / (w / h) - 1) <= aspect_tolerance:
        out = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if ow > w else cv2.INTER_LINEAR)
        m = None if mask is None else cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return out, m
    s = min(w / ow, h / oh)
    nw, nh = max(1, round(ow * s)), max(1, round(oh * s))
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out = np.full((h, w, 3), 255, np.uint8)
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = None
    if mask is not None:
        m = np.zeros((h, w), bool)
        m[y0:y0 + nh, x0:x0 + nw] = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
    return out, m


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.0f} %"


# --------------------------------------------------------------------------- checker
class ConsistencyChecker:
    """Compare the product in an original image with the product in a generated image.

    locator / box_segmenter: the model tier. Offline default: reference-guided mode with
    `TemplateLocator` and U2-Net saliency (`SalientLocator`) as fallback. Published tier:
    `GroundingDinoLocator` + `SamBoxSegmenter`, whose masks are compared directly
    (segment-both mode; also used for a locator that returns a human-drawn mask).
    `calibrated` (a `CalibratedModel`) replaces the threshold decision when given; the
    thresholds still produce the human-readable reasons.
    """

    def __init__(self, locator: ProductLocator | None = None, box_segmenter: BoxSegmenter | None = None,
                 thresholds: ConsistencyThresholds | None = None, segmenter: ProductSegmenter | None = None,
                 work_size: int = 512, calibrated=None, reference_guided: bool | None = None):
        self.segmenter = segmenter
        self.salient = SalientLocator(segmenter)
        if reference_guided is None:
            reference_guided = locator is None and box_segmenter is None
        self.reference_guided = reference_guided
        self.locator = locator or (TemplateLocator() if reference_guided else self.salient)
        self.box_segmenter = box_segmenter
        self.thresholds = thresholds or ConsistencyThresholds()
        self.work_size = work_size
        self.fine_alignment_size = 320
        self.calibrated = calibrated
        # salient masks of a scene are refined with the original's colour model; SAM masks and
        # human-drawn masks are not
        refine = not reference_guided and box_segmenter is None and isinstance(self.locator, SalientLocator)
        self.prior_refiner = OriginalPriorRefiner() if refine else None

    # -- model plumbing
    def _models(self) -> dict:
        if self.reference_guided:
            return {"locator": f"{self.locator.name} (fallback {self.salient.name})", "segmenter": "reference-guided grabcut",
                    "refiner": "affine-ecc"}
        return {"locator": getattr(self.locator, "name", type(self.locator).__name__),
                "segmenter": getattr(self.box_segmenter, "name", "locator-mask"),
                "refiner": getattr(self.prior_refiner, "name", None)}

    def _find(self, rgb: np.ndarray, category: str | None, expected_box: Box | None,
              reference: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Located | None, np.ndarray | None]:
        if getattr(self.locator, "uses_reference", False):
            if reference is None:  # a reference-based locator cannot find the original itself
                located = self.salient.locate(rgb, category, expected_box)
                return located, None if located is None else located.mask
            located = self.locator.locate(rgb, category, expected_box, reference=reference)
        else:
            located = self.locator.locate(rgb, category, expected_box)
        if located is None:
            return None, None
        if self.box_segmenter is not None:
            seg = self.box_segmenter.segment_box(rgb, located.box)
            return located, seg.mask
        if located.mask is not None:
            return located, located.mask
        # a locator without masks and no box segmenter: fall back to salient segmentation in the box
        x0, y0, x1, y1 = located.box
        m = np.zeros(rgb.shape[:2], bool)
        m[y0:y1, x0:x1] = segment_product(rgb[y0:y1, x0:x1], self.segmenter).mask
        return located, m

    # -- the two ways of finding the generated product
    def _place_by_reference(self, orig, m_orig, gen, category, box_o, surroundings_from_generated: bool):
        """Reference-guided: (aligned original mask, aligned original image, generated mask,
        mismatching pixels, tested pixels, affine, transform info), or None when the product
        is not there. The in-place position and the template match are both refined by ECC and the
        better fit is kept; when it does not fit (low correlation, or too few of the original's
        pixels match), U2-Net saliency near the original position gives a last start."""
        th = self.thresholds
        starts = [(np.eye(2, 3), "in-place")]  # most backends keep the product where it was
        located = self.locator.locate(gen, category, box_o, reference=(orig, m_orig))
        if located is not None and located.affine is not None:
            starts.append((located.affine, self.locator.name))
        fits = [(refine_alignment(orig, m_orig, gen, init, allow_rotation=th.allow_rotation), how) for init, how in starts]
        (a, cc), how = max(fits, key=lambda fit: -1.0 if fit[0][1] != fit[0][1] else fit[0][1])
        placed = self._placement_at(orig, m_orig, gen, a, cc, how, surroundings_from_generated)
        if placed is not None:
            return placed
        # saliency is the expensive fallback: only when the cheap starts did not fit
        salient = self.salient.locate(gen, category, box_o)
        if salient is None or salient.mask is None:
            return None
        sim = moments_similarity(fill_holes(m_orig), fill_holes(salient.mask), th.allow_rotation)
        a, cc = refine_alignment(orig, m_orig, gen, sim.matrix(), allow_rotation=th.allow_rotation)
        return self._placement_at(orig, m_orig, gen, a, cc, self.salient.name, surroundings_from_generated)

    def _placement_at(self, orig, m_orig, gen, a, cc, how, surroundings_from_generated: bool):
        """The reference-guided result for one coarse fit `a`, or None when the original is not there."""
        th = self.thresholds
        # the coarse fit is good to a pixel at 128 px; fine print needs it at the working size
        fine, fine_cc = refine_alignment(orig, m_orig, gen, a, size=self.fine_alignment_size, iterations=20,
                                         allow_rotation=th.allow_rotation)
        if fine_cc == fine_cc:
            a, cc = fine, fine_cc
        m_o, img_o, inner, mismatch = aligned_original(orig, m_orig, gen, a)
        matched = inner & ~mismatch
        share = matched.sum() / max(inner.sum(), 1)
        # without an ECC fit (nan) only a clear pixel majority says the product is there
        aligned = cc >= th.min_alignment_correlation if cc == cc else share >= 0.5
        # a product recoloured wholesale matches few pixels, but its shading still fits the original
        # almost perfectly (a missing one fits at 0.3–0.4 at best): it is there, and changed
        recoloured = cc == cc and cc >= RECOLOURED_CORRELATION and share < th.min_presence
        if not (aligned and (share >= th.min_presence or recoloured)):
            return None
        m_gen = segment_generated(gen, None if surroundings_from_generated else img_o, m_o,
                                  inner if recoloured else matched, mismatch)
        transform = {"matrix": [[round(float(v), 6) for v in row] for row in a], "scale": affine_scale(a),
                     "ecc_correlation": None if cc != cc else round(cc, 4), "method": f"{how}+ecc-affine"}
        return m_o, img_o, m_gen, mismatch, inner, a, transform

    # -- main entry point
    def check(self, original: np.ndarray, generated: np.ndarray, category: str | None = None,
              original_mask: np.ndarray | None = None, surroundings_from_generated: bool = False) -> ConsistencyResult:
        """`surroundings_from_generated`: the original was made by pasting the product into the
        generated image (the platform does so where the generator reported its placement), so
        its pixels around the product say nothing about what grew there."""
        t0 = time.perf_counter()
        th = self.thresholds
        gen_full = as_rgb_uint8(generated)
        orig_rgb = as_rgb_uint8(original)
        gh, gw = gen_full.shape[:2]
        s = min(1.0, self.work_size / max(gh, gw))
        wh, ww = max(8, round(gh * s)), max(8, round(gw * s))
        gen = cv2.resize(gen_full, (ww, wh), interpolation=cv2.INTER_AREA) if s < 1 else gen_full
        if original_mask is not None:
            original_mask = np.asarray(original_mask)
            if original_mask.dtype != bool:
                original_mask = original_mask.astype(np.float32) >= (0.5 if original_mask.max() <= 1 else 127.5)
            if original_mask.shape != orig_rgb.shape[:2]:
                original_mask = cv2.resize(original_mask.astype(np.uint8), (orig_rgb.shape[1], orig_rgb.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        orig, m_orig = fit_into_frame(orig_rgb, original_mask, (wh, ww))

        def finish(passed, status, reasons, metrics, mo=None, mg=None, box_o=None, box_g=None, transform=None):
            def up(m):
                if m is None:
                    return None
                return cv2.resize(m.astype(np.uint8), (gw, gh), interpolation=cv2.INTER_NEAREST) > 0 if s < 1 else m

            def upbox(b):
                return None if b is None else tuple(int(round(v / s)) for v in b)

            res = ConsistencyResult(passed, status, reasons, metrics, upbox(box_o), upbox(box_g), transform,
                                    up(mo), up(mg), self._models())
            if self.calibrated is not None and status in ("consistent", "inconsistent"):
                p = float(self.calibrated.predict_proba([res.metric_row()])[0])
                res.calibrated_probability = p
                res.passed = p < self.calibrated.threshold
                if not res.passed and not res.reasons:
                    res.reasons.append(f"calibrated model: probability of an altered product {p:.2f}")
                if res.passed:
                    res.reasons = []
                res.status = "consistent" if res.passed else "inconsistent"
            res.seconds = time.perf_counter() - t0
            return res

        # 1. the original product
        if m_orig is None:
            located_o, m_orig = self._find(orig, category, None)
            if located_o is None:
                m_orig = np.zeros((wh, ww), bool)
        if m_orig.sum() < 16:
            return finish(False, "no_product_in_original", ["no product found in the original image"], {})
        box_o = mask_bbox(m_orig)
        area_o = float(m_orig.sum())

        # 2. the generated product, searched near where the original is
        if self.reference_guided:
            placed = self._place_by_reference(orig, m_orig, gen, category, box_o, surroundings_from_generated)
            if placed is None:
                return finish(False, "product_missing", ["product missing in generated image"], {"area_change": -1.0},
                              m_orig, None, box_o, None)
            m_o, img_o, m_gen, mismatch, inner, affine, transform = placed
            m_o, m_gen = fill_holes(m_o), fill_holes(m_gen)
            box_g = mask_bbox(m_gen)
            area_o = float(fill_holes(m_orig).sum())
            scale = affine_scale(affine)
        else:
            located_g, m_gen = self._find(gen, category, box_o, reference=(orig, m_orig))
            if self.prior_refiner is not None and m_gen is not None and m_gen.sum() >= th.min_presence * area_o:
                m_gen = self.prior_refiner.refine(orig, m_orig, gen, m_gen)
            if located_g is None or m_gen is None or m_gen.sum() < th.min_presence * area_o:
                metrics = {"area_change": -1.0 if m_gen is None else float(m_gen.sum() / area_o - 1.0)}
                return finish(False, "product_missing", ["product missing in generated image"], metrics, m_orig, m_gen, box_o,
                              None if located_g is None else located_g.box)
            # silhouettes: enclosed holes (gaps in a multipack, a handle) are compared filled on both sides
            m_orig, m_gen = fill_holes(m_orig), fill_holes(m_gen)
            area_o = float(m_orig.sum())
            sim = estimate_similarity(orig, m_orig, gen, m_gen, allow_rotation=th.allow_rotation)
            m_o, img_o, inner, mismatch = aligned_original(orig, m_orig, gen, sim.matrix())
            transform, box_g, scale = sim.to_dict(), located_g.box, sim.scale

        # 3. compare
        k = max(1, round(0.006 * max(wh, ww)))
        region = cv2.erode((m_o & m_gen).astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
        metrics = {
            "area_change": float(m_gen.sum()) / area_o - 1.0,
            "iou": M.mask_iou(m_gen, m_o),
            "expansion": M.object_expansion(m_gen, m_o),
            "shrinkage": M.object_shrinkage(m_gen, m_o),
            "boundary_f": M.boundary_fscore(m_gen, m_o, tolerance_px=max(2.0, 0.004 * max(wh, ww))),
            "ssim": M.masked_ssim(gen, img_o, region),
            **M.colour_metrics(gen, img_o, region),
            "edge_difference": M.edge_difference(gen, img_o, region),
            "mismatch_fraction": float((mismatch & inner).sum() / max(inner.sum(), 1)),
            "detail_loss": M.detail_loss(gen, img_o, region),
            "scale": scale,
        }
        # shift: displacement of the product centroid, in product sizes
        c_o = np.argwhere(m_orig).mean(axis=0)
        c_g = np.argwhere(m_gen).mean(axis=0)
        metrics["shift"] = float(np.hypot(*(c_g - c_o)) / math.sqrt(area_o))

        reasons = self.reasons(metrics)
        passed = not reasons
        return finish(passed, "consistent" if passed else "inconsistent", reasons, metrics, m_o, m_gen, box_o,
                      box_g, transform)

    def reasons(self, m: dict[str, float]) -> list[str]:
        th = self.thresholds
        r = []
        if not th.allow_rescale and abs(m["area_change"]) > th.max_area_change:
            r.append(f"product area {'grew' if m['area_change'] > 0 else 'shrank'} {_pct(m['area_change'])}")
        if m["expansion"] > th.max_expansion:
            r.append(f"product outline expanded by {_pct(m['expansion'])} of its area")
        if m["shrinkage"] > th.max_shrinkage:
            r.append(f"{_pct(m['shrinkage'])} of the product is missing or cut off")
        if m["iou"] < th.min_iou and not (m["expansion"] > th.max_expansion or m["shrinkage"] > th.max_shrinkage):
            r.append(f"product shape changed (IoU {m['iou']:.2f} after alignment)")
        if m["boundary_f"] < th.min_boundary_f and not r:
            r.append(f"product outline changed (boundary F {m['boundary_f']:.2f})")
        if m["delta_e_mean_colour"] > th.max_delta_e:
            r.append(f"colour shift ΔE {m['delta_e_mean_colour']:.1f} inside product")
        elif m["colour_changed_fraction"] > th.max_colour_changed_fraction:
            r.append(f"colour changed on {_pct(m['colour_changed_fraction'])} of the product (ΔE > 10)")
        if m["ssim"] < th.min_ssim:
            r.append(f"product appearance changed (SSIM {m['ssim']:.2f})")
        if m["edge_difference"] > th.max_edge_difference:
            r.append(f"print/text or edges changed ({_pct(m['edge_difference'])} of edges differ)")
        # results stored before these two metrics existed lack them: not measured, no reason
        elif m.get("mismatch_fraction", 0.0) > th.max_mismatch_fraction and not r:
            r.append(f"the product looks different on {_pct(m['mismatch_fraction'])} of its area")
        if m.get("detail_loss", 0.0) > th.max_detail_loss:
            r.append(f"print/texture blurred or smoothed on {_pct(m['detail_loss'])} of the product")
        return r


# --------------------------------------------------------------------------- factories
def build_checker(grounding_model: str | None = None, sam_model: str | None = None,
                  thresholds: ConsistencyThresholds | None = None, local_files_only: bool = True, **kwargs) -> ConsistencyChecker:
    """Published tier when model paths are given (hub id or local folder), offline default otherwise."""
    locator = GroundingDinoLocator(grounding_model, local_files_only=local_files_only) if grounding_model else None
    box_segmenter = SamBoxSegmenter(sam_model, local_files_only=local_files_only) if sam_model else None
    return ConsistencyChecker(locator=locator, box_segmenter=box_segmenter, thresholds=thresholds, **kwargs)


def checker_from_env(environ=None, thresholds: ConsistencyThresholds | None = None) -> ConsistencyChecker:
    """$STAGECRAFT_GROUNDING_MODEL / $STAGECRAFT_SAM_MODEL (unset = offline default).
    $STAGECRAFT_U2NET_ONNX is read by core.ml.segmentation."""
    env = os.environ if environ is None else environ
    return build_checker(env.get(GROUNDING_ENV_VAR) or None, env.get(SAM_ENV_VAR) or None, thresholds)


_DEFAULT_CHECKER: ConsistencyChecker | None = None


def check_consistency(original: np.ndarray, generated: np.ndarray, category: str | None = None,
                      original_mask: np.ndarray | None = None, checker: ConsistencyChecker | None = None) -> ConsistencyResult:
    """One-call API with the offline default checker (built once per process)."""
    global _DEFAULT_CHECKER
    if checker is None:
        if _DEFAULT_CHECKER is None:
            _DEFAULT_CHECKER = ConsistencyChecker()
        checker = _DEFAULT_CHECKER
    return checker.check(original, generated, category=category, original_mask=original_mask)
