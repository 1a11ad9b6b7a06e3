"""Product cut-out on real product photos: shared segmenter, edge decontamination, bad input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.ml.images import load_rgb
from core.ml.segmentation import segment_product
from generation.ml.backends import GenerationFailed
from generation.ml.cutout import border_background, cut_out_product

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def product(name: str) -> np.ndarray:
    return load_rgb(SAMPLE / "products" / f"{name}.jpg")


@pytest.fixture(scope="module")
def aubergine():
    return cut_out_product(product("vegetables-aubergine"))


@pytest.fixture(scope="module")
def milk():
    return cut_out_product(product("packages-milk-arla-standard-milk"))


def edge_band(alpha: np.ndarray, px: int = 2) -> np.ndarray:
    """Soft edge pixels and the first `px` pixels inside the silhouette: where halos live."""
    inside = cv2.distanceTransform((alpha >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    return (alpha > 0.05) & (inside <= px)


def on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) * alpha[..., None]


def test_cutout_is_rgba_with_the_shared_segmenters_mask(aubergine):
    rgb = product("vegetables-aubergine")
    assert aubergine.rgba.shape == rgb.shape[:2] + (4,) and aubergine.rgba.dtype == np.uint8
    seg = segment_product(rgb)
    # the cut-out keeps the segmenter's 0.5-threshold decision (up to 8-bit rounding)
    agree = (aubergine.mask == seg.mask).mean()
    assert agree > 0.995
    x0, y0, x1, y1 = aubergine.box
    assert x1 - x0 > 0.6 * rgb.shape[1]  # an aubergine lies across the photo
    assert aubergine.background == pytest.approx((255, 255, 255), abs=3)
    crop = aubergine.crop()
    assert crop.rgba.shape[:2] == (y1 - y0, x1 - x0) and crop.box == (0, 0, x1 - x0, y1 - y0)


def test_no_white_halo_on_a_dark_scene(aubergine):
    """Composited on black, the decontaminated edge is darker than the raw photo's edge (the
    white page mixed into soft edge pixels is removed) and close to the product's own colour."""
    rgb = product("vegetables-aubergine")
    a = aubergine.alpha
    band = edge_band(a)
    raw = on_black(rgb, a)[band].mean()
    clean = on_black(aubergine.rgb, a)[band].mean()
    assert clean < raw - 8
    # the colour under the band is now close to the nearby product colour, not to white
    interior = (a >= 0.99) & ~edge_band(a, 6)
    ring_colour = aubergine.rgb[band & (a > 0.5)].astype(float).mean(0)
    assert np.abs(ring_colour - 255).min() > 80
    # interior pixels keep their original colour
    core = (a >= 0.99) & (cv2.distanceTransform((a >= 0.5).astype(np.uint8), cv2.DIST_L2, 3) > 4)
    np.testing.assert_array_equal(aubergine.rgb[core], rgb[core])
    assert interior.sum() > 1000


def test_white_carton_on_white_is_kept(milk):
    """The segmenter's plain-background refinement keeps a white carton; the cut-out keeps it too."""
    x0, y0, x1, y1 = milk.box
    h, w = milk.rgba.shape[:2]
    assert (y1 - y0) > 0.8 * h and 0.25 * w < (x1 - x0) < 0.6 * w
    assert milk.mask.mean() > 0.2


def test_photo_not_on_a_plain_background_is_refused():
    scene = load_rgb(SAMPLE / "staged" / "can" / "00.jpg")
    assert not border_background(scene).is_plain
    with pytest.raises(GenerationFailed, match="not on a plain background"):
        cut_out_product(scene)


def test_all_sample_product_photos_count_as_plain():
    for path in sorted((SAMPLE / "products").glob("*.jpg")):
        assert border_background(load_rgb(path)).is_plain, path.name


def test_empty_mask_is_refused():
    blank = np.full((120, 120, 3), 250, np.uint8)
    with pytest.raises(GenerationFailed, match="no product found"):
        cut_out_product(blank)  # real segmenter: nothing salient on a blank page
    rgb = product("fruit-orange")
    tiny = np.zeros(rgb.shape[:2], np.float32)
    tiny[5:8, 5:8] = 1.0
    with pytest.raises(GenerationFailed, match="no product found"):
        cut_out_product(rgb, alpha=tiny)


def test_given_alpha_skips_segmentation_and_threshold_is_half():
    rgb = product("fruit-orange")
    alpha = np.zeros(rgb.shape[:2], np.float32)
    alpha[40:160, 40:160] = 0.49
    alpha[60:140, 60:140] = 0.51
    cut = cut_out_product(rgb, alpha=alpha)
    assert cut.box == (60, 60, 140, 140)
    assert cut.segmenter == "given"


def test_product_interior_is_opaque_even_where_the_segmenter_is_unsure():
    rgb = product("packages-milk-arla-standard-milk")
    alpha = np.zeros(rgb.shape[:2], np.float32)
    alpha[20:180, 60:140] = 0.6  # an unsure segmenter: "probably product" everywhere inside
    cut = cut_out_product(rgb, alpha=alpha)
    assert (cut.alpha[30:170, 70:130] == 1.0).all()  # no see-through carton
    assert cut.alpha[20, 100] < 1.0  # the boundary keeps its soft value
