"""The learned boundary-aware (WBL) inpainter: loss, self-supervised masks, training, save/load, inpaint."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from generation.ml import wbl_inpainter as wbl


def synthetic_photo(seed: int, h: int = 72, w: int = 80):
    """A textured background (stripes + checker) with a flat red 'product' ellipse; its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bg = np.stack([(xx * 2 + 40 + 7 * seed) % 256, (yy * 3 + 20) % 256, np.full((h, w), 120)], -1).astype(np.uint8)
    bg[(xx // 8 + yy // 8) % 2 == 0] //= 2
    cy, cx = h / 2 + rng.integers(-5, 6), w / 2 + rng.integers(-5, 6)
    m = ((yy - cy) ** 2 / (h * 0.25) ** 2 + (xx - cx) ** 2 / (w * 0.2) ** 2) < 1
    img = bg.copy()
    img[m] = [200, 30, 30]
    return img, m


def ring_around(mask: np.ndarray, px: int = 4) -> np.ndarray:
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return (cv2.dilate(mask.astype(np.uint8), k) > 0) & ~mask


TINY = dict(steps=40, batch_size=4, crop=48, max_side=80, width=12, n_res=1, log_every=10, lr=2e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("wbl")
    photos = [synthetic_photo(i) for i in range(3)]
    history = []
    cfg = wbl.WblConfig(output_dir=str(out), **TINY)
    art = wbl.train_wbl_inpainter([p[0] for p in photos], [p[1] for p in photos], cfg,
                                  lambda step, total, metrics: history.append((step, total, metrics)), "cpu")
    return out, art, history


def test_boundary_weights_grow_toward_the_hole_boundary():
    hole = np.zeros((40, 40), bool)
    hole[10:30, 10:30] = True
    w = wbl.boundary_weights(hole, alpha=4.0, tau=3.0)
    assert (w[~hole] == 0).all()
    assert w[10, 20] == pytest.approx(5.0)  # boundary pixel: 1 + alpha
    row = w[20, 10:21]
    assert all(a >= b for a, b in zip(row, row[1:])) and 1.0 < row[-1] < 1.3  # decays toward 1 inside


def test_weighted_boundary_loss_penalises_errors_at_the_boundary_more():
    hole = np.zeros((1, 1, 40, 40), np.float32)
    hole[..., 10:30, 10:30] = 1
    w = torch.from_numpy(wbl.boundary_weights(hole[0, 0], 4.0, 3.0))[None, None]
    target = torch.zeros(1, 1, 40, 40)
    err_edge, err_mid = target.clone(), target.clone()
    err_edge[..., 10, 12:28] = 1.0  # 16 wrong pixels on the boundary
    err_mid[..., 20, 12:28] = 1.0  # 16 wrong pixels in the middle
    assert wbl.weighted_boundary_loss(target, err_edge, w) > 2 * wbl.weighted_boundary_loss(target, err_mid, w)
    assert wbl.weighted_boundary_loss(target, target, w) == 0


def test_silhouette_gap_masks_are_rings_outside_the_product():
    _, m = synthetic_photo(0)
    rng = np.random.default_rng(0)
    cfg = wbl.WblConfig()
    for _ in range(10):
        hole = wbl.silhouette_gap_mask(m, rng, cfg)
        assert hole.sum() >= 20 and not (hole & m).any()
        near = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert (hole & near).any() or hole.sum() > 0


def test_training_loss_falls_and_artifact_is_versioned(trained):
    out, art, history = trained
    assert art.parent == out
    assert (art / wbl.WEIGHTS_FILE).is_file() and (art / wbl.CONFIG_FILE).is_file()
    meta = json.loads((art / wbl.CONFIG_FILE).read_text())
    assert meta["format"] == wbl.FORMAT and meta["format_version"] == wbl.FORMAT_VERSION
    assert meta["version"] == art.name and meta["config"]["width"] == 12
    steps = [s for s, _, _ in history]
    assert steps == [10, 20, 30, 40] and all(t == 40 for _, t, _ in history)
    losses = [m["loss"] for _, _, m in history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses
    assert {"edge_wbl", "image_wbl"} <= set(history[-1][2])


def test_reloaded_model_fills_the_hole_and_leaves_the_rest(trained):
    out, art, _ = trained
    from generation.ml.inpaint import Inpainter

    inp = wbl.WblInpainter.load(out)  # parent folder: newest version
    assert inp.version == art.name and isinstance(inp, Inpainter)
    img, m = synthetic_photo(5)
    hole = ring_around(m, 4)
    damaged = img.copy()
    damaged[hole] = 0  # garbage in the hole must not matter
    res = inp.inpaint(damaged, hole, protect_mask=m)
    assert res.shape == img.shape and res.dtype == np.uint8
    np.testing.assert_array_equal(res[~hole], damaged[~hole])  # outside (incl. protected product) unchanged
    err_in = np.abs(damaged[hole].astype(int) - img[hole]).mean()
    err_out = np.abs(res[hole].astype(int) - img[hole]).mean()
    assert err_out < 0.7 * err_in, (err_in, err_out)
    # no input mutation, empty hole is a no-op, protected pixels are never filled
    assert (damaged[hole] == 0).all()
    np.testing.assert_array_equal(inp.inpaint(img, np.zeros_like(m)), img)
    only_protected = inp.inpaint(damaged, m, protect_mask=m)
    np.testing.assert_array_equal(only_protected, damaged)


def test_large_holes_run_downscaled_and_size_is_kept(trained):
    _, art, _ = trained
    inp = wbl.WblInpainter.load(art)
    inp.cfg.infer_max_side = 40
    img, m = synthetic_photo(1, 150, 190)
    hole = ring_around(m, 10)
    res = inp.inpaint(img, hole)
    assert res.shape == img.shape
    np.testing.assert_array_equal(res[~hole], img[~hole])


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_wbl_inpainter"):
        wbl.WblInpainter.load(tmp_path)


def test_env_var_names_the_artifact(trained, monkeypatch):
    out, art, _ = trained
    monkeypatch.delenv(wbl.WBL_ENV, raising=False)
    assert wbl.wbl_inpainter_from_env() is None
    monkeypatch.setenv(wbl.WBL_ENV, str(out))
    assert wbl.wbl_inpainter_from_env("cpu").version == art.name


def test_untrained_residual_model_starts_from_the_classical_fill():
    cfg = wbl.WblConfig(width=8, n_res=1)
    inp = wbl.WblInpainter(wbl.WblNetworks(8, 1, residual=True), cfg, device="cpu")
    img, m = synthetic_photo(2)
    hole = ring_around(m, 5)
    res = inp.inpaint(img, hole, protect_mask=m)
    telea = cv2.inpaint(img, ((hole | m) * 255).astype(np.uint8), 5, cv2.INPAINT_TELEA)
    assert np.abs(res[hole].astype(int) - telea[hole]).max() <= 1


def test_pure_edgeconnect_mode_trains_and_inpaints(tmp_path):
    photos = [synthetic_photo(i) for i in range(2)]
    cfg = wbl.WblConfig(output_dir=str(tmp_path), prefill="none", **{**TINY, "steps": 4, "log_every": 2})
    art = wbl.train_wbl_inpainter([p[0] for p in photos], [p[1] for p in photos], cfg, None, "cpu")
    inp = wbl.WblInpainter.load(art)
    assert inp.cfg.prefill == "none" and not inp.nets.residual
    img, m = synthetic_photo(3)
    hole = ring_around(m, 3)
    res = inp.inpaint(img, hole)
    np.testing.assert_array_equal(res[~hole], img[~hole])
