"""The gate: one pure function that turns scores into a decision with reasons a person can read.

No Django here; `gating.services` feeds it the stored scores and records what it returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PASSED = "passed"
REJECTED = "rejected"


@dataclass(frozen=True)
class GatePolicy:
    reward_threshold: float
    # A gate whose scorer has no trained model yet is skipped (and the decision says so), so a new
    # project can run generation before its first labels; set to True to hold everything instead.
    require_reward_model: bool = False
    require_consistency: bool = True


@dataclass(frozen=True)
class GateVerdict:
    decision: str
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.decision == PASSED


def decide(policy: GatePolicy, *, reward_score: float | None, consistency_passed: bool | None,
           consistency_reasons: list[str] | None = None) -> GateVerdict:
    failures: list[str] = []
    notes: list[str] = []
    if reward_score is None:
        if policy.require_reward_model:
            failures.append("no reward score (no promoted reward model)")
        else:
            notes.append("reward not gated: no promoted reward model yet")
    elif reward_score < policy.reward_threshold:
        failures.append(f"reward {reward_score:.2f} < {policy.reward_threshold:.2f}")
    else:
        notes.append(f"reward {reward_score:.2f} ≥ {policy.reward_threshold:.2f}")
    if consistency_passed is None:
        if policy.require_consistency:
            failures.append("product consistency not checked")
    elif not consistency_passed:
        failures.extend(consistency_reasons or ["product changed"])
    else:
        notes.append("product intact")
    if failures:
        return GateVerdict(REJECTED, failures)
    return GateVerdict(PASSED, notes)
