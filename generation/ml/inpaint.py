"""Classical inpainters and the tiny `Inpainter` protocol every inpainter implements.

The protocol (also implemented by the learned WBL inpainter in `wbl_inpainter.py`)::

    class Inpainter(Protocol):
        name: str
        def inpaint(self, rgb, hole_mask, protect_mask=None) -> rgb: ...

* ``rgb``: H x W x 3 uint8 RGB; never modified in place.
* ``hole_mask``: H x W bool (or anything where non-zero means "hole"): pixels to synthesise.
* ``protect_mask``: optional H x W bool: pixels that are neither filled nor used as a source
  (e.g. the new product when filling the gap around it, so product colours never bleed into
  the background). Protected pixels keep their values in the result.
* returns a new H x W x 3 uint8 image equal to ``rgb`` outside ``hole_mask``.

Implementations here (no weights, no Django):

* `OpenCVInpainter` — ``cv2.inpaint`` Telea or Navier-Stokes; ~0.04 s; right for thin bands
  (gaps of a few pixels) and smooth backgrounds; radial streaks on large holes.
* `PatchMatchInpainter` — pypatchmatch (``patch_size=3``, seeded, so results are deterministic),
  run on a crop around the hole so the cost follows the hole, not the image; a crop over
  ``max_work_pixels`` is filled on a downscaled copy (the fill is then slightly softer).
* `AutoInpainter` — OpenCV for holes no thicker than ``thin_px``, PatchMatch otherwise.

`named_inpainter(name, seed=..., wbl_model=...)` builds one by the name users pick
(`INPAINTER_NAMES`); ``"wbl"`` loads the learned inpainter of `wbl_inpainter.py` (torch, imported
only then) from a trained artifact folder or its parent (newest version).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

__all__ = [
    "Inpainter",
    "OpenCVInpainter",
    "PatchMatchInpainter",
    "AutoInpainter",
    "default_inpainter",
    "hole_thickness",
    "INPAINTER_NAMES",
    "named_inpainter",
]

INPAINTER_NAMES = ("auto", "telea", "ns", "patchmatch", "wbl")


@runtime_checkable
class Inpainter(Protocol):
    name: str

    def inpaint(self, rgb: np.ndarray, hole_mask: np.ndarray, protect_mask: np.ndarray | None = None) -> np.ndarray:
        ...


def _as_bool(mask: np.ndarray | None, shape: tuple[int, int], what: str) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise ValueError(f"{what} has shape {mask.shape}, expected {shape}")
    return mask > (0.5 if mask.dtype.kind == "f" else 0)


def _check(rgb: np.ndarray, hole_mask, protect_mask):
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    hole = _as_bool(hole_mask, rgb.shape[:2], "hole_mask")
    protect = _as_bool(protect_mask, rgb.shape[:2], "protect_mask")
    if protect is not None:
        hole = hole & ~protect
    return rgb, hole, protect


def hole_thickness(hole_mask: np.ndarray) -> float:
    """Largest distance (px) from a hole pixel to the nearest non-hole pixel (half the thickness)."""
    hole = np.asarray(hole_mask).astype(np.uint8)
    if not hole.any():
        return 0.0
    padded = cv2.copyMakeBorder(hole, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, 3).max())


class OpenCVInpainter:
    """``cv2.inpaint`` (Telea by default, or ``method="ns"``). Protected pixels are not sources."""

    def __init__(self, method: str = "telea", radius: int = 5):
        if method not in ("telea", "ns"):
            raise ValueError("method must be 'telea' or 'ns'")
        self.method = method
        self.radius = int(radius)
        self.name = f"opencv-{method}"

    def inpaint(self, rgb, hole_mask, protect_mask=None):
        rgb, hole, protect = _check(rgb, hole_mask, protect_mask)
        if not hole.any():
            return rgb.copy()
        # cv2.inpaint has no "do not use as source" mask: fill hole ∪ protect, then restore protect.
        fill = hole | protect if protect is not None else hole
        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        out = cv2.inpaint(rgb, fill.astype(np.uint8) * 255, self.radius, flag)
        result = rgb.copy()
        result[hole] = out[hole]
        return result


_PM_LOCK = threading.Lock()  # the seed is global state in libpatchmatch


class PatchMatchInpainter:
    """PatchMatch (pypatchmatch) on a crop around the hole; deterministic for a given ``seed``.

    ``margin`` is the context kept around the hole's bounding box, as a fraction of the box's
    larger side (at least ``min_margin`` px); texture comes only from this crop.
    """

    def __init__(
        self, patch_size: int = 3, seed: int = 0, margin: float = 0.75, min_margin: int = 24, max_work_pixels: int | None = 65_000
    ):
        self.max_work_pixels = max_work_pixels
        self.patch_size = int(patch_size)
        self.seed = int(seed)
        self.margin = float(margin)
        self.min_margin = int(min_margin)
        self.name = f"patchmatch-p{self.patch_size}"

    def inpaint(self, rgb, hole_mask, protect_mask=None):
        from patchmatch import patch_match  # small ctypes library; imported on first use

        rgb, hole, protect = _check(rgb, hole_mask, protect_mask)
        if not hole.any():
            return rgb.copy()
        ys, xs = np.nonzero(hole)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        m = max(self.min_margin, int(self.margin * max(y1 - y0, x1 - x0)))
        h, w = hole.shape
        cy0, cy1, cx0, cx1 = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
        crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])
        crop_hole = hole[cy0:cy1, cx0:cx1]
        crop_protect = protect[cy0:cy1, cx0:cx1] if protect is not None else None
        usable = ~crop_hole if crop_protect is None else ~crop_hole & ~crop_protect
        if usable.sum() < 16:
            # no usable source pixels inside the crop: fall back to the whole image
            cy0, cy1, cx0, cx1 = 0, h, 0, w
            crop, crop_hole, crop_protect = rgb, hole, protect
        ch, cw = crop_hole.shape
        f = 1.0
        if self.max_work_pixels and ch * cw > self.max_work_pixels:
            f = (self.max_work_pixels / (ch * cw)) ** 0.5  # cost follows pixels: work on a smaller copy
        work, work_hole, work_protect = crop, crop_hole, crop_protect
        if f < 1.0:
            size = (max(8, round(cw * f)), max(8, round(ch * f)))
            work = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            # grow the hole by the resampling footprint so no hole colour survives in the small copy
            work_hole = cv2.resize(crop_hole.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
            if crop_protect is not None:
                work_protect = (cv2.resize(crop_protect.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0) & ~work_hole
        with _PM_LOCK:
            patch_match.set_random_seed(self.seed)
            if work_protect is not None and work_protect.any():
                filled = patch_match.inpaint(
                    work, work_hole.astype(np.uint8), global_mask=work_protect.astype(np.uint8),
                    patch_size=self.patch_size,
                )
            else:
                filled = patch_match.inpaint(work, work_hole.astype(np.uint8), patch_size=self.patch_size)
        filled = np.asarray(filled)
        if f < 1.0:
            filled = cv2.resize(filled, (cw, ch), interpolation=cv2.INTER_CUBIC)
        result = rgb.copy()
        region = result[cy0:cy1, cx0:cx1]
        region[crop_hole] = filled[crop_hole]
        return result


class AutoInpainter:
    """Telea for thin holes (half-thickness ≤ ``thin_px``), PatchMatch for larger ones.

    After `inpaint`, ``last_choice`` holds the name of the inpainter that ran.
    """

    def __init__(self, thin_px: float = 5.0, seed: int = 0, patch_size: int = 3):
        self.thin_px = float(thin_px)
        self.thin = OpenCVInpainter("telea", radius=5)
        self.large = PatchMatchInpainter(patch_size=patch_size, seed=seed)
        self.name = "auto"
        self.last_choice = ""

    def choose(self, hole_mask: np.ndarray) -> Inpainter:
        return self.thin if hole_thickness(hole_mask) <= self.thin_px else self.large

    def inpaint(self, rgb, hole_mask, protect_mask=None):
        rgb, hole, protect = _check(rgb, hole_mask, protect_mask)
        chosen = self.choose(hole)
        self.last_choice = chosen.name
        return chosen.inpaint(rgb, hole, protect)


def default_inpainter(seed: int = 0) -> AutoInpainter:
    return AutoInpainter(seed=seed)


_WBL_CACHE: dict[Path, Inpainter] = {}  # artifact folder -> loaded model (version folders never change)
_WBL_LOCK = threading.Lock()


def named_inpainter(name: str, *, seed: int = 0, wbl_model: str | os.PathLike | None = None) -> Inpainter:
    """The inpainter called ``name`` (one of `INPAINTER_NAMES`).

    ``wbl_model`` (only for ``"wbl"``): a trained WBL artifact folder, or a folder of versions (the
    newest is used). Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` when no
    trained WBL model is there; a loaded model is kept per process.
    """
    if name == "auto":
        return AutoInpainter(seed=seed)
    if name in ("telea", "ns"):
        return OpenCVInpainter(name, radius=5)
    if name == "patchmatch":
        return PatchMatchInpainter(patch_size=3, seed=seed)
    if name != "wbl":
        raise ValueError(f"unknown inpainter {name!r}; choose one of {', '.join(INPAINTER_NAMES)}")
    if wbl_model is None:
        raise FileNotFoundError("no trained WBL inpainter is configured; train one first (manage.py train_inpainter)")
    from generation.ml.wbl_inpainter import WblInpainter, find_artifact

    art = find_artifact(wbl_model).resolve()
    with _WBL_LOCK:
        if art not in _WBL_CACHE:
            # staging runs in CPU workers (often forked): a few small convs do not need a GPU
            _WBL_CACHE[art] = WblInpainter.load(art, device="cpu")
        return _WBL_CACHE[art]
