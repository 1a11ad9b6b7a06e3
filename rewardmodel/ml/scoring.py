"""Scoring new generations with a saved head."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.ml.embeddings import ProgressCallback

from .backbones import RewardBackbone, load_backbone
from .data import category_prompt, image_key
from .head import RewardHead, load_artifact


class BackboneMismatch(RuntimeError):
    """The backbone available now is not the one the head was trained on."""


class RewardScorer:
    """``RewardScorer.load(artifact_dir)`` then ``score(original_rgb, generated_rgb, category)``.

    Scores are ``sigmoid(reward)`` in [0, 1]; ``passes(score)`` applies the stored gate threshold
    (``None`` threshold: nothing passes automatically).
    """

    def __init__(self, head: RewardHead, backbone: RewardBackbone, config: dict):
        self.head = head.eval()
        self.backbone = backbone
        self.config = config
        self.threshold: float | None = (config.get("threshold") or {}).get("threshold")
        trained_on = (config.get("backbone") or {}).get("name")
        if trained_on and trained_on != backbone.name:
            raise BackboneMismatch(f"head was trained on features of {trained_on}, but the backbone is {backbone.name}")
        if head.config.image_dim != backbone.image_dim or head.config.text_dim != backbone.text_dim:
            raise BackboneMismatch("head and backbone feature sizes differ")

    @classmethod
    def load(cls, artifact_dir: str | Path, backbone: RewardBackbone | None = None, device: str = "cpu") -> "RewardScorer":
        head, cfg = load_artifact(artifact_dir)
        if backbone is None:
            backbone = load_backbone(cfg["backbone"], device=device)
        return cls(head, backbone, cfg)

    def score_features(self, f_orig: np.ndarray, f_gen: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            t = None if text is None else torch.from_numpy(np.asarray(text, np.float32))
            r = self.head(torch.from_numpy(np.asarray(f_orig, np.float32)), torch.from_numpy(np.asarray(f_gen, np.float32)), t)
        return torch.sigmoid(r).numpy().astype(np.float64)

    def score_batch(
        self,
        originals: Sequence[np.ndarray],
        generated: Sequence[np.ndarray],
        categories: Sequence[str] | None = None,
        batch_size: int = 16,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Scores for N (original, generated) pairs; identical originals are encoded once."""
        if len(originals) != len(generated):
            raise ValueError("originals and generated must have the same length")
        if not len(generated):
            return np.zeros(0)
        categories = list(categories) if categories is not None else [""] * len(generated)
        uniq: dict[str, int] = {}
        orig_idx, uniq_imgs = [], []
        for im in originals:
            k = image_key(im)
            if k not in uniq:
                uniq[k] = len(uniq_imgs)
                uniq_imgs.append(im)
            orig_idx.append(uniq[k])
        f_o = self.backbone.encode_images(uniq_imgs, batch_size=batch_size)[orig_idx]
        f_g = self.backbone.encode_images(list(generated), batch_size=batch_size, progress=progress)
        text = None
        if self.head.config.text_dim:
            prompts = sorted({category_prompt(c) for c in categories})
            tf = dict(zip(prompts, self.backbone.encode_texts(prompts)))
            text = np.stack([tf[category_prompt(c)] for c in categories])
        return self.score_features(f_o, f_g, text)

    def score(self, original_rgb: np.ndarray, generated_rgb: np.ndarray, category: str = "") -> float:
        return float(self.score_batch([original_rgb], [generated_rgb], [category])[0])

    def passes(self, score: float) -> bool:
        return self.threshold is not None and score >= self.threshold
