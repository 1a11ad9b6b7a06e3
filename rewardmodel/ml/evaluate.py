"""Evaluation, baselines, gate threshold and the promotion rule.

A *score function* maps a list of ``(original key, generated key, category)`` triples to scores
(higher = better background). The learned head, the cosine baseline and the no-learning
aesthetic proxy are all evaluated through ``evaluate_examples`` on the same examples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .cache import text_key
from .data import Example, Outcome, PairwiseLabel, SingleLabel, category_prompt

ScoreFn = Callable[[Sequence[tuple[str, str, str]]], np.ndarray]
DEFAULT_MIN_PRECISION = 0.95


# ---------------------------------------------------------------- score functions
def head_score_fn(head, features: Mapping[str, np.ndarray]) -> ScoreFn:
    """sigmoid(head(f_orig, f_gen[, text])) from precomputed features."""
    import torch

    def fn(triples):
        if not triples:
            return np.zeros(0, np.float32)
        fo = torch.from_numpy(np.stack([features[o] for o, _, _ in triples]).astype(np.float32))
        fg = torch.from_numpy(np.stack([features[g] for _, g, _ in triples]).astype(np.float32))
        txt = None
        if head.config.text_dim:
            txt = torch.from_numpy(
                np.stack([features[text_key(category_prompt(c))] for _, _, c in triples]).astype(np.float32)
            )
        with torch.no_grad():
            return torch.sigmoid(head.eval()(fo, fg, txt)).numpy().astype(np.float64)

    return fn


def cosine_score_fn(features: Mapping[str, np.ndarray]) -> ScoreFn:
    """Baseline: cosine similarity of original and generated embeddings (no learning)."""

    def fn(triples):
        out = []
        for o, g, _ in triples:
            a, b = np.asarray(features[o], np.float64), np.asarray(features[g], np.float64)
            out.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
        return np.asarray(out)

    return fn


def aesthetic_proxy(rgb: np.ndarray, size: int = 256) -> float:
    """No-learning image-quality proxy: sharpness + colourfulness + contrast, each / a typical value.

    sharpness = log(1 + variance of the Laplacian of grey), colourfulness = Hasler & Süsstrunk
    (2003) metric, contrast = RMS contrast of grey (std). Computed at ``size`` px (longer side).
    """
    from PIL import Image

    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    scale = size / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float64)
    grey = x @ np.array([0.299, 0.587, 0.114])
    lap = (-4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:])
    sharpness = np.log1p(lap.var()) if lap.size else 0.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    contrast = grey.std()
    return float(sharpness / 6.0 + colourfulness / 50.0 + contrast / 60.0)


def aesthetic_score_fn(proxy: Mapping[str, float]) -> ScoreFn:
    """Baseline from precomputed ``aesthetic_proxy`` values per generated-image key."""
    return lambda triples: np.asarray([proxy[g] for _, g, _ in triples], dtype=np.float64)


# ---------------------------------------------------------------- metrics
def binary_targets(examples: Sequence[Example]) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """Absolute labels: single labels, plus both sides of every "both bad" pair as negatives."""
    triples, y = [], []
    for ex in examples:
        if isinstance(ex, SingleLabel):
            triples.append((ex.original, ex.generated, ex.category))
            y.append(int(bool(ex.appropriate)))
        elif ex.outcome == Outcome.BOTH_BAD:
            triples += [(ex.original, ex.image_a, ex.category), (ex.original, ex.image_b, ex.category)]
            y += [0, 0]
    return triples, np.asarray(y, dtype=np.int64)


def evaluate_examples(score_fn: ScoreFn, examples: Sequence[Example], threshold: float | None = None) -> dict:
    """pairwise accuracy (A/B labels; a tie in score counts 1/2), ROC-AUC and average precision
    on absolute labels, precision/recall at ``threshold``. Undefined metrics are ``None``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    ab = [ex for ex in examples if isinstance(ex, PairwiseLabel) and ex.outcome in (Outcome.A, Outcome.B)]
    m: dict = {"n_pairs": len(ab), "pairwise_accuracy": None}
    if ab:
        sa = score_fn([(ex.original, ex.image_a, ex.category) for ex in ab])
        sb = score_fn([(ex.original, ex.image_b, ex.category) for ex in ab])
        sign = np.where([ex.outcome == Outcome.A for ex in ab], 1.0, -1.0)
        d = sign * (sa - sb)
        m["pairwise_accuracy"] = float(np.mean((d > 0) + 0.5 * (d == 0)))
    ties = [ex for ex in examples if isinstance(ex, PairwiseLabel) and ex.outcome == Outcome.TIE]
    m["n_ties"] = len(ties)
    triples, y = binary_targets(examples)
    m.update({"n_binary": int(len(y)), "n_positive": int(y.sum()), "roc_auc": None, "average_precision": None})
    scores = score_fn(triples) if triples else np.zeros(0)
    if len(set(y.tolist())) == 2:
        m["roc_auc"] = float(roc_auc_score(y, scores))
        m["average_precision"] = float(average_precision_score(y, scores))
    m["threshold"] = threshold
    m["precision"] = m["recall"] = None
    if threshold is not None and len(y):
        passed = scores >= threshold
        if passed.any():
            m["precision"] = float(y[passed].mean())
        if y.sum():
            m["recall"] = float(passed[y == 1].mean())
    return m


