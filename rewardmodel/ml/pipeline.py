"""End-to-end entry points for a background job (Celery): plain arguments, progress callbacks.

    run = train_and_evaluate(examples, load_image, output_dir=..., cache_dir=..., progress=cb)
    if run.promotion.promote: <mark run.artifact_dir as the promoted reward model>
    scorer = RewardScorer.load(promoted_dir); s = scorer.score(orig, gen, category)
    scorer.passes(s)

Progress callbacks are ``progress(done, total, message)``; ``train_and_evaluate`` reports in
stages ("features", "training", "evaluating") through ``progress(stage_done, stage_total, msg)``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .backbones import RewardBackbone, load_backbone
from .cache import FeatureCache, features_for_examples
from .data import Example, check_enough_labels, split_by_product
from .evaluate import (
    DEFAULT_MIN_PRECISION,
    PromotionDecision,
    ThresholdChoice,
    aesthetic_proxy,
    binary_targets,
    choose_threshold,
    evaluate_with_baselines,
    head_score_fn,
    should_promote,
)
from .head import load_artifact, save_artifact
from .train import TrainConfig, TrainResult, train_reward_head

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class TrainingRun:
    artifact_dir: Path
    metrics: dict  # candidate metrics on the validation split (with baselines)
    threshold: ThresholdChoice
    promotion: PromotionDecision
    promoted_metrics: dict | None  # the promoted head re-scored on the same validation split
    train: TrainResult
    n_train: int
    n_val: int
    val_products: list[str]


def _stage(progress, stage):
    if progress is None:
        return None
    return lambda done, total, msg: progress(done, total, f"{stage}: {msg}")


def _thin_curve(curve: list[dict], chosen: float | None, max_points: int = 500) -> list[dict]:
    """At most ``max_points`` evenly spaced PR-curve points (the chosen one always kept) for storage."""
    if len(curve) <= max_points:
        return curve
    idx = set(np.linspace(0, len(curve) - 1, max_points).round().astype(int).tolist())
    idx |= {i for i, p in enumerate(curve) if p["threshold"] == chosen}
    return [curve[i] for i in sorted(idx)]


def evaluate_artifact(artifact_dir, examples: Sequence[Example], features: Mapping[str, np.ndarray]) -> dict:
    """Re-score a saved head on the given examples, with its stored threshold."""
    head, cfg = load_artifact(artifact_dir)
    thr = (cfg.get("threshold") or {}).get("threshold")
    return evaluate_with_baselines(head, examples, features, thr)


def train_and_evaluate(
    examples: Sequence[Example],
    load_image: Callable[[str], np.ndarray],
    *,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    backbone: RewardBackbone | None = None,
    config: TrainConfig | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    min_precision: float = DEFAULT_MIN_PRECISION,
    promoted_artifact_dir: str | Path | None = None,
    promotion_margin: float = 0.01,
    with_aesthetic_baseline: bool = True,
    progress: ProgressCallback | None = None,
) -> TrainingRun:
    """Split by product, compute/cached features, train, evaluate vs baselines, choose the gate
    threshold on validation, save the artifact and decide promotion.

    ``load_image(key) -> RGB uint8 array`` is only called for images whose features are not cached.
    Raises ``NotEnoughLabels`` before any work, ``TrainingDiverged`` without writing an artifact.
    """
    cfg = config or TrainConfig()
    check_enough_labels(examples, cfg.min_labels)
    backbone = backbone or load_backbone(None)
    train_ex, val_ex = split_by_product(examples, val_fraction, split_seed)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    features = features_for_examples(examples, backbone, load_image, cache, progress=_stage(progress, "features"))
    result = train_reward_head(train_ex, val_ex, cfg, _stage(progress, "training"), features=features)

    aesthetic = None
    if with_aesthetic_baseline and val_ex:
        from .data import iter_images

        aesthetic = {g: aesthetic_proxy(load_image(g)) for _, g in iter_images(val_ex)}
    triples, y = binary_targets(val_ex)
    scores = head_score_fn(result.head, features)(triples) if triples else np.zeros(0)
    threshold = choose_threshold(scores, y, min_precision)
    metrics = evaluate_with_baselines(result.head, val_ex, features, threshold.threshold, aesthetic)

    promoted_metrics = None
    if promoted_artifact_dir is not None:
        _, pcfg = load_artifact(promoted_artifact_dir)
        if (pcfg.get("backbone") or {}).get("name") == backbone.name:
            promoted_metrics = evaluate_artifact(promoted_artifact_dir, val_ex, features)
        else:
            # A head on another backbone cannot be re-scored on these features. Its stored metrics
            # (another split) are the conservative stand-in: the candidate must still beat them.
            promoted_metrics = pcfg.get("metrics")
    promotion = should_promote(metrics, promoted_metrics, promotion_margin)

    val_products = sorted({ex.product_id for ex in val_ex})
    out = save_artifact(
        output_dir,
        result.head,
        backbone.spec,
        {
            "threshold": threshold.to_dict() | {"curve": _thin_curve(threshold.curve, threshold.threshold)},
            "metrics": metrics,
            "training": result.summary(),
            "n_train": len(train_ex),
            "n_val": len(val_ex),
            "val_products": val_products,
        },
    )
    if progress is not None:
        progress(1, 1, f"done: {json.dumps({k: metrics[k] for k in ('pairwise_accuracy', 'roc_auc')})}")
    return TrainingRun(out, metrics, threshold, promotion, promoted_metrics, result, len(train_ex), len(val_ex), val_products)
