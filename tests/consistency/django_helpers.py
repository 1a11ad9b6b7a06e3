"""Generations built from the real sample photos for the Django-side consistency tests: the
product (cut out with the shared segmenter) pasted onto an untouched stage photo, or altered."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from core.ml.images import load_rgb
from core.ml.segmentation import segment_product
from core.models import Product
from core.services.storage import store_pixels
from generation.models import Generation

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
_CUTS: dict[str, tuple] = {}


def product_by_file(project, stem: str) -> Product:
    return Product.objects.get(project=project, external_id=stem)


def cutout(stem: str):
    if stem not in _CUTS:
        rgb = load_rgb(SAMPLE / "products" / f"{stem}.jpg")
        m = segment_product(rgb).mask
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        _CUTS[stem] = (rgb[y0:y1, x0:x1].copy(), m[y0:y1, x0:x1].astype(np.float32))
    return _CUTS[stem]


def paste(stage, rgb, alpha, center=(0.5, 0.58), height_frac=0.42):
    H, W = stage.shape[:2]
    s = height_frac * H / rgb.shape[0]
    nw, nh = max(2, round(rgb.shape[1] * s)), max(2, round(rgb.shape[0] * s))
    prod = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    a = np.clip(cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR), 0, 1)[..., None]
    x0, y0 = int(round(center[0] * W - nw / 2)), int(round(center[1] * H - nh / 2))
    out = stage.astype(np.float32).copy()
    out[y0:y0 + nh, x0:x0 + nw] = prod * a + out[y0:y0 + nh, x0:x0 + nw] * (1 - a)
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + nh, x0:x0 + nw] = a[..., 0] >= 0.5
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask


def colour_shift(rgb):
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1] += 14  # towards red/magenta: ΔE2000 well over the 4.0 limit
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def staged_image(stem: str, stage: str = "3", alteration: str | None = None):
    """(generated image, placement mask). The placement mask is where the generator put the
    untouched product; `alteration` changes the product after placement:
    scale (area +25 %), colour (a* shift), missing (the stage only), extended (the product's
    lowest fifth repeated below it, as a generator stretching the packaging downwards would)."""
    stage_rgb = load_rgb(SAMPLE / "stages" / f"{stage}.jpg")
    rgb, alpha = cutout(stem)
    image, placement = paste(stage_rgb, rgb, alpha)
    if alteration == "scale":
        image, _ = paste(stage_rgb, rgb, alpha, height_frac=0.42 * np.sqrt(1.25))
        # bottom-anchored like the paste backends would not be; centre-anchored growth
    elif alteration == "colour":
        image, _ = paste(stage_rgb, colour_shift(rgb), alpha)
    elif alteration == "missing":
        image = stage_rgb.copy()
    elif alteration == "extended":
        ys, xs = np.nonzero(placement)
        step = (ys.max() - ys.min()) // 5
        band = placement & (np.arange(placement.shape[0])[:, None] >= ys.max() - step)
        by, bx = np.nonzero(band)
        image = image.copy()
        image[by + step, bx] = image[by, bx]
    elif alteration is not None:
        raise ValueError(alteration)
    return image, placement


def make_generation(project, stem: str, alteration: str | None = None, stage: str = "3", with_mask: bool = True,
                    seed: int = 0, image: np.ndarray | None = None) -> Generation:
    product = product_by_file(project, stem)
    img, placement = staged_image(stem, stage, alteration)
    if image is not None:
        img = image
    stored = store_pixels(img)
    mask_name = store_pixels(placement.astype(np.uint8) * 255, folder="masks").name if with_mask else ""
    params = {"stage": stage, "alteration": alteration}
    return Generation.objects.create(
        product=product, backend="paste-on-stage", backend_version="test", params=params,
        params_hash=hashlib.sha256(repr((params, seed)).encode()).hexdigest(), seed=seed,
        status=Generation.Status.SUCCEEDED, image=stored.name, sha256=stored.decoded.sha256,
        width=stored.decoded.width, height=stored.decoded.height, product_mask=mask_name)