def evaluate_with_baselines(
    head,
    examples: Sequence[Example],
    features: Mapping[str, np.ndarray],
    threshold: float | None = None,
    aesthetic: Mapping[str, float] | None = None,
) -> dict:
    """Head metrics plus ``baselines``: cosine (always) and aesthetic proxy (if values given)."""
    m = evaluate_examples(head_score_fn(head, features), examples, threshold)
    m["baselines"] = {"cosine": evaluate_examples(cosine_score_fn(features), examples)}
    if aesthetic is not None:
        m["baselines"]["aesthetic_proxy"] = evaluate_examples(aesthetic_score_fn(aesthetic), examples)
    return m


# ---------------------------------------------------------------- threshold
@dataclass
class ThresholdChoice:
    threshold: float | None  # None: no threshold reaches min_precision -> nothing passes automatically
    precision: float | None
    recall: float | None
    min_precision: float
    n_positive: int
    n_negative: int
    curve: list[dict] = field(default_factory=list)  # [{"threshold","precision","recall"}], descending threshold
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(scores, labels, min_precision: float = DEFAULT_MIN_PRECISION) -> ThresholdChoice:
    """Lowest threshold ``t`` such that precision of ``score >= t`` is at least ``min_precision``.

    The lowest such threshold lets the most appropriate images through (highest recall) while
    keeping the precision target. ``curve`` has one point per distinct score for display.
    With too few positives above it the result is fragile: check ``n_positive``.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError("scores and labels must have the same length")
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0:
        return ThresholdChoice(None, None, None, min_precision, npos, nneg, [], "no positive labels: cannot choose a threshold")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    n = np.arange(1, len(s) + 1)
    last_of_value = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # ties in score pass together
    curve, best = [], None
    for i in np.nonzero(last_of_value)[0]:
        p, r = float(tp[i] / n[i]), float(tp[i] / npos)
        curve.append({"threshold": float(s_sorted[i]), "precision": p, "recall": r})
        if p >= min_precision:
            best = curve[-1]  # thresholds descend, so the last qualifying point is the lowest
    if best is None:
        return ThresholdChoice(None, None, None, min_precision, npos, nneg, curve,
                               f"no threshold reaches precision {min_precision}: keep every image for human review")
    return ThresholdChoice(best["threshold"], best["precision"], best["recall"], min_precision, npos, nneg, curve,
                           f"lowest threshold with precision >= {min_precision}")


# ---------------------------------------------------------------- promotion
@dataclass
class PromotionDecision:
    promote: bool
    reason: str


def should_promote(
    candidate_metrics: dict,
    promoted_metrics: dict | None,
    margin: float = 0.01,
    metric: str = "pairwise_accuracy",
) -> PromotionDecision:
    """Promote a candidate head?

    1. ``candidate[metric]`` must exist and beat the cosine baseline on the same split
       (``candidate["baselines"]["cosine"][metric]``) by ``margin``.
    2. With no promoted model: promote.
    3. Otherwise ``candidate[metric] >= promoted[metric] + margin`` and ROC-AUC (when both have
       one) must not drop by more than ``margin``. Both metric dicts must come from the *same*
       validation examples (``evaluate_artifact`` re-scores the promoted head on them).
    """
    c = candidate_metrics.get(metric)
    if c is None:
        return PromotionDecision(False, f"candidate has no {metric} (no validation labels of that kind)")
    base = (candidate_metrics.get("baselines") or {}).get("cosine", {}).get(metric)
    if base is not None and c < base + margin:
        return PromotionDecision(False, f"candidate {metric} {c:.3f} does not beat the cosine baseline {base:.3f} by {margin}")
    if not promoted_metrics or promoted_metrics.get(metric) is None:
        return PromotionDecision(True, f"no promoted model; candidate {metric} {c:.3f}")
    p = promoted_metrics[metric]
    if c < p + margin:
        return PromotionDecision(False, f"candidate {metric} {c:.3f} < promoted {p:.3f} + margin {margin}")
    ca, pa = candidate_metrics.get("roc_auc"), promoted_metrics.get("roc_auc")
    if ca is not None and pa is not None and ca < pa - margin:
        return PromotionDecision(False, f"{metric} improves but ROC-AUC drops {pa:.3f} -> {ca:.3f}")
    return PromotionDecision(True, f"candidate {metric} {c:.3f} >= promoted {p:.3f} + {margin}")
