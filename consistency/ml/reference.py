"""Reference-guided comparison: used when the original product's pixels and mask are known (on
the platform they always are: the stored `SourceImage.mask`).

Segmenting the generated image from scratch and comparing two independent masks fails on hard
products (white on white, low contrast): every disagreement of the segmenter reads as an
alteration. An untouched product, however, matches its original pixel for pixel once aligned, so
the original itself is the best segmenter of the generated image:

  refine_alignment    – affine ECC of the original product onto the generated image, on crops
                        where the product is ~128 px, from the locator's first guess;
  appearance_mismatch – pixels inside the aligned silhouette that no longer look like the
                        original there (after a global gain/offset colour correction, with ±1 px
                        tolerance for resampling);
  segment_generated   – GrabCut on a crop: matching pixels are certain product, the rest of the
                        silhouette and a band around it uncertain, everything further background.
                        Only growth beyond the silhouette and lost parts are left to GrabCut.

Plain numpy/OpenCV; no Django.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from core.ml.segmentation import mask_bbox

from .align import warp_affine
from .locate import Box, expand_box


def _h(a: np.ndarray) -> np.ndarray:
    """2x3 affine → 3x3 homogeneous."""
    return np.vstack([a, [0.0, 0.0, 1.0]])


def _scale_shift(f: float, x0: float, y0: float) -> np.ndarray:
    """Frame → crop coordinates: subtract the crop origin, then scale by f."""
    return np.array([[f, 0.0, -f * x0], [0.0, f, -f * y0], [0.0, 0.0, 1.0]])


def affine_scale(a: np.ndarray) -> float:
    """Linear size factor of an affine map (sqrt of the area factor)."""
    return math.sqrt(abs(float(np.linalg.det(a[:2, :2]))))


def map_box(a: np.ndarray, box: Box, shape: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ a.T
    h, w = shape
    return (max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min())),
            min(w, int(math.ceil(pts[:, 0].max()))), min(h, int(math.ceil(pts[:, 1].max()))))


def refine_alignment(orig: np.ndarray, m_orig: np.ndarray, gen: np.ndarray, init: np.ndarray,
                     size: int = 128, iterations: int = 60, allow_rotation: bool = False) -> tuple[np.ndarray, float]:
    """Affine map (2x3, original frame → generated frame) that best puts the original product's
    pixels onto the generated image, and its ECC correlation (nan when ECC did not converge and
    `init` is returned). Work happens on crops where the product's longer side is `size` px."""
    box_o = mask_bbox(m_orig)
    if box_o is None:
        return init, float("nan")
    s0 = affine_scale(init)
    f = min(1.0, size / max(box_o[2] - box_o[0], box_o[3] - box_o[1], 1))
    f_g = f / max(s0, 1e-6)
    wo = expand_box(box_o, 0.1, m_orig.shape)
    wg = expand_box(map_box(init, box_o, gen.shape[:2]), 0.1, gen.shape[:2])
    if wg[2] - wg[0] < 8 or wg[3] - wg[1] < 8:
        return init, float("nan")
    t_o, t_g = _scale_shift(f, wo[0], wo[1]), _scale_shift(f_g, wg[0], wg[1])

    def crop(img, win, factor, interp):
        c = img[win[1]:win[3], win[0]:win[2]]
        return cv2.resize(c, (max(4, round(c.shape[1] * factor)), max(4, round(c.shape[0] * factor))), interpolation=interp)

    g_o = crop(cv2.cvtColor(orig, cv2.COLOR_RGB2GRAY), wo, f, cv2.INTER_AREA).astype(np.float32)
    # a thin ring outside the silhouette is compared too: for a product without texture (a
    # plain fruit, a white carton) its outline is the only thing that pins the scale down
    m_o = cv2.dilate(crop(m_orig.astype(np.uint8), wo, f, cv2.INTER_NEAREST), np.ones((5, 5), np.uint8))
    g_g = crop(cv2.cvtColor(gen, cv2.COLOR_RGB2GRAY), wg, f_g, cv2.INTER_AREA).astype(np.float32)
    # ECC maps template (generated crop) coordinates to input (original crop) coordinates, and its
    # mask marks valid input pixels: so only the original product's pixels are compared.
    w0 = (t_o @ np.linalg.inv(_h(init)) @ np.linalg.inv(t_g))[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4)
    try:
        cc, w = cv2.findTransformECC(g_g, g_o, w0, cv2.MOTION_AFFINE, criteria, m_o, 3)
    except cv2.error:
        return init, float("nan")
    a = np.linalg.inv(np.linalg.inv(t_o) @ _h(w.astype(np.float64)) @ t_g)[:2]
    # a fit that rotated, sheared or rescaled far from the locator's guess latched onto the scene
    lin = a[:, :2] / max(affine_scale(a), 1e-6)
    angle = math.degrees(math.atan2(lin[1, 0], lin[0, 0]))
    shear = abs(float(lin[0, 0] * lin[0, 1] + lin[1, 0] * lin[1, 1]))
    if not 0.8 < affine_scale(a) / s0 < 1.25 or shear > 0.15 or (abs(angle) > 3 and not allow_rotation):
        return init, float("nan")
    return a, float(cc)


