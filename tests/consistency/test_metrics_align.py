"""Metrics and alignment on synthetic masks/images with known answers (no models)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from consistency.ml import metrics as M
from consistency.ml.align import Similarity, estimate_similarity, moments_similarity, warp
from consistency.ml.checker import ConsistencyChecker, ConsistencyThresholds, fit_into_frame


def rect(shape, x0, y0, x1, y1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_object_expansion_follows_the_paper_definition():
    orig = rect((100, 100), 20, 20, 60, 60)  # 1600 px
    grown = rect((100, 100), 20, 20, 60, 72)  # +480 px outside the original
    assert M.object_expansion(grown, orig) == pytest.approx(480 / 1600)
    assert M.object_expansion(orig, orig) == 0.0
    inside = rect((100, 100), 30, 30, 50, 50)
    assert M.object_expansion(inside, orig) == 0.0  # shrinking is not expansion...
    assert M.object_shrinkage(inside, orig) == pytest.approx(1 - 400 / 1600)  # ...it is shrinkage
    assert M.mask_iou(grown, orig) == pytest.approx(1600 / 2080)


def test_boundary_f_tolerates_small_offsets_only():
    a = rect((120, 120), 30, 30, 90, 90)
    assert M.boundary_fscore(a, a) == 1.0
    assert M.boundary_fscore(np.roll(a, 1, axis=1), a) == 1.0
    assert M.boundary_fscore(np.roll(a, 12, axis=1), a) < 0.6


def test_appearance_metrics_see_colour_and_blur():
    rng = np.random.default_rng(0)
    img = np.full((96, 96, 3), 200, np.uint8)
    img[20:76, 20:76] = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
    region = rect((96, 96), 24, 24, 72, 72)
    assert M.masked_ssim(img, img, region) == pytest.approx(1.0)
    assert M.colour_metrics(img, img, region)["delta_e_mean_colour"] == pytest.approx(0.0, abs=1e-6)
    assert M.edge_difference(img, img, region) == 0.0
    shifted = np.clip(img.astype(int) + [25, -10, -20], 0, 255).astype(np.uint8)
    assert M.colour_metrics(shifted, img, region)["delta_e_mean_colour"] > 5
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    assert M.edge_difference(blurred, img, region) > 0.5
    assert M.masked_ssim(blurred, img, region) < 0.6


def test_alignment_recovers_move_and_scale():
    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (60, 40, 3), dtype=np.uint8), (0, 0), 1.5)
    src = np.full((200, 200, 3), 255, np.uint8)
    src[50:110, 40:80] = tex
    m_src = rect((200, 200), 40, 50, 80, 110)
    truth = Similarity(scale=1.2, tx=50.0, ty=-10.0)
    dst = warp(src, truth, (200, 200), border_value=(255, 255, 255))
    m_dst = warp(m_src, truth, (200, 200), nearest=True)
    est = estimate_similarity(src, m_src, dst, m_dst)
    assert est.scale == pytest.approx(1.2, abs=0.02)
    assert est.tx == pytest.approx(50, abs=1.5) and est.ty == pytest.approx(-10, abs=1.5)
    assert moments_similarity(m_src, m_dst).scale == pytest.approx(1.2, abs=0.03)


def test_fit_into_frame_keeps_aspect_and_mask():
    img = np.zeros((100, 50, 3), np.uint8)
    mask = rect((100, 50), 10, 10, 40, 90)
    same, m_same = fit_into_frame(img, mask, (200, 100))
    assert same.shape == (200, 100, 3) and m_same.sum() == pytest.approx(4 * mask.sum(), rel=0.02)
    wide, m_wide = fit_into_frame(img, mask, (100, 200))  # other aspect: fitted and centred
    assert wide.shape == (100, 200, 3) and m_wide[:, :75].sum() == 0 and m_wide.sum() == mask.sum()


def test_reasons_are_readable_and_thresholds_configurable():
    metrics = {"area_change": 0.18, "iou": 0.95, "expansion": 0.02, "shrinkage": 0.0, "boundary_f": 0.9,
               "ssim": 0.97, "delta_e_mean_colour": 9.3, "delta_e_median": 9.0, "colour_changed_fraction": 0.0,
               "edge_difference": 0.1}
    reasons = ConsistencyChecker(locator=object()).reasons(metrics)
    assert "product area grew 18 %" in reasons
    assert "colour shift ΔE 9.3 inside product" in reasons
    blurred = {**metrics, "area_change": 0.0, "delta_e_mean_colour": 1.0, "mismatch_fraction": 0.0, "detail_loss": 0.2}
    assert ConsistencyChecker(locator=object()).reasons(blurred) == ["print/texture blurred or smoothed on 20 % of the product"]
    repainted = {**blurred, "detail_loss": 0.0, "mismatch_fraction": 0.12}
    assert ConsistencyChecker(locator=object()).reasons(repainted) == ["the product looks different on 12 % of its area"]
    lenient = ConsistencyChecker(locator=object(), thresholds=ConsistencyThresholds(allow_rescale=True, max_delta_e=10))
    assert lenient.reasons(metrics) == []
    assert ConsistencyThresholds.from_dict(ConsistencyThresholds().to_dict()) == ConsistencyThresholds()


def test_reference_alignment_recovers_a_known_move_and_resize():
    from consistency.ml import TemplateLocator
    from consistency.ml.reference import affine_scale, refine_alignment

    orig = np.full((240, 240, 3), 255, np.uint8)
    mask = rect((240, 240), 70, 60, 160, 190)
    yy, xx = np.mgrid[0:240, 0:240]
    orig[mask] = np.stack([xx * 2 % 256, yy * 3 % 256, np.full_like(xx, 90)], -1)[mask]  # a printed carton
    cv2.circle(orig, (100, 100), 18, (20, 40, 200), -1)
    cv2.putText(orig, "JUICE", (74, 150), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    truth = np.array([[1.08, 0.0, -9.5], [0.0, 1.08, 6.25]])  # +17 % area, moved
    gen = cv2.warpAffine(orig, truth, (240, 240), borderValue=(255, 255, 255))
    start = TemplateLocator().locate(gen, reference=(orig, mask)).affine  # the checker's first guess
    a, cc = refine_alignment(orig, mask, gen, start)
    a, cc = refine_alignment(orig, mask, gen, a, size=320, iterations=20)
    assert cc > 0.99
    assert affine_scale(a) == pytest.approx(1.08, abs=0.005)
    corners = np.array([[70, 60, 1], [160, 60, 1], [70, 190, 1], [160, 190, 1]], float)
    assert np.abs(corners @ a.T - corners @ truth.T).max() < 1.0  # the product lands within a pixel


def test_blurred_print_is_detail_loss_and_a_copy_is_not():
    rng = np.random.default_rng(1)
    printed = cv2.GaussianBlur(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8), (0, 0), 0.8)
    region = rect((120, 120), 10, 10, 110, 110)
    assert M.detail_loss(printed.copy(), printed, region) == 0.0
    blurred = printed.copy()
    blurred[10:60] = cv2.GaussianBlur(printed, (0, 0), 3.0)[10:60]
    assert M.detail_loss(blurred, printed, region) > 0.3


def test_growth_that_continues_into_the_scene_is_dropped_and_an_added_part_kept():
    from consistency.ml.reference import _unlike_scene

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:200]
    orange = np.array((210.0, 140.0, 60.0))
    gen = rng.normal((60, 90, 150), 6, (200, 200, 3))  # a blue scene
    wall = xx >= 100  # an orange wall on the right, behind the product
    gen[wall] = orange + rng.normal(0, 8, (wall.sum(), 3))
    product = (xx - 100) ** 2 + (yy - 100) ** 2 < 40 ** 2
    blob = ((xx - 60) ** 2 + (yy - 100) ** 2 < 15 ** 2) & ~product  # a part the generator added
    gen[product | blob] = orange + 25 * np.sin(xx[product | blob] / 5.0)[:, None]
    gen = np.clip(gen, 0, 255).astype(np.uint8)
    near = cv2.dilate(product.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    wall_taken = wall & near & ~product  # the band of wall GrabCut's colour model took for product
    kept = _unlike_scene(gen, product, blob | wall_taken)
    assert kept[blob].all()
    assert not kept[wall_taken].any()
