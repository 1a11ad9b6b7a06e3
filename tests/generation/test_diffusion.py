"""Diffusion backends run through the real diffusers code path on tiny random local pipelines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

try:
    from tests.generation import tiny_models
except ImportError:  # pragma: no cover - rootdir layouts without the tests package
    import tiny_models  # type: ignore

from generation.ml import diffusion
from generation.ml.backends import BackendUnavailable, GenerationFailed, ProductInput, backend_names, get_backend_class

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory) -> str:
    return str(tiny_models.write_tiny_sd_inpaint(tmp_path_factory.mktemp("tiny_sd") / "sd"))


@pytest.fixture(scope="module")
def cn_dir(tmp_path_factory) -> str:
    return str(tiny_models.write_tiny_controlnet(tmp_path_factory.mktemp("tiny_cn") / "cn"))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in (diffusion.SD_INPAINT_ENV, diffusion.CONTROLNET_ENV, diffusion.IP_ADAPTER_ENV):
        monkeypatch.delenv(var, raising=False)


def product_on_white(h: int = 75, w: int = 101) -> ProductInput:
    """A red ellipse on white with a soft (anti-aliased) edge; odd size on purpose."""
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 255, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    r = np.sqrt(((yy - h / 2) / (h * 0.3)) ** 2 + ((xx - w / 2) / (w * 0.25)) ** 2)
    alpha = np.clip((1.08 - r) / 0.16, 0, 1).astype(np.float32)
    tex = np.stack([200 + rng.integers(0, 40, (h, w)), rng.integers(0, 60, (h, w)), rng.integers(0, 60, (h, w))], -1)
    img = (alpha[..., None] * tex + (1 - alpha[..., None]) * img).astype(np.uint8)
    return ProductInput(image=img, category="fruit", title="red thing", mask=alpha)


FAST = dict(num_inference_steps=2, resolution=64)


def test_prompt_template_defaults_and_overrides():
    assert diffusion.build_prompt("fruit") == (
        "A photo of fruit, in the background of " + diffusion.DEFAULT_BACKGROUNDS["fruit"])
    assert diffusion.DEFAULT_BACKGROUNDS["default"] in diffusion.build_prompt("spaceship")
    p = diffusion.build_prompt("Fruit", backgrounds={"fruit": "a beach"}, identifiers={"fruit": "sks"})
    assert p == "A photo of sks Fruit, in the background of a beach"
    assert diffusion.build_prompt("fruit", background="a garden").endswith("in the background of a garden")


def test_both_backends_registered():
    assert {"category-diffusion", "reference-diffusion"} <= set(backend_names())
    assert get_backend_class("category-diffusion") is diffusion.CategoryDiffusionBackend


def test_unavailable_without_configured_model_says_why():
    backend = diffusion.CategoryDiffusionBackend()
    ok, reason = backend.availability()
    assert not ok and diffusion.SD_INPAINT_ENV in reason and "local folder" in reason
    with pytest.raises(BackendUnavailable, match=diffusion.SD_INPAINT_ENV):
        backend.generate(product_on_white(), seed=0, **FAST)
    ok, reason = diffusion.ReferenceDiffusionBackend(model="/nonexistent/sd-inpaint").availability()
    assert not ok and "never downloaded" in reason
    ok, reason = diffusion.CategoryDiffusionBackend(model="someone/not-in-cache").availability()
    assert not ok and "cache" in reason


def test_env_var_configures_model(monkeypatch, sd_dir):
    monkeypatch.setenv(diffusion.SD_INPAINT_ENV, sd_dir)
    assert diffusion.CategoryDiffusionBackend().availability() == (True, "")


def test_category_diffusion_keeps_product_and_is_seeded(sd_dir):
    backend = diffusion.CategoryDiffusionBackend(model=sd_dir, device="cpu")
    assert backend.availability() == (True, "")
    product = product_on_white()
    steps = []
    a = backend.generate(product, seed=7, progress_callback=lambda f, msg: steps.append(f), **FAST)
    assert len(a) == 1
    img = a[0].image
    assert img.shape == product.image.shape and img.dtype == np.uint8
    inside = product.mask >= 1.0
    assert inside.sum() > 500
    np.testing.assert_array_equal(img[inside], product.image[inside])
    outside = product.mask == 0
    assert np.abs(img[outside].astype(int) - 255).mean() > 5, "background was not regenerated"
    assert steps and steps[-1] == 1.0
    meta = a[0].metadata
    assert meta["seed"] == 7 and meta["prompt"].startswith("A photo of fruit, in the background of")
    assert a[0].product_mask.shape == product.mask.shape

    again = backend.generate(product, seed=7, **FAST)[0].image
    np.testing.assert_array_equal(again, img)
    other = backend.generate(product, seed=8, **FAST)[0].image
    assert np.abs(other.astype(int) - img.astype(int))[outside].mean() > 1.0
    np.testing.assert_array_equal(other[inside], product.image[inside])

    # candidate i of a batch is the same image as candidate 0 at seed + i
    pair = backend.generate(product, seed=7, num_candidates=2, **FAST)
    np.testing.assert_array_equal(pair[0].image, img)
    np.testing.assert_array_equal(pair[1].image, other)


def test_controlnet_inpainting_variant(sd_dir, cn_dir):
    backend = diffusion.CategoryDiffusionBackend(model=sd_dir, controlnet=cn_dir, device="cpu")
    assert backend.availability() == (True, "")
    product = product_on_white(64, 48)
    for mode in ("inpaint", "canny"):
        out = backend.generate(product, seed=1, control_mode=mode, **FAST)[0]
        assert out.image.shape == product.image.shape
        inside = product.mask >= 1.0
        np.testing.assert_array_equal(out.image[inside], product.image[inside])
        assert out.metadata["control_mode"] == mode
    with pytest.raises(GenerationFailed, match="control_mode"):
        backend.generate(product, seed=1, control_mode="depth", **FAST)


def test_reference_diffusion_uses_reference_and_keeps_product(sd_dir):
    backend = diffusion.ReferenceDiffusionBackend(model=sd_dir, device="cpu")
    product = product_on_white()
    with pytest.raises(GenerationFailed, match="reference_image"):
        backend.generate(product, seed=0, **FAST)
    with pytest.raises(GenerationFailed, match="reference image"):
        backend.generate(product, seed=0, reference_image="/nonexistent/ref.jpg", **FAST)
    ref = SAMPLE / "stages" / "1.jpg"
    a = backend.generate(product, seed=3, reference_image=str(ref), strength=0.6, **FAST)[0]
    assert a.image.shape == product.image.shape
    inside = product.mask >= 1.0
    np.testing.assert_array_equal(a.image[inside], product.image[inside])
    assert a.metadata["strength"] == 0.6
    b = backend.generate(product, seed=3, reference_image=str(ref), strength=0.6, **FAST)[0]
    np.testing.assert_array_equal(a.image, b.image)
    # a different reference gives a different scene
    ref2 = np.zeros((40, 40, 3), np.uint8)
    c = backend.generate(product, seed=3, reference_image=ref2, strength=0.6, **FAST)[0]
    assert np.abs(c.image.astype(int) - a.image.astype(int))[product.mask == 0].mean() > 1.0


def test_empty_mask_is_a_clear_generation_failure(sd_dir):
    backend = diffusion.CategoryDiffusionBackend(model=sd_dir, device="cpu")
    product = product_on_white()
    product.mask = np.zeros_like(product.mask)
    with pytest.raises(GenerationFailed, match="no product"):
        backend.generate(product, seed=0, **FAST)


def test_reference_diffusion_with_ip_adapter(sd_dir, tmp_path):
    weight = tiny_models.write_tiny_ip_adapter(tmp_path / "ipa", Path(sd_dir))
    ok, reason = diffusion.ReferenceDiffusionBackend(model=sd_dir, ip_adapter=str(tmp_path / "nope.bin")).availability()
    assert not ok and diffusion.IP_ADAPTER_ENV in reason
    backend = diffusion.ReferenceDiffusionBackend(model=sd_dir, ip_adapter=str(weight), device="cpu")
    assert backend.availability() == (True, "")
    product = product_on_white()
    ref = SAMPLE / "stages" / "2.jpg"
    a = backend.generate(product, seed=3, reference_image=str(ref), ip_adapter_scale=0.8, **FAST)[0]
    assert a.image.shape == product.image.shape
    inside = product.mask >= 1.0
    np.testing.assert_array_equal(a.image[inside], product.image[inside])
    assert a.metadata["ip_adapter"] == str(weight) and a.metadata["ip_adapter_scale"] == 0.8
    plain = diffusion.ReferenceDiffusionBackend(model=sd_dir, device="cpu")
    b = plain.generate(product, seed=3, reference_image=str(ref), **FAST)[0]
    assert np.abs(a.image.astype(int) - b.image.astype(int))[product.mask == 0].mean() > 0.5
    # the category backend ignores STAGECRAFT_IP_ADAPTER (it has no reference image)
    assert diffusion.CategoryDiffusionBackend(model=sd_dir, ip_adapter=str(weight)).ip_adapter is None
