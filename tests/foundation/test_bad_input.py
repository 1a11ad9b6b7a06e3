import io
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from core.ml.images import ImageRejected, decode_image
from core.models import Product


def png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (all zero, so it compresses to nothing)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw_row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(min(height, 2000))) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg_bytes(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am a text file", "not an image"),
    (jpeg_bytes()[:200], "corrupt"),
    (png_header_bomb(30000, 30000), "megapixels"),
])
def test_bad_files_are_rejected_with_a_reason(data, message):
    with pytest.raises(ImageRejected, match=message):
        decode_image(data, name="upload.jpg")


def test_oversized_file_is_rejected_before_decoding():
    with pytest.raises(ImageRejected, match="over the limit"):
        decode_image(jpeg_bytes(), max_bytes=100)


def test_gif_is_refused_by_format():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    with pytest.raises(ImageRejected, match="GIF images are not accepted"):
        decode_image(buf.getvalue())


def test_rgba_and_grayscale_decode_to_rgb():
    for mode in ("RGBA", "L", "P"):
        buf = io.BytesIO()
        Image.new(mode, (10, 6)).save(buf, format="PNG")
        decoded = decode_image(buf.getvalue())
        assert decoded.pixels.shape == (6, 10, 3)
        assert (decoded.alpha is not None) == (mode == "RGBA")


@pytest.mark.parametrize("payload, message", [
    (b"%PDF-1.4 not an image", "not an image"),
    (png_header_bomb(30000, 30000), "megapixels"),
    (jpeg_bytes()[:300], "corrupt"),
])
def test_upload_of_a_bad_file_shows_the_error_and_stores_nothing(client, ml_engineer, project, settings, payload, message):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(ml_engineer)
    response = client.post(reverse("product_add", args=[project.slug]), {
        "title": "Juice", "category": "juice carton",
        "image": SimpleUploadedFile("juice.jpg", payload, content_type="image/jpeg"),
    })
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Product.objects.count() == 0
    assert not any(p.is_file() for p in Path(settings.MEDIA_ROOT).rglob("*"))


def test_upload_of_a_good_photo_creates_the_product(client, ml_engineer, project, sample_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(ml_engineer)
    data = (sample_dir / "products/fruit-orange.jpg").read_bytes()
    response = client.post(reverse("product_add", args=[project.slug]), {
        "title": "Orange", "category": "fruit", "image": SimpleUploadedFile("orange.jpg", data, content_type="image/jpeg"),
    })
    product = Product.objects.get()
    assert response.status_code == 302 and response.url == reverse("product_detail", args=[project.slug, product.pk])
    image_url = reverse("media", args=[product.source_image.image.name])
    served = client.get(image_url)
    assert served.status_code == 200 and b"".join(served.streaming_content) == data
