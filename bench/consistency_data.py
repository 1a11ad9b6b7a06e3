"""Building blocks for the consistency alteration benchmark (and the tests' fixtures).

Products photographed on white are cut out (core.ml.segmentation), composited into real stage
photos, and then altered in controlled ways with a known magnitude. Plain numpy / OpenCV.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab


ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    shared = Path("/work/shared/data")
    return shared if (shared / "manifest.jsonl").is_file() else ROOT / "sample_data"


def manifest(root: Path | None = None) -> list[dict]:
    root = root or data_root()
    with open(root / "manifest.jsonl") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Cutout:
    name: str
    category: str
    rgb: np.ndarray  # cropped to the product bbox
    alpha: np.ndarray  # float32 [0, 1], same size


def make_cutout(name: str, category: str, rgb: np.ndarray, alpha: np.ndarray) -> Cutout | None:
    m = alpha >= 0.5
    ys, xs = np.nonzero(m)
    if ys.size < 100:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(name, category, rgb[y0:y1, x0:x1].copy(), alpha[y0:y1, x0:x1].astype(np.float32).copy())


def composite(stage: np.ndarray, cut: Cutout, center: tuple[float, float], height_frac: float,
              sx: float = 1.0, sy: float = 1.0, rgb: np.ndarray | None = None, alpha: np.ndarray | None = None):
    """Paste the cut-out into the stage: centre (relative x, y), product height as a fraction of
    the stage height, extra anisotropic scale sx/sy. Returns (image uint8, hard mask bool)."""
    rgb = cut.rgb if rgb is None else rgb
    alpha = cut.alpha if alpha is None else alpha
    H, W = stage.shape[:2]
    ph = height_frac * H
    s = ph / rgb.shape[0]
    nw, nh = max(2, round(rgb.shape[1] * s * sx)), max(2, round(rgb.shape[0] * s * sy))
    prod = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC).astype(np.float32)
    a = np.clip(cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR), 0, 1)
    cx, cy = center[0] * W, center[1] * H
    x0, y0 = int(round(cx - nw / 2)), int(round(cy - nh / 2))
    out = stage.astype(np.float32).copy()
    mask = np.zeros((H, W), bool)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + nw), min(H, y0 + nh)
    if xb <= xa or yb <= ya:
        return stage.copy(), mask
    p = prod[ya - y0:yb - y0, xa - x0:xb - x0]
    aa = a[ya - y0:yb - y0, xa - x0:xb - x0, None]
    out[ya:yb, xa:xb] = p * aa + out[ya:yb, xa:xb] * (1 - aa)
    mask[ya:yb, xa:xb] = aa[:, :, 0] >= 0.5
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask


def placement_for(cut: Cutout, stage_shape, center, height_frac, new_shape, offset):
    """(centre, height_frac) that puts a modified canvas (new_shape, with the original cut-out's
    top-left at `offset` inside it) so that the original body stays exactly where it was."""
    H, W = stage_shape[:2]
    s = height_frac * H / cut.rgb.shape[0]
    x0 = center[0] * W - cut.rgb.shape[1] * s / 2 - offset[0] * s
    y0 = center[1] * H - cut.rgb.shape[0] * s / 2 - offset[1] * s
    nh, nw = new_shape[:2]
    return ((x0 + nw * s / 2) / W, (y0 + nh * s / 2) / H), height_frac * nh / cut.rgb.shape[0]


def jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def rerender(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What an honest generator does to an untouched product: re-encoding, a slight global
    exposure change, sensor-like noise."""
    gain = 1.0 + rng.uniform(-0.02, 0.02)
    out = rgb.astype(np.float32) * gain + rng.normal(0, 1.5, rgb.shape)
    return jpeg(np.clip(out, 0, 255).astype(np.uint8), quality=int(rng.integers(85, 96)))


