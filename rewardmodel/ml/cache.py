"""On-disk cache of backbone features, keyed by (backbone name, image sha256).

Retraining the fusion head then needs no image decoding and no backbone forward pass. One
``.npy`` per image under ``root/<backbone digest>/<key[:2]>/<key>.npy``; writes are atomic
(temp file + ``os.replace``), so several workers may fill the same cache concurrently.
The backbone ``name`` includes a digest of its weights and its input size, so features of
different weights can never be mixed.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from core.ml.embeddings import ProgressCallback

from .data import category_prompt

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def text_key(prompt: str) -> str:
    return "text-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _dir(self, backbone_name: str) -> Path:
        d = self.root / hashlib.sha256(backbone_name.encode()).hexdigest()[:16]
        if not d.exists():
            d.mkdir(parents=True, exist_ok=True)
            (d / "backbone.txt").write_text(backbone_name + "\n")
        return d

    def _path(self, backbone_name: str, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"bad feature-cache key {key!r}: use the image sha256")
        return self._dir(backbone_name) / key[:2] / f"{key}.npy"

    def get(self, backbone_name: str, key: str) -> np.ndarray | None:
        p = self._path(backbone_name, key)
        if not p.exists():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None  # a truncated file: recompute

    def put(self, backbone_name: str, key: str, feature: np.ndarray) -> None:
        p = self._path(backbone_name, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(feature, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def image_features(
        self,
        backbone,
        keys: Sequence[str],
        load_image: Callable[[str], np.ndarray],
        batch_size: int = 16,
        progress: ProgressCallback | None = None,
    ) -> dict[str, np.ndarray]:
        """Features for ``keys``: read from disk, the missing ones encoded (``load_image(key)`` gives
        the RGB array) and stored. ``progress(done, total, message)`` counts images."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, np.ndarray] = {}
        missing = []
        for k in keys:
            f = self.get(backbone.name, k)
            if f is None:
                missing.append(k)
            else:
                out[k] = f
        done = len(out)
        if progress is not None:
            progress(done, len(keys), f"{done} cached features, {len(missing)} to compute")
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            feats = backbone.encode_images([load_image(k) for k in chunk], batch_size=batch_size)
            for k, f in zip(chunk, feats):
                self.put(backbone.name, k, f)
                out[k] = f
            done += len(chunk)
            if progress is not None:
                progress(done, len(keys), f"encoded {done}/{len(keys)} images")
        return out

    def text_features(self, backbone, categories: Iterable[str]) -> dict[str, np.ndarray]:
        """Features of ``category_prompt(c)`` keyed by ``text_key(prompt)``; empty without a text encoder."""
        if not backbone.text_dim:
            return {}
        prompts = list(dict.fromkeys(category_prompt(c) for c in categories))
        out, missing = {}, []
        for p in prompts:
            f = self.get(backbone.name, text_key(p))
            if f is None:
                missing.append(p)
            else:
                out[text_key(p)] = f
        if missing:
            for p, f in zip(missing, backbone.encode_texts(missing)):
                self.put(backbone.name, text_key(p), f)
                out[text_key(p)] = f
        return out


def features_for_examples(
    examples,
    backbone,
    load_image: Callable[[str], np.ndarray],
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
) -> dict[str, np.ndarray]:
    """Every image and category-text feature the examples need, through the cache if given."""
    from .data import all_image_keys

    keys = all_image_keys(examples)
    categories = {ex.category for ex in examples}
    if cache is not None:
        feats = cache.image_features(backbone, keys, load_image, batch_size, progress)
        feats.update(cache.text_features(backbone, categories))
        return feats
    feats: dict[str, np.ndarray] = {}
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        for k, f in zip(chunk, backbone.encode_images([load_image(k) for k in chunk], batch_size=batch_size)):
            feats[k] = f
        if progress is not None:
            progress(min(start + batch_size, len(keys)), len(keys), "encoding images")
    if backbone.text_dim:
        prompts = sorted({category_prompt(c) for c in categories})
        for p, f in zip(prompts, backbone.encode_texts(prompts)):
            feats[text_key(p)] = f
    return feats
