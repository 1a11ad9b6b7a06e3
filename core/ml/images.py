"""Decoding and validating untrusted image files.

Every image that enters the platform (upload, import, generated output read back) goes through
`decode_image`, so corrupt files, non-images, oversized files and decompression bombs are refused
with one clear error type before anything is stored.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ImageRejected(ValueError):
    """The file is not an acceptable image; the message says why, in words for the user."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # H x W x 3 uint8 RGB, EXIF orientation applied
    alpha: np.ndarray | None  # H x W uint8 when the file had transparency
    format: str  # "JPEG" | "PNG" | "WEBP"
    sha256: str  # of the original bytes: the content address
    extension: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes,
    *,
    name: str = "image",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    if not data:
        raise ImageRejected(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"{name}: the file is {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB"
        )
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
    except Image.DecompressionBombError:
        raise ImageRejected(f"{name}: too many pixels, over the limit of {max_pixels / 1e6:.0f} megapixels")
    except UnidentifiedImageError:
        raise ImageRejected(f"{name}: not an image (or a format we do not read: use JPEG, PNG or WebP)")
    except Exception as exc:  # Pillow raises many types for truncated headers
        raise ImageRejected(f"{name}: the image header is corrupt ({exc})")
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected(f"{name}: {fmt} images are not accepted; use JPEG, PNG or WebP")
    # Checked on the header, before decoding, so a decompression bomb never allocates its pixels.
    if width * height > max_pixels:
        raise ImageRejected(
            f"{name}: {width}x{height} pixels is over the limit of {max_pixels / 1e6:.0f} megapixels"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
                rgba = img.convert("RGBA") if has_alpha else None
                rgb = img.convert("RGB")
    except Exception as exc:
        raise ImageRejected(f"{name}: the image data is corrupt or truncated ({exc})")
    pixels = np.asarray(rgb, dtype=np.uint8).copy()
    alpha = np.asarray(rgba, dtype=np.uint8)[:, :, 3].copy() if rgba is not None else None
    return DecodedImage(pixels, alpha, fmt, sha256_of(data), ACCEPTED_FORMATS[fmt])


def load_rgb(path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a trusted local file (fixtures, catalog files already validated) as RGB uint8."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_image(data, name=str(path), max_bytes=max(len(data), 1), max_pixels=max_pixels).pixels


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