def aligned_original(orig: np.ndarray, m_orig: np.ndarray, gen: np.ndarray, a: np.ndarray):
    """The original mapped by `a` into the generated frame: (silhouette, image, the silhouette's
    inner part whose pixels are tested, and the tested pixels that do not match)."""
    shape = gen.shape[:2]
    m_o = warp_affine(m_orig, a, shape, nearest=True)
    img_o = warp_affine(orig, a, shape, border_value=(255, 255, 255))
    inner = cv2.erode(m_o.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return m_o, img_o, inner, appearance_mismatch(gen, img_o, inner)


def appearance_mismatch(gen: np.ndarray, orig_aligned: np.ndarray, region: np.ndarray, threshold: float = 28.0,
                        blur_sigma: float = 1.0, max_offset: float = 25.0) -> np.ndarray:
    """Pixels of `region` whose colour differs from the aligned original by more than `threshold`
    (max over RGB channels, 0–255) at every offset within 1 px.

    A global per-channel gain/offset is fitted first, so a backend that harmonises the product's
    white balance or exposure to the scene is not flagged here (the ΔE metrics report colour
    changes); the ±1 px tolerance absorbs resampling of fine print.
    """
    out = np.zeros(region.shape, bool)
    box = mask_bbox(region)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(region.shape[1], x1 + 2), min(region.shape[0], y1 + 2)
    g = cv2.GaussianBlur(gen[y0:y1, x0:x1].astype(np.float32), (0, 0), blur_sigma)
    o = cv2.GaussianBlur(orig_aligned[y0:y1, x0:x1].astype(np.float32), (0, 0), blur_sigma)
    r = region[y0:y1, x0:x1]
    gv, ov = g[r], o[r]
    # bounded, so that a flat patch of scene cannot be "corrected" into a flat product
    gain = np.clip(gv.std(axis=0) / np.maximum(ov.std(axis=0), 1e-3), 0.8, 1.25)
    offset = np.clip(gv.mean(axis=0) - gain * ov.mean(axis=0), -max_offset, max_offset)
    o = o * gain + offset
    best = np.full(r.shape, np.inf, np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            d = cv2.absdiff(g, np.roll(o, (dy, dx), axis=(0, 1)))
            # the channel maximum spelt out: numpy's reduction over a length-3 axis is slow
            np.minimum(best, np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]), out=best)
    changed = (best > threshold) & r
    changed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    out[y0:y1, x0:x1] = changed
    return out