# ---------------------------------------------------------------- alterations of the cut-out itself
def recolour(rgb: np.ndarray, alpha: np.ndarray, delta_e: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Shift a*/b* (and a little L) so that the mean product colour moves by about `delta_e`
    (CIEDE2000); returns the recoloured cut-out and the measured ΔE2000 of the mean colour."""
    lab = rgb2lab(rgb.astype(np.float32) / 255.0)
    m = alpha >= 0.5
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([0.0, np.cos(angle), np.sin(angle)])
    mean = lab[m].mean(axis=0)
    lo, hi = 0.0, 60.0
    for _ in range(25):  # bisection on the shift length to hit the requested ΔE2000
        mid = (lo + hi) / 2
        if deltaE_ciede2000(mean, mean + mid * direction) < delta_e:
            lo = mid
        else:
            hi = mid
    shifted = lab + hi * direction
    out = (np.clip(lab2rgb(shifted), 0, 1) * 255 + 0.5).astype(np.uint8)
    measured = float(deltaE_ciede2000(rgb2lab(rgb[m].astype(np.float32)[None] / 255.0)[0].mean(0),
                                      rgb2lab(out[m].astype(np.float32)[None] / 255.0)[0].mean(0)))
    return np.where(m[:, :, None], out, rgb), measured


def erase_part(alpha: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Remove `fraction` of the product area as a band from a random side (corner bitten off)."""
    m = alpha >= 0.5
    area = m.sum()
    side = rng.integers(4)
    a = alpha.copy()
    h, w = a.shape
    for k in range(1, max(h, w)):
        cut = np.zeros_like(m)
        if side == 0:
            cut[:k] = True
        elif side == 1:
            cut[-k:] = True
        elif side == 2:
            cut[:, :k] = True
        else:
            cut[:, -k:] = True
        if (m & cut).sum() >= fraction * area:
            a[cut] = 0.0
            return a
    return a


def add_part(rgb: np.ndarray, alpha: np.ndarray, fraction: float, side: int, aspect: float = 1.0):
    """Grow an extra piece (an ellipse filled with a product-like colour) on one side (0 right,
    1 left, 2 top, 3 bottom), adding about `fraction` of the product area. The ellipse is centred
    on the product's own outermost edge on that side, so the piece is attached to the product
    (centred on the bounding box's mid-line, it floated free of a pear beside its stalk).
    Returns enlarged canvas rgb, alpha and the original's top-left offset in it."""
    h, w = alpha.shape
    m = alpha >= 0.5
    area = m.sum()
    r = int(np.sqrt(fraction * area / np.pi) * 1.15) + 2
    pad = 2 * r
    big_rgb = np.full((h + 2 * pad, w + 2 * pad, 3), 255, np.uint8)
    big_a = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    big_rgb[pad:pad + h, pad:pad + w] = rgb
    big_a[pad:pad + h, pad:pad + w] = alpha
    ys, xs = np.nonzero(m)
    edge = max(2, round(0.02 * max(h, w)))
    if side == 0:
        cx, cy = xs.max(), np.median(ys[xs >= xs.max() - edge])
    elif side == 1:
        cx, cy = xs.min(), np.median(ys[xs <= xs.min() + edge])
    elif side == 2:
        cx, cy = np.median(xs[ys <= ys.min() + edge]), ys.min()
    else:
        cx, cy = np.median(xs[ys >= ys.max() - edge]), ys.max()
    cx, cy = pad + int(cx), pad + int(cy)
    blob = np.zeros_like(big_a, np.uint8)
    cv2.ellipse(blob, (int(cx), int(cy)), (r, int(r * aspect)), 0, 0, 360, 1, -1)
    new = (blob > 0) & (big_a < 0.5)
    # texture the new part with the product itself, mirrored through the attachment point, as a
    # generator "continuing" the product would; pixels whose mirror is off-product get its median
    ny, nx = np.nonzero(new)
    my, mx = np.clip(2 * cy - ny, 0, big_a.shape[0] - 1), np.clip(2 * cx - nx, 0, big_a.shape[1] - 1)
    src_ok = big_a[my, mx] >= 0.5
    colour = np.median(rgb[m], axis=0).astype(np.uint8)
    big_rgb[ny, nx] = np.where(src_ok[:, None], big_rgb[my, mx], colour)
    big_a[new] = 1.0
    ys2, xs2 = np.nonzero(big_a >= 0.5)
    y0, y1, x0, x1 = ys2.min(), ys2.max() + 1, xs2.min(), xs2.max() + 1
    return big_rgb[y0:y1, x0:x1], big_a[y0:y1, x0:x1], (pad - x0, pad - y0)


def local_warp(rgb: np.ndarray, alpha: np.ndarray, strength: float, rng: np.random.Generator):
    """A smooth bulge on one side of the product (radial displacement) of relative `strength`."""
    h, w = alpha.shape
    pad = int(strength * max(h, w)) + 4
    big_rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    big_a = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    H, W = big_a.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    ys, xs = np.nonzero(alpha >= 0.5)
    k = rng.integers(len(ys))
    cy, cx = ys[k] + pad, xs[k] + pad
    # push the nearest boundary point outwards: centre of the bulge at the product's edge
    radius = 0.35 * max(h, w)
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius ** 2
    g = np.exp(-d2 * 2)
    oy, ox = (cy - (pad + h / 2)), (cx - (pad + w / 2))
    n = np.hypot(oy, ox) + 1e-6
    amp = strength * max(h, w)
    map_x = (xx - g * amp * ox / n).astype(np.float32)
    map_y = (yy - g * amp * oy / n).astype(np.float32)
    out_rgb = cv2.remap(big_rgb, map_x, map_y, cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    out_a = cv2.remap(big_a, map_x, map_y, cv2.INTER_LINEAR, borderValue=0)
    ys2, xs2 = np.nonzero(out_a >= 0.5)
    y0, y1, x0, x1 = ys2.min(), ys2.max() + 1, xs2.min(), xs2.max() + 1
    return out_rgb[y0:y1, x0:x1], out_a[y0:y1, x0:x1], (pad - x0, pad - y0)


def blur_region(rgb: np.ndarray, alpha: np.ndarray, fraction: float, sigma: float = 0.01):
    """Blur a central rectangle covering `fraction` of the product (text/print region), with a
    Gaussian of `sigma` product sizes: relative, so that the blur is as visible in the ad whatever
    the resolution of the catalogue photo (3 px on a 2000 px photo would vanish at ad size)."""
    m = alpha >= 0.5
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    h, w = ys.max() - ys.min(), xs.max() - xs.min()
    sigma = sigma * max(h, w)
    side = np.sqrt(fraction * m.sum() / max(h * w, 1))
    rh, rw = int(h * side / 2) + 1, int(w * side / 2) + 1
    out = rgb.copy()
    y0, y1, x0, x1 = int(max(0, cy - rh)), int(cy + rh), int(max(0, cx - rw)), int(cx + rw)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(rgb, (0, 0), sigma)[y0:y1, x0:x1]
    return np.where(m[:, :, None], out, rgb)
