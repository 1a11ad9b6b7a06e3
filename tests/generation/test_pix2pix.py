"""pix2pix staging baseline: pairs, a few training steps, and the backend from the saved artifact."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from generation.ml import pix2pix
from generation.ml.backends import BackendUnavailable, ProductInput, backend_names



def staged_scene(seed: int, h: int = 48, w: int = 48):
    """A 'staged' photo: a warm gradient tabletop scene with a blue box product; its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bg = np.stack([150 + yy * 2, 110 + yy, 80 + xx // 2], -1).clip(0, 255).astype(np.uint8)
    m = np.zeros((h, w), bool)
    y0, x0 = 12 + rng.integers(-4, 5), 14 + rng.integers(-4, 5)
    m[y0:y0 + 20, x0:x0 + 18] = True
    img = bg.copy()
    img[m] = [40, 60, 200]
    return img, m


TINY = dict(steps=40, batch_size=4, size=32, n_down=4, ngf=8, ndf=8, n_layers_d=2, lr=2e-3, log_every=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("p2p")
    scenes = [staged_scene(i) for i in range(4)]
    history = []
    art = pix2pix.train_pix2pix([s[0] for s in scenes], [s[1] for s in scenes],
                                pix2pix.Pix2PixConfig(output_dir=str(out), **TINY),
                                lambda step, total, m: history.append(m), "cpu")
    return out, art, history


def test_pairs_put_the_cut_out_product_on_white():
    img, m = staged_scene(0)
    x, y = pix2pix.make_staging_pair(img, m, size=32)
    assert x.shape == y.shape == (32, 32, 3)
    assert (x[0, 0] == 255).all() and (y[0, 0] != 255).any()  # background white in the input only


def test_training_losses_finite_and_l1_falls(trained):
    out, art, history = trained
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    assert all(np.isfinite([h["loss_g"], h["loss_d"], h["l1"]]).all() for h in history)
    assert history[-1]["l1"] < 0.8 * history[0]["l1"], history
    meta = json.loads((art / pix2pix.CONFIG_FILE).read_text())
    assert meta["format"] == pix2pix.FORMAT and meta["version"] == art.name
    assert (art / pix2pix.WEIGHTS_FILE).is_file()


def test_backend_unavailable_without_a_trained_model(monkeypatch, tmp_path):
    monkeypatch.delenv(pix2pix.PIX2PIX_ENV, raising=False)
    assert "pix2pix-baseline" in backend_names()
    b = pix2pix.Pix2PixBackend()
    ok, reason = b.availability()
    assert not ok and pix2pix.PIX2PIX_ENV in reason and "train" in reason
    img, m = staged_scene(0)
    with pytest.raises(BackendUnavailable):
        b.generate(ProductInput(img, "box", mask=m.astype(np.float32)), seed=0)
    ok, reason = pix2pix.Pix2PixBackend(tmp_path).availability()
    assert not ok and "no trained pix2pix" in reason


def test_backend_runs_from_the_saved_artifact(trained):
    out, art, _ = trained
    b = pix2pix.Pix2PixBackend(out, device="cpu")  # parent folder: newest version
    assert b.availability() == (True, "")
    rng = np.random.default_rng(3)
    h, w = 37, 53
    img = np.full((h, w, 3), 255, np.uint8)
    m = np.zeros((h, w), np.float32)
    m[10:28, 15:35] = 1.0
    img[m > 0] = rng.integers(0, 255, (int(m.sum()), 3))
    product = ProductInput(img, "box", mask=m)
    c = b.generate(product, seed=1, num_candidates=2)
    assert len(c) == 2 and c[0].image.shape == img.shape
    inside = m >= 1
    for cand in c:
        np.testing.assert_array_equal(cand.image[inside], img[inside])
    assert c[0].metadata["model_version"] == art.name and c[1].metadata["seed"] == 2
    again = b.generate(product, seed=1)[0].image
    np.testing.assert_array_equal(again, c[0].image)
    assert np.abs(c[0].image.astype(int) - c[1].image.astype(int))[~inside].mean() > 0.5  # dropout noise
    assert np.abs(c[0].image.astype(int) - 255)[~inside].mean() > 5  # background no longer plain white