def segment_generated(gen: np.ndarray, orig_aligned: np.ndarray | None, silhouette: np.ndarray, matched: np.ndarray,
                      mismatch: np.ndarray, band: float = 0.25, work_size: int = 160, iterations: int = 3) -> np.ndarray:
    """The generated product's mask.

    Inside the aligned silhouette, the product is there unless a pixel was tested and differs
    (`mismatch`) *and* GrabCut calls it background (an erased part shows the scene; a recoloured
    or blurred part is still product, reported by the appearance metrics instead). Outside, GrabCut
    decides over a band of `band` box-sizes, with `matched` pixels as certain product. A grown
    region counts only if it is connected to the product, its colour is nearer the product than
    the scene beyond it (`_unlike_scene`) and, where the original's own surroundings are known,
    the product's own outline where it attaches has faded (`_outline_kept`); otherwise it is
    scene the colour model could not tell from the product (a white wall next to a white carton,
    a potato on a wooden board).
    """
    box = mask_bbox(silhouette)
    if box is None or not matched.any():
        return matched.copy()
    # the crop reaches beyond the band, so that GrabCut learns the scene's colours from its rim
    x0, y0, x1, y1 = expand_box(box, 1.5 * band, silhouette.shape)
    crop = gen[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    f = min(1.0, work_size / max(ch, cw))
    size = (max(8, round(cw * f)), max(8, round(ch * f)))

    def small(m):
        return cv2.resize(m[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    sil, sure = small(silhouette), small(cv2.erode(matched.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    k = max(1, round(band * f * max(box[2] - box[0], box[3] - box[1])))
    near = cv2.dilate(sil.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    gc = np.full(sil.shape, cv2.GC_BGD, np.uint8)
    gc[near] = cv2.GC_PR_BGD
    gc[0, :] = gc[-1, :] = cv2.GC_BGD
    gc[:, 0] = gc[:, -1] = cv2.GC_BGD
    gc[sil] = cv2.GC_PR_FGD
    gc[sure] = cv2.GC_FGD
    if not (gc == cv2.GC_FGD).any() or not (gc == cv2.GC_BGD).any():
        return silhouette.copy()
    small_rgb = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    try:
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(small_rgb, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return silhouette.copy()
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    # only what is connected to the certain product counts (not a look-alike elsewhere in the band)
    n, labels = cv2.connectedComponents(fg, connectivity=8)
    fg = np.isin(labels, np.unique(labels[sure & (labels > 0)])) & ~(labels == 0)
    out = np.zeros(silhouette.shape, bool)
    out[y0:y1, x0:x1] = cv2.resize(fg.astype(np.uint8), (cw, ch), interpolation=cv2.INTER_NEAREST) > 0
    # the 1 px ring where resampling puts the edge either way is not counted as growth
    ring = cv2.dilate(silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    grown = _outline_kept(gen, orig_aligned, silhouette, _unlike_scene(gen, silhouette, out & ~ring))
    lost = silhouette & ~out & (cv2.dilate(mismatch.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    return grown | (silhouette & ~lost)


def _unlike_scene(gen: np.ndarray, silhouette: np.ndarray, grown: np.ndarray, reach: float = 0.04) -> np.ndarray:
    """Drop grown components whose typical (median) colour is nearer the scene just beyond them
    than the product beside them.

    GrabCut's colour model grows the product into scene of a similar colour (a potato on a wooden
    board, a white tub against a pale wall), but such a region continues into the scene around it;
    a part the generator added ends where the scene begins. Compared over `reach` product sizes on
    each side, in CIELAB. Judged without the original's surroundings, so it works under a
    placement hint too."""
    if not grown.any():
        return grown
    box = mask_bbox(silhouette | grown)
    x0, y0, x1, y1 = expand_box(box, 0.1, silhouette.shape)
    sil, gr = silhouette[y0:y1, x0:x1], grown[y0:y1, x0:x1]
    lab = cv2.cvtColor(gen[y0:y1, x0:x1].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    sb = mask_bbox(silhouette)
    r = max(2, round(reach * max(sb[2] - sb[0], sb[3] - sb[1])))
    near = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(gr.astype(np.uint8), connectivity=8)
    out = gr.copy()
    for i in range(1, n):
        # each component in its own window, reach included
        cx, cy, cw, ch = stats[i, :4]
        wx0, wy0 = max(0, cx - r), max(0, cy - r)
        wx1, wy1 = min(gr.shape[1], cx + cw + r), min(gr.shape[0], cy + ch + r)
        comp = labels[wy0:wy1, wx0:wx1] == i
        around = cv2.dilate(comp.astype(np.uint8), near) > 0
        s_win, g_win, lab_win = sil[wy0:wy1, wx0:wx1], gr[wy0:wy1, wx0:wx1], lab[wy0:wy1, wx0:wx1]
        scene, product = around & ~s_win & ~g_win, around & s_win
        if not scene.any() or not product.any():
            continue  # enclosed by the product or cut by the frame: nothing to compare with
        # medians: the rim of a region can touch a little of some other scene or print
        colour = np.median(lab_win[comp], axis=0)
        if np.linalg.norm(colour - np.median(lab_win[scene], axis=0)) <= np.linalg.norm(colour - np.median(lab_win[product], axis=0)):
            out[wy0:wy1, wx0:wx1][comp] = False
    full = np.zeros_like(grown)
    full[y0:y1, x0:x1] = out
    return full


def _edge_strength(rgb: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    return cv2.dilate(mag, np.ones((5, 5), np.uint8))  # ±2 px: the outline need not be exactly in place


def _outline_kept(gen: np.ndarray, orig_aligned: np.ndarray | None, silhouette: np.ndarray, grown: np.ndarray,
                  min_edge: float = 20.0, kept: float = 0.97) -> np.ndarray:
    """Drop grown components beside which the original's outline is still visible.

    A part the generator added continues the product, so the product's outline where it attaches
    fades; scene that GrabCut mistook for product leaves the outline as it was. With the original
    (`orig_aligned`, its own surroundings), judged where it has a clear outline (Sobel magnitude
    ≥ `min_edge`): "kept" when the generated image keeps at least `kept` of that strength on three
    quarters of the attachment. Without it (the caller built the original from the generated
    image, so its surroundings are the generated pixels and prove nothing) every grown component
    is kept (the colour test has already run): a seam where a generator extended the product
    looks like an outline too, and a missed alteration costs more than a false alarm a QA
    reviewer clears."""
    if orig_aligned is None or not grown.any():
        return grown
    box = mask_bbox(silhouette | grown)
    x0, y0, x1, y1 = expand_box(box, 0.05, silhouette.shape)
    sil, gr = silhouette[y0:y1, x0:x1], grown[y0:y1, x0:x1]
    outline = sil & ~(cv2.erode(sil.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    e_gen, e_orig = _edge_strength(gen[y0:y1, x0:x1]), _edge_strength(orig_aligned[y0:y1, x0:x1])
    n, labels = cv2.connectedComponents(gr.astype(np.uint8), connectivity=8)
    out = gr.copy()
    for i in range(1, n):
        comp = labels == i
        touch = outline & (cv2.dilate(comp.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        strong = touch & (e_orig >= min_edge)
        # a quarter of the attachment faded is enough: an added part need not cover all of it
        if strong.sum() >= max(3, 0.5 * touch.sum()) and np.percentile(e_gen[strong] / e_orig[strong], 25) >= kept:
            out[comp] = False
    full = np.zeros_like(grown)
    full[y0:y1, x0:x1] = out
    return full
