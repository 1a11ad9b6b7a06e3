"""Parallax animation of a staged result: the product layer moves against the background.

    result = render_parallax(candidate.layers)             # 3 s, 24 fps, 512 x 512
    result.files["mp4"], result.files["webp"]              # bytes (H.264 yuv420p MP4, animated WebP)

Inputs are the layers of a staged image (`copy_paste.StagedLayers`): the *clean plate* (scene
with the product region inpainted), the product layer (colour + alpha) and its shadow. The clean
plate is inpainted once (by the staging step, or here, once, on the product's footprint — the
widest area the motion can reveal) and reused for every frame: per-frame inpainting flickers
and costs ~8× more.

Motion (a seamless loop): the background slides by ``-background_amplitude · sin`` and the
product by ``+amplitude · sin`` (fractions of the frame width), the product also grows by up to
``dolly`` (scaled about its base line, as if the camera moved toward it). The scene is
scaled to cover the square frame with margin for the background's slide.
"""
from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

__all__ = ["ParallaxResult", "parallax_frames", "render_parallax", "encode_mp4", "encode_webp", "encode_gif", "clean_plate_for"]


@dataclass
class ParallaxResult:
    files: dict[str, bytes]  # format ("mp4" | "webp" | "gif") -> file bytes
    paths: dict[str, str] = field(default_factory=dict)  # format -> path, when out_dir was given
    frames: int = 0
    fps: int = 24
    size: int = 512
    timings: dict[str, float] = field(default_factory=dict)


