"""Constructed (not human) preference pairs from real photos, for tests and benchmarks.

A product photographed on white is cut out with a white-background threshold, then composited
into an empty stage photo. The *good* image puts the product at a plausible scale on the lower
part of the stage with a soft contact shadow. The *bad* image has one clear defect:

* ``mismatched_scene``: pasted on a cluttered in-store photo instead of a stage,
* ``halo``: pasted with a white ring (the cut-out mask dilated),
* ``wrong_scale``: far too small, or so large it is cut off by the frame,
* ``floating``: no shadow, high up in the frame,
* ``colour_cast``: a strong colour cast over the whole image.

These are constructed labels with known answers: they check that the training code learns, not
how well the model agrees with annotators.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

DEFECTS = ("mismatched_scene", "halo", "wrong_scale", "floating", "colour_cast")


def white_cutout(rgb: np.ndarray, white: int = 232, feather: float = 1.0, convex: bool = False) -> np.ndarray:
    """Alpha (float32 0..1) of the object on a white background.

    Threshold, keep the largest component, fill holes. ``convex=True`` (boxes, cartons, bottles)
    takes the convex hull of all sizeable components instead, so white parts of a package are kept.
    """
    import cv2
    from scipy import ndimage

    rgb = np.asarray(rgb)
    fg = rgb.min(axis=2) < white
    fg = ndimage.binary_opening(fg, iterations=1)
    lab, n = ndimage.label(fg)
    if convex and n:
        sizes = ndimage.sum(fg, lab, range(1, n + 1))
        keep = np.isin(lab, 1 + np.nonzero(sizes >= 0.002 * fg.size)[0])
        pts = np.argwhere(keep)[:, ::-1].astype(np.int32)
        fg = np.zeros(fg.shape, np.uint8)
        if len(pts) >= 3:
            cv2.fillConvexPoly(fg, cv2.convexHull(pts), 1)
        fg = fg.astype(bool)
    elif n > 1:
        sizes = ndimage.sum(fg, lab, range(1, n + 1))
        fg = lab == (1 + int(np.argmax(sizes)))
    fg = ndimage.binary_fill_holes(fg)
    alpha = Image.fromarray((fg * 255).astype(np.uint8))
    if feather:
        alpha = alpha.filter(ImageFilter.GaussianBlur(feather))
    return np.asarray(alpha, dtype=np.float32) / 255.0


def fit_scene(scene: np.ndarray, size: int) -> np.ndarray:
    """Scene resized (shorter side) and centre-cropped to size x size, float32."""
    scene = np.asarray(scene)
    if scene.shape[0] == size and scene.shape[1] == size:
        return scene.astype(np.float32)
    img = Image.fromarray(scene)
    s = size / min(img.size)
    img = img.resize((max(size, round(img.width * s)), max(size, round(img.height * s))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)


def composite(
    product: np.ndarray,
    alpha: np.ndarray,
    scene: np.ndarray,
    *,
    size: int = 256,
    height_frac: float = 0.45,
    center_x: float = 0.5,
    base_y: float = 0.85,
    shadow: bool = True,
    halo_px: int = 0,
) -> np.ndarray:
    """Paste ``product`` (with ``alpha``) onto ``scene`` resized to size x size; returns uint8 RGB."""
    from scipy import ndimage

    bg = fit_scene(scene, size)
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        return bg.astype(np.uint8)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = halo_px * 3
    y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
    y1, x1 = min(alpha.shape[0], y1 + pad), min(alpha.shape[1], x1 + pad)
    a = alpha[y0:y1, x0:x1]
    if halo_px:
        a = np.maximum(a, ndimage.binary_dilation(a > 0.5, iterations=halo_px).astype(np.float32))
    crop = np.asarray(product)[y0:y1, x0:x1]
    h = max(4, int(round(height_frac * size)))
    w = max(4, int(round(crop.shape[1] * h / crop.shape[0])))
    crop = np.asarray(Image.fromarray(crop).resize((w, h), Image.BICUBIC), dtype=np.float32)
    a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), dtype=np.float32) / 255
    cx, by = int(center_x * size), int(base_y * size)
    top, left = by - h, cx - w // 2
    out = bg.copy()
    if shadow:
        sh = np.zeros((size, size), np.float32)
        sw, shh = int(w * 0.55), max(2, int(h * 0.06))
        yy, xx = np.ogrid[:size, :size]
        sh[((xx - cx) / max(sw, 1)) ** 2 + ((yy - by) / shh) ** 2 <= 1] = 1.0
        sh = np.asarray(Image.fromarray((sh * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(2, shh))), np.float32) / 255
        out *= (1 - 0.55 * sh)[..., None]
    # paste with clipping at the frame
    ty0, tx0 = max(0, top), max(0, left)
    ty1, tx1 = min(size, top + h), min(size, left + w)
    if ty1 > ty0 and tx1 > tx0:
        sa = a[ty0 - top : ty1 - top, tx0 - left : tx1 - left, None]
        sc = crop[ty0 - top : ty1 - top, tx0 - left : tx1 - left]
        out[ty0:ty1, tx0:tx1] = sa * sc + (1 - sa) * out[ty0:ty1, tx0:tx1]
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class ConstructedPair:
    good: np.ndarray
    bad: np.ndarray
    defect: str


def make_pair(
    product: np.ndarray,
    alpha: np.ndarray,
    stage: np.ndarray,
    clutter: np.ndarray,
    defect: str,
    rng: np.random.Generator,
    size: int = 256,
) -> ConstructedPair:
    """A good composite and one with ``defect`` (same product, same placement jitter)."""
    hf = float(rng.uniform(0.38, 0.5))
    cx = float(rng.uniform(0.4, 0.6))
    by = float(rng.uniform(0.8, 0.9))
    good = composite(product, alpha, stage, size=size, height_frac=hf, center_x=cx, base_y=by)
    if defect == "mismatched_scene":
        bad = composite(product, alpha, clutter, size=size, height_frac=hf, center_x=cx, base_y=by)
    elif defect == "halo":
        bad = composite(product, alpha, stage, size=size, height_frac=hf, center_x=cx, base_y=by,
                        halo_px=max(4, int(0.05 * max(alpha.shape))))
    elif defect == "wrong_scale":
        if rng.random() < 0.5:
            bad = composite(product, alpha, stage, size=size, height_frac=0.1, center_x=cx, base_y=by)
        else:
            bad = composite(product, alpha, stage, size=size, height_frac=1.3, center_x=cx, base_y=1.1)
    elif defect == "floating":
        bad = composite(product, alpha, stage, size=size, height_frac=hf, center_x=cx, base_y=hf + 0.05, shadow=False)
    elif defect == "colour_cast":
        cast = np.array([[1.35, 0.95, 0.55], [0.6, 1.0, 1.4], [0.7, 1.35, 0.7]])[rng.integers(3)]
        bad = np.clip(good.astype(np.float32) * cast, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown defect {defect!r}; use one of {DEFECTS}")
    return ConstructedPair(good, bad, defect)
