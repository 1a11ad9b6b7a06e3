"""Parallax animation: one clean plate, product layer moving against the background, real video files."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.ml.images import load_rgb
from core.ml.segmentation import segment_product
from generation.ml.copy_paste import paste_on_stage
from generation.ml.cutout import cut_out_product
from generation.ml.inpaint import AutoInpainter
from generation.ml.parallax import parallax_frames, render_parallax

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def layers():
    rgb = load_rgb(SAMPLE / "products" / "packages-milk-arla-standard-milk.jpg")
    cut = cut_out_product(rgb, alpha=segment_product(rgb).alpha)
    stage = load_rgb(SAMPLE / "stages" / "10.jpg")
    staged, _ = paste_on_stage(cut, stage, size=160)
    return staged


def test_mp4_webp_gif_are_real_animations(layers, tmp_path):
    import imageio_ffmpeg

    res = render_parallax(layers, seconds=1.0, fps=12, size=128, formats=("mp4", "webp", "gif"), out_dir=tmp_path)
    assert res.frames == 12 and set(res.files) == {"mp4", "webp", "gif"}
    assert Path(res.paths["mp4"]).read_bytes() == res.files["mp4"]
    reader = imageio_ffmpeg.read_frames(res.paths["mp4"])
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(128, 128, 3) for f in reader]
    assert "h264" in meta["codec"] and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (128, 128) and meta["fps"] == pytest.approx(12)
    assert len(frames) == 12
    for fmt in ("webp", "gif"):
        im = Image.open(io.BytesIO(res.files[fmt]))
        assert im.format == fmt.upper() and im.n_frames == 12 and im.size == (128, 128)
        assert im.info.get("loop") == 0


def test_product_moves_against_the_background(layers):
    """At a quarter of the loop the product has moved right and the background left; the loop
    is seamless (frame n would equal frame 0)."""
    n = 16
    kw = dict(seconds=1.0, fps=n, size=128, amplitude=0.06, background_amplitude=0.02, dolly=0.0)
    frames = list(parallax_frames(layers.clean_plate, layers.product_rgb, layers.product_alpha, layers.shadow, **kw))
    white = np.full_like(layers.product_rgb, 255)
    black = np.zeros_like(layers.clean_plate)
    # the same motion applied to an alpha-only layer locates the product in every frame
    masks = list(parallax_frames(black, white, layers.product_alpha, None, **kw))
    cx = [np.nonzero(m[..., 0] > 128)[1].mean() for m in (masks[0], masks[n // 4])]
    assert cx[1] - cx[0] == pytest.approx(0.06 * 128, abs=1.5)
    bg_only = list(parallax_frames(layers.clean_plate, white, np.zeros_like(layers.product_alpha), None, **kw))
    a, b = bg_only[0].astype(np.float32), bg_only[n // 4].astype(np.float32)
    shift = 0.02 * 128
    m = np.float32([[1, 0, -shift], [0, 1, 0]])
    moved_back = cv2.warpAffine(a, m, (128, 128))
    core = np.s_[8:-8, 8:-8]
    assert np.abs(moved_back - b)[core].mean() < 0.5 * np.abs(a - b)[core].mean()
    # product region differs between frames much more than a far corner of the background
    diff = np.abs(frames[n // 4].astype(int) - frames[0].astype(int)).mean(axis=2)
    prod = masks[0][..., 0] > 128
    assert diff[prod].mean() > 2 * diff[:16, :16].mean()
    # seamless loop: the last frame is one step from the first
    step = np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean()
    assert step < np.abs(frames[n // 2].astype(int) - frames[n // 4].astype(int)).mean()


class CountingInpainter:
    """A real inpainter that counts its calls."""

    def __init__(self):
        self.inner = AutoInpainter(seed=0)
        self.name = "counting"
        self.calls = 0

    def inpaint(self, rgb, hole_mask, protect_mask=None):
        self.calls += 1
        return self.inner.inpaint(rgb, hole_mask, protect_mask)


def test_finished_image_needs_one_clean_plate_not_one_per_frame(layers):
    inp = CountingInpainter()
    res = render_parallax(image=layers.image, product_alpha=layers.product_alpha, seconds=0.5, fps=12, size=96,
                          formats=("webp",), inpainter=inp)
    assert inp.calls == 1 and res.frames == 6
    with pytest.raises(ValueError, match="unknown formats"):
        render_parallax(layers, formats=("avi",))