def clean_plate_for(image: np.ndarray, product_alpha: np.ndarray, inpainter=None, seed: int = 0) -> np.ndarray:
    """Inpaint the product's footprint (grown by a few px) once: the widest area motion reveals."""
    from generation.ml.inpaint import AutoInpainter

    hole = cv2.dilate((np.asarray(product_alpha) > 0.02).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return (inpainter or AutoInpainter(seed=seed)).inpaint(image, hole)


def _layers_from(layers):
    if layers is None:
        raise ValueError("render_parallax needs the staged layers (clean plate, product layer)")
    layers = getattr(layers, "layers", None) or layers  # a StagedCandidate carries .layers
    for name in ("clean_plate", "product_rgb", "product_alpha"):
        if getattr(layers, name, None) is None:
            raise ValueError(f"staged layers lack {name}")
    shadow = getattr(layers, "shadow", None)
    return layers.clean_plate, layers.product_rgb, layers.product_alpha, shadow


def parallax_frames(
    clean_plate: np.ndarray,
    product_rgb: np.ndarray,
    product_alpha: np.ndarray,
    shadow: np.ndarray | None = None,
    *,
    seconds: float = 3.0,
    fps: int = 24,
    size: int = 512,
    amplitude: float = 0.03,
    background_amplitude: float = 0.012,
    dolly: float = 0.03,
) -> Iterator[np.ndarray]:
    """Yield ``round(seconds·fps)`` frames (size x size x 3 uint8) of a seamless parallax loop."""
    h, w = clean_plate.shape[:2]
    alpha = np.asarray(product_alpha, np.float32)
    shadow = np.zeros((h, w), np.float32) if shadow is None else np.asarray(shadow, np.float32)
    # scene -> frame: cover the square with margin for the background slide
    cover = size * (1.0 + 2.0 * background_amplitude + 0.01) / min(h, w)
    ys, xs = np.nonzero(alpha >= 0.5)
    if ys.size:
        px, py = (xs.min() + xs.max()) / 2.0, float(ys.max())  # product anchor: centre of its base
        cx, cy = px, (ys.min() + ys.max()) / 2.0
    else:
        px, py = cx, cy = w / 2.0, h / 2.0
    # square crop of a non-square scene: centred on the product (kept inside the scene)
    ox = float(np.clip(size / 2.0 - cx * cover, size - w * cover, 0.0))
    oy = float(np.clip(size / 2.0 - cy * cover, size - h * cover, 0.0))
    if w * cover > size:
        ox = float(np.clip(ox, size - w * cover + background_amplitude * size, -background_amplitude * size))
    n = max(1, int(round(seconds * fps)))
    plate = np.ascontiguousarray(clean_plate)
    prod = np.ascontiguousarray(product_rgb)
    layers = np.dstack([alpha, shadow]).astype(np.float32)
    for i in range(n):
        phase = 2.0 * np.pi * i / n
        s = np.sin(phase)
        bg_dx = -background_amplitude * size * s
        m_bg = np.array([[cover, 0, ox + bg_dx], [0, cover, oy]], np.float32)
        frame = cv2.warpAffine(plate, m_bg, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        z = 1.0 + dolly * (1.0 - np.cos(phase)) / 2.0
        fg_dx = amplitude * size * s
        # scale by z about the product anchor, then the cover transform, then the slide
        ax, ay = px * cover + ox, py * cover + oy
        m_fg = np.array(
            [[cover * z, 0, (ox - ax) * z + ax + fg_dx], [0, cover * z, (oy - ay) * z + ay]], np.float32
        )
        fg = cv2.warpAffine(prod, m_fg, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        la = cv2.warpAffine(layers, m_fg, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a, sh = la[..., 0:1], la[..., 1:2]
        out = frame.astype(np.float32) * (1.0 - np.clip(sh, 0, 1))
        out = fg.astype(np.float32) * a + out * (1.0 - a)
        yield np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode_mp4(frames: Sequence[np.ndarray], fps: int, *, crf: int = 23, threads: int = 1) -> bytes:
    """H.264 (libx264) yuv420p MP4 with faststart, via the ffmpeg binary shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            path,
            (w, h),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-preset", "veryfast", "-threads", str(threads), "-movflags", "+faststart"],
        )
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()
        return Path(path).read_bytes()
    finally:
        os.unlink(path)


def encode_webp(frames: Sequence[np.ndarray], fps: int, *, quality: int = 75, method: int = 1) -> bytes:
    """Animated WebP (lossy, looping) via Pillow."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(
        buf, format="WEBP", save_all=True, append_images=imgs[1:], duration=int(round(1000 / fps)), loop=0,
        quality=quality, method=method,
    )
    return buf.getvalue()


def encode_gif(frames: Sequence[np.ndarray], fps: int) -> bytes:
    """Animated GIF (256-colour palette from the first frame, looping) via Pillow; large and slow."""
    from PIL import Image

    first = Image.fromarray(frames[0]).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    imgs = [first] + [Image.fromarray(f).quantize(palette=first, dither=Image.Dither.NONE) for f in frames[1:]]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(round(1000 / fps)), loop=0)
    return buf.getvalue()


_ENCODERS = {"mp4": encode_mp4, "webp": encode_webp, "gif": encode_gif}


def render_parallax(
    layers=None,
    *,
    image: np.ndarray | None = None,
    product_alpha: np.ndarray | None = None,
    seconds: float = 3.0,
    fps: int = 24,
    size: int = 512,
    amplitude: float = 0.03,
    background_amplitude: float = 0.012,
    dolly: float = 0.03,
    formats: Sequence[str] = ("mp4", "webp"),
    out_dir: str | os.PathLike | None = None,
    basename: str = "parallax",
    inpainter=None,
) -> ParallaxResult:
    """Render the parallax loop and encode it in ``formats`` (any of "mp4", "webp", "gif").

    Give either ``layers`` (a `StagedLayers` or a `StagedCandidate`), or a finished ``image`` with
    its ``product_alpha`` (then the clean plate is inpainted once, here). With ``out_dir`` the
    files are also written there as ``{basename}.{fmt}``.
    """
    unknown = [f for f in formats if f not in _ENCODERS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; use {sorted(_ENCODERS)}")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if layers is None and image is not None and product_alpha is not None:
        plate = clean_plate_for(image, product_alpha, inpainter)
        alpha = np.asarray(product_alpha, np.float32)
        plate_rgb, prod_rgb, prod_alpha, shadow = plate, image, alpha, None
        timings["clean_plate_s"] = round(time.perf_counter() - t, 4)
    else:
        plate_rgb, prod_rgb, prod_alpha, shadow = _layers_from(layers)
    t = time.perf_counter()
    frames = list(
        parallax_frames(
            plate_rgb, prod_rgb, prod_alpha, shadow, seconds=seconds, fps=fps, size=size,
            amplitude=amplitude, background_amplitude=background_amplitude, dolly=dolly,
        )
    )
    timings["frames_s"] = round(time.perf_counter() - t, 4)
    files: dict[str, bytes] = {}
    for fmt in formats:
        t = time.perf_counter()
        files[fmt] = _ENCODERS[fmt](frames, fps)
        timings[f"{fmt}_s"] = round(time.perf_counter() - t, 4)
    paths: dict[str, str] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for fmt, data in files.items():
            p = out / f"{basename}.{fmt}"
            p.write_bytes(data)
            paths[fmt] = str(p)
    return ParallaxResult(files, paths, len(frames), fps, size, timings)
