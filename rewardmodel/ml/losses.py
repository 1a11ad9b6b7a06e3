"""Reward losses. ``r`` are reward logits; ``sigmoid(r)`` = P(background appropriate).

* A/B better: Bradley-Terry ``-log sigmoid(r_win - r_lose)``.
* tie: ``(r_a - r_b)^2`` (equal scores; scaled by ``tie_weight``).
* both bad: each side BCE towards "inappropriate": ``softplus(r_a) + softplus(r_b)`` halved
  (``= -log(1 - sigmoid(r))``), i.e. both pushed below 0.5 and further.
* single-image label: BCE with logits on "background appropriate".
Every term is multiplied by its label weight (annotator reliability); the total is
``sum(w * loss) / sum(w)`` so the loss scale does not depend on the label mix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

OUTCOME_CODES = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}


def pair_losses(r_a: torch.Tensor, r_b: torch.Tensor, outcome: torch.Tensor, tie_weight: float = 1.0,
                both_bad_weight: float = 1.0) -> torch.Tensor:
    """Per-pair losses; ``outcome`` uses OUTCOME_CODES."""
    diff = r_a - r_b
    bt_a = -F.logsigmoid(diff)
    bt_b = -F.logsigmoid(-diff)
    tie = tie_weight * diff.pow(2)
    both_bad = both_bad_weight * 0.5 * (F.softplus(r_a) + F.softplus(r_b))
    return torch.where(outcome == 0, bt_a, torch.where(outcome == 1, bt_b, torch.where(outcome == 2, tie, both_bad)))


def single_losses(r: torch.Tensor, appropriate: torch.Tensor, single_weight: float = 1.0) -> torch.Tensor:
    return single_weight * F.binary_cross_entropy_with_logits(r, appropriate.float(), reduction="none")


def weighted_total(pair_l: torch.Tensor, pair_w: torch.Tensor, single_l: torch.Tensor, single_w: torch.Tensor) -> torch.Tensor:
    num = (pair_l * pair_w).sum() + (single_l * single_w).sum()
    den = pair_w.sum() + single_w.sum()
    return num / den.clamp_min(1e-8)
