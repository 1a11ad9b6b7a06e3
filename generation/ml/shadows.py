"""Compositing helpers for pasted products: contact shadow, colour match, soft-edge composite.

All functions take and return plain numpy arrays (uint8 RGB images, float32 alpha in [0, 1]).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["contact_shadow", "apply_shadow", "match_colour", "composite", "feather_alpha"]


def contact_shadow(
    alpha: np.ndarray,
    *,
    opacity: float = 0.55,
    spread: float = 0.06,
    squash: float = 0.12,
) -> np.ndarray:
    """Shadow strength map (H x W float32 in [0, 1]) for a product layer ``alpha`` (scene-sized).

    Two parts, both anchored on the product's base line (its lowest opaque row):
    a tight, dark contact ellipse under the footprint (ambient occlusion) and a soft, wider
    "squashed silhouette" (the product's alpha flattened onto the ground plane) for a diffuse
    cast shadow. Sizes scale with the product's width, so the result is resolution independent.
    """
    a = np.asarray(alpha, np.float32)
    h, w = a.shape
    mask = a >= 0.5
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros_like(a)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    pw, ph = x1 - x0, y1 - y0
    base = y1 - 1
    # footprint: columns of the bottom 6 % of the product
    foot_rows = mask[max(y0, base - max(2, int(0.06 * ph))) : base + 1]
    cols = np.flatnonzero(foot_rows.any(axis=0))
    fx0, fx1 = (cols.min(), cols.max() + 1) if cols.size else (x0, x1)
    cx = (fx0 + fx1) / 2.0
    shadow = np.zeros((h, w), np.float32)
    # 1) contact ellipse
    rx = max(2.0, 0.55 * (fx1 - fx0) + 0.05 * pw)
    ry = max(1.5, squash * 0.5 * rx)
    cv2.ellipse(shadow, (int(round(cx)), int(round(base))), (int(round(rx)), int(round(ry))), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    k = max(3, int(round(spread * pw)) | 1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), sigmaX=k / 2.0)
    # 2) squashed silhouette: flatten the alpha to `squash` of its height, base at the base line
    sq_h = max(2, int(round(ph * squash)))
    flat = cv2.resize(a[y0:y1, x0:x1], (pw, sq_h), interpolation=cv2.INTER_AREA)
    cast = np.zeros((h, w), np.float32)
    top = base - sq_h // 2
    ty0, ty1 = max(0, top), min(h, top + sq_h)
    if ty1 > ty0:
        cast[ty0:ty1, x0:x1] = flat[ty0 - top : ty1 - top]
    cast = cv2.GaussianBlur(cast, (0, 0), sigmaX=max(2.0, spread * pw * 1.5))
    strength = np.clip(0.75 * shadow / max(float(shadow.max()), 1e-6) + 0.45 * cast / max(float(cast.max()), 1e-6), 0, 1)
    return (opacity * strength).astype(np.float32)


def apply_shadow(rgb: np.ndarray, shadow: np.ndarray, tint=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Darken ``rgb`` multiplicatively by ``shadow`` (toward ``tint``)."""
    s = np.clip(shadow, 0, 1)[..., None]
    out = rgb.astype(np.float32) * (1 - s) + np.asarray(tint, np.float32) * s
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def match_colour(
    product_rgb: np.ndarray,
    product_alpha: np.ndarray,
    scene_rgb: np.ndarray,
    region: np.ndarray,
    *,
    wb_strength: float = 0.5,
    brightness_strength: float = 0.4,
    brightness_range: tuple[float, float] = (0.6, 1.1),
) -> tuple[np.ndarray, dict]:
    """Nudge the product's white balance and brightness toward the scene around it.

    ``region``: bool mask of scene pixels around the placement (the local light). The scene's
    colour cast (its mean colour over its mean grey, gray-world) is applied to the product with
    ``wb_strength``; brightness is scaled by ``(scene luma / 128) ** brightness_strength``,
    clamped to ``brightness_range`` (a product shot on a white sweep is brighter than most
    scenes; we never brighten much). Returns the adjusted product and the gains used (for the
    candidate's metadata).
    """
    region = np.asarray(region, bool)
    px = scene_rgb[region].astype(np.float32) if region.any() else scene_rgb.reshape(-1, 3).astype(np.float32)
    mean = px.mean(axis=0) + 1e-3
    cast = mean / mean.mean()
    wb = np.clip(cast ** wb_strength, 0.8, 1.2)
    lum = float(_luma(mean[None])[0])
    bright = float(np.clip((lum / 128.0) ** brightness_strength, *brightness_range))
    gains = wb * bright
    out = np.clip(product_rgb.astype(np.float32) * gains + 0.5, 0, 255).astype(np.uint8)
    return out, {"wb_gains": [round(float(g), 4) for g in wb], "brightness": round(bright, 4), "scene_luma": round(lum, 2)}


def feather_alpha(alpha: np.ndarray, radius: float = 0.7) -> np.ndarray:
    """Slightly soften an alpha edge (Gaussian, sigma ``radius`` px) without growing the core."""
    a = np.asarray(alpha, np.float32)
    if radius <= 0:
        return a
    soft = cv2.GaussianBlur(a, (0, 0), sigmaX=radius)
    return np.clip(soft, 0.0, 1.0)


def composite(background: np.ndarray, fg_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha over: ``fg·a + bg·(1 − a)`` (uint8 in, uint8 out)."""
    a = np.clip(np.asarray(alpha, np.float32), 0, 1)[..., None]
    out = fg_rgb.astype(np.float32) * a + background.astype(np.float32) * (1 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
