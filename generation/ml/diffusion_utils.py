"""Small helpers shared by the learned generator backends (diffusion, WBL inpainter, pix2pix).

Plain numpy / OpenCV / torch; no Django.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .backends import GenerationFailed, ProductInput


def find_versioned_artifact(path: str | os.PathLike, config_file: str, weights_file: str, missing: str) -> Path:
    """The artifact folder itself, or the newest version inside a parent folder."""
    p = Path(path).expanduser()
    if (p / config_file).is_file() and (p / weights_file).is_file():
        return p
    if p.is_dir():
        versions = sorted(d for d in p.iterdir() if (d / config_file).is_file() and (d / weights_file).is_file())
        if versions:
            return versions[-1]
    raise FileNotFoundError(f"{missing} in {p} (expected {config_file} and {weights_file})")


def save_versioned_artifact(output_dir: str | os.PathLike, weights: dict[str, dict], meta: dict, *, fmt: str,
                            format_version: int, config_file: str) -> Path:
    """Write trained weights to ``output_dir/<UTC time>-<sha8>/``, named by the first state dict's
    digest, with ``config_file`` holding ``meta`` plus format and version; returns the folder."""
    import hashlib
    import json
    import time

    from safetensors.torch import save_file

    states = {name: {k: v.detach().cpu().contiguous() for k, v in state.items()} for name, state in weights.items()}
    primary = next(iter(states.values()))
    digest = hashlib.sha256()
    for k in sorted(primary):
        digest.update(k.encode())
        digest.update(primary[k].numpy().tobytes())
    now = time.time()
    # milliseconds: the newest version is found by sorting names, and short runs finish within a second
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}-" + digest.hexdigest()[:8]
    out_dir = Path(output_dir) / version
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, state in states.items():
        save_file(state, str(out_dir / name), metadata={"format": fmt, "format_version": str(format_version)})
    config = {"format": fmt, "format_version": format_version, "version": version, **meta,
              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out_dir / config_file).write_text(json.dumps(config, indent=2))
    return out_dir


def resolve_device(device: str | None = None) -> str:
    """"cuda" when available and not overridden, else "cpu"."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: Any, device: str):
    """float16 on CUDA, float32 on CPU unless a dtype (name or torch.dtype) is given."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(names))}")


def as_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise GenerationFailed(f"{what} must be an HxWx3 RGB array, got shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.max(initial=0) <= 1.0:
            img = img * 255.0
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise GenerationFailed(f"{what} is too small ({img.shape[1]}x{img.shape[0]} px); need at least 8x8")
    return np.ascontiguousarray(img)


def load_image_param(value: Any, what: str) -> np.ndarray:
    """An image given as an array or as a path to a trusted local file."""
    if isinstance(value, (str, os.PathLike)):
        from core.ml.images import load_rgb

        try:
            return load_rgb(Path(value))
        except (OSError, ValueError) as exc:
            raise GenerationFailed(f"{what}: cannot read {value}: {exc}")
    return as_rgb(value, what)


def product_alpha(product: ProductInput, rgb: np.ndarray | None = None) -> np.ndarray:
    """The product's alpha (HxW float32 in [0, 1]): the given mask, else `core.ml.segmentation`."""
    rgb = as_rgb(product.image, "product image") if rgb is None else rgb
    if product.mask is not None:
        alpha = np.asarray(product.mask, dtype=np.float32)
        if alpha.ndim == 3:
            alpha = alpha[:, :, 0]
        if alpha.max(initial=0) > 1.0:
            alpha = alpha / 255.0
        if alpha.shape != rgb.shape[:2]:
            raise GenerationFailed(f"product mask is {alpha.shape[1]}x{alpha.shape[0]} but the image is "
                                   f"{rgb.shape[1]}x{rgb.shape[0]}")
        alpha = np.clip(alpha, 0.0, 1.0)
    else:
        try:
            from core.ml.segmentation import segment_product
        except ImportError as exc:  # pragma: no cover - depends on the colleague's module
            raise GenerationFailed(f"no product mask given and segmentation is unavailable ({exc})")
        try:
            alpha = segment_product(rgb).alpha.astype(np.float32)
        except Exception as exc:
            raise GenerationFailed(f"could not segment the product: {exc}")
    if (alpha >= 0.5).sum() < 16:
        raise GenerationFailed("no product found in the image (the product mask is empty)")
    if (alpha < 0.5).sum() < 16:
        raise GenerationFailed("the product fills the whole image: there is no background to generate")
    return alpha


def paste_product(generated: np.ndarray, original: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite the original product pixels over the generated image.

    Where alpha == 1 the result equals the original exactly (no VAE drift on the product).
    """
    if generated.shape[:2] != original.shape[:2]:
        generated = cv2.resize(generated, (original.shape[1], original.shape[0]), interpolation=cv2.INTER_LANCZOS4)
    a = alpha.astype(np.float32)[:, :, None]
    out = a * original.astype(np.float32) + (1.0 - a) * generated.astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    full = alpha >= 1.0
    out[full] = original[full]
    return out


def working_size(height: int, width: int, resolution: int, multiple: int = 8) -> tuple[int, int]:
    """(h, w) with the longer side == resolution, both rounded to a multiple of `multiple`."""
    scale = resolution / float(max(height, width))
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w


def cover_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize and centre-crop `image` so it covers exactly height x width."""
    ih, iw = image.shape[:2]
    scale = max(height / ih, width / iw)
    nh, nw = max(height, int(np.ceil(ih * scale))), max(width, int(np.ceil(iw * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])
