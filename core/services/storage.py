"""Content-addressed image storage through Django's storage API.

A file's name is derived from the sha256 of its bytes, so importing the same photo twice stores
one file, whatever the storage backend (local folder or S3-compatible).
"""
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from core.ml.images import DecodedImage, decode_image, encode_png


@dataclass(frozen=True)
class StoredFile:
    name: str
    decoded: DecodedImage


def validate_image(data: bytes, name: str) -> DecodedImage:
    """Decode with the platform limits; raises ImageRejected with a message for the user."""
    return decode_image(
        data,
        name=name,
        max_bytes=settings.STAGECRAFT_MAX_IMAGE_BYTES,
        max_pixels=settings.STAGECRAFT_MAX_IMAGE_PIXELS,
    )


def content_name(sha256: str, extension: str, folder: str = "images") -> str:
    return f"{folder}/{sha256[:2]}/{sha256}.{extension}"


def save_bytes(data: bytes, name: str) -> str:
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:  # another process wrote the same content first
            default_storage.delete(saved)
    return name


def store_image(data: bytes, name: str = "image", folder: str = "images") -> StoredFile:
    """Validate, then store the original bytes under their content address."""
    decoded = validate_image(data, name)
    return StoredFile(save_bytes(data, content_name(decoded.sha256, decoded.extension, folder)), decoded)


def store_pixels(pixels, folder: str = "images") -> StoredFile:
    """Store a generated RGB/grey array as PNG under its content address."""
    data = encode_png(pixels)
    return store_image(data, name="generated image", folder=folder)
