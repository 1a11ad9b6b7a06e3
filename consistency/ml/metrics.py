"""Shape and appearance metrics comparing the product in the original and the generated image.

All functions take plain numpy arrays in one common frame (the original already warped onto the
generated image by `align`). Masks are HxW bool; images HxWx3 uint8 RGB.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def object_expansion(m_gen: np.ndarray, m_orig: np.ndarray) -> float:
    """Eshratifar et al. 2024: E = area(m_gen ∪ m_orig) − area(m_orig), relative to area(m_orig).

    0 when the generated product stays inside the original silhouette; 0.2 when it spills over
    by a fifth of the product's area (extended packaging, added parts, hands merged in...).
    """
    a = int(m_orig.sum())
    if a == 0:
        return 0.0 if not m_gen.any() else float("inf")
    return float((np.logical_or(m_gen, m_orig).sum() - a) / a)


def object_shrinkage(m_gen: np.ndarray, m_orig: np.ndarray) -> float:
    """The mirror of expansion: part of the original silhouette no longer covered, relative to it."""
    a = int(m_orig.sum())
    if a == 0:
        return 0.0
    return float(np.logical_and(m_orig, ~m_gen).sum() / a)


def _boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0


def boundary_fscore(m_gen: np.ndarray, m_orig: np.ndarray, tolerance_px: float = 2.0) -> float:
    """Boundary F-measure (Perazzi et al., DAVIS 2016): contours matched within `tolerance_px`."""
    bg, bo = _boundary(m_gen), _boundary(m_orig)
    if not bg.any() and not bo.any():
        return 1.0
    if not bg.any() or not bo.any():
        return 0.0
    dist_to_o = cv2.distanceTransform((~bo).astype(np.uint8), cv2.DIST_L2, 3)
    dist_to_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float((dist_to_o[bg] <= tolerance_px).mean())
    recall = float((dist_to_g[bo] <= tolerance_px).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _crop_to(region: np.ndarray, pad: int, *images: np.ndarray):
    """The images and the region cropped to the region's bounding box plus `pad` px (speed only:
    the metrics below look at the region and a few pixels around it)."""
    x, y, w, h = cv2.boundingRect(region.astype(np.uint8))
    y0, x0 = max(0, y - pad), max(0, x - pad)
    y1, x1 = min(region.shape[0], y + h + pad), min(region.shape[1], x + w + pad)
    return (*(im[y0:y1, x0:x1] for im in images), region[y0:y1, x0:x1])


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def masked_ssim(img_gen: np.ndarray, img_orig: np.ndarray, region: np.ndarray, blur_sigma: float = 1.0) -> float:
    """Mean SSIM (grey, 7x7 window) over the region; 1.0 when the region is empty.

    Both images are blurred with a small Gaussian first so that sub-pixel misalignment of fine
    texture (speckled fruit skin, halftone print) does not read as a change.
    """
    if region.sum() < 16:
        return 1.0
    img_gen, img_orig, region = _crop_to(region, 8, img_gen, img_orig)
    g, o = _gray(img_gen), _gray(img_orig)
    if blur_sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), blur_sigma)
        o = cv2.GaussianBlur(o, (0, 0), blur_sigma)
    _, ssim_map = structural_similarity(g, o, data_range=255, full=True, win_size=7)
    return float(ssim_map[region].mean())


def colour_metrics(img_gen: np.ndarray, img_orig: np.ndarray, region: np.ndarray, blur_sigma: float = 1.5,
                   changed_delta_e: float = 10.0) -> dict[str, float]:
    """CIEDE2000 inside the product region.

    - delta_e_mean_colour: ΔE2000 between the mean Lab colours (a global colour cast / recolour);
    - delta_e_median: median per-pixel ΔE2000 after a light blur (robust to sub-pixel misalignment);
    - colour_changed_fraction: share of region pixels whose blurred ΔE2000 exceeds `changed_delta_e`
      (a local recolour, an erased label, a pasted patch).
    """
    if region.sum() < 16:
        return {"delta_e_mean_colour": 0.0, "delta_e_median": 0.0, "colour_changed_fraction": 0.0}
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    g = img_gen[y0:y1, x0:x1].astype(np.float32) / 255.0
    o = img_orig[y0:y1, x0:x1].astype(np.float32) / 255.0
    if blur_sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), blur_sigma)
        o = cv2.GaussianBlur(o, (0, 0), blur_sigma)
    r = region[y0:y1, x0:x1]
    lab_g, lab_o = rgb2lab(g), rgb2lab(o)
    de = deltaE_ciede2000(lab_g[r], lab_o[r])
    mean_de = float(deltaE_ciede2000(lab_g[r].mean(axis=0), lab_o[r].mean(axis=0)))
    return {
        "delta_e_mean_colour": mean_de,
        "delta_e_median": float(np.median(de)),
        "colour_changed_fraction": float((de > changed_delta_e).mean()),
    }


def edge_difference(img_gen: np.ndarray, img_orig: np.ndarray, region: np.ndarray, tolerance_px: float = 2.0) -> float:
    """1 − F-score of Canny edges inside the region, edges matched within `tolerance_px`.

    0 when every edge (text, print, contours) is where it was; close to 1 when the text was
    blurred away or new structure was painted in. 0 when neither image has edges there.
    """
    if region.sum() < 16:
        return 0.0
    img_gen, img_orig, region = _crop_to(region, 4, img_gen, img_orig)
    eg = cv2.Canny(_gray(img_gen), 60, 150) > 0
    eo = cv2.Canny(_gray(img_orig), 60, 150) > 0
    eg &= region
    eo &= region
    if eg.sum() < 8 and eo.sum() < 8:
        return 0.0
    if eg.sum() == 0 or eo.sum() == 0:
        return 1.0
    dist_to_o = cv2.distanceTransform((~eo).astype(np.uint8), cv2.DIST_L2, 3)
    dist_to_g = cv2.distanceTransform((~eg).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float((dist_to_o[eg] <= tolerance_px).mean())
    recall = float((dist_to_g[eo] <= tolerance_px).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return 1.0 - f


def detail_loss(img_gen: np.ndarray, img_orig: np.ndarray, region: np.ndarray, tile: int = 12,
                min_energy: float = 4.0, keep: float = 0.5) -> float:
    """Share of the region's detailed tiles (print, text, texture) whose fine detail was lost.

    Per `tile`-px tile fully inside the region: mean |Laplacian| of the grey image after a light
    blur (so that resampling a moved product does not read as a loss). A tile counts when the
    original has at least `min_energy` there and the generated image keeps less than `keep` of
    it: a blurred label, smoothed-over text. 0 when the product has no detail anywhere.
    """
    if region.sum() < 16:
        return 0.0
    img_gen, img_orig, r = _crop_to(region, 0, img_gen, img_orig)

    def energy(rgb):
        g = cv2.GaussianBlur(_gray(rgb).astype(np.float32), (0, 0), 1.0)
        return np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=3))

    eg, eo = energy(img_gen), energy(img_orig)
    th, tw = r.shape[0] // tile, r.shape[1] // tile
    if th == 0 or tw == 0:
        return 0.0

    def tiles(a):
        return a[:th * tile, :tw * tile].reshape(th, tile, tw, tile).mean(axis=(1, 3))

    inside = tiles(r.astype(np.float32)) >= 1.0
    to, tg = tiles(eo), tiles(eg)
    detailed = inside & (to >= min_energy)
    if not detailed.any():
        return 0.0
    return float((detailed & (tg < keep * to)).sum() / inside.sum())
