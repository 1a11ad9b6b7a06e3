from gating.policy import GatePolicy, decide

POLICY = GatePolicy(reward_threshold=0.55)


def test_passes_only_when_both_scores_pass():
    verdict = decide(POLICY, reward_score=0.8, consistency_passed=True)
    assert verdict.passed and verdict.reasons == ["reward 0.80 ≥ 0.55", "product intact"]


def test_low_reward_is_rejected_with_the_numbers():
    verdict = decide(POLICY, reward_score=0.31, consistency_passed=True)
    assert not verdict.passed and verdict.reasons == ["reward 0.31 < 0.55"]


def test_changed_product_is_rejected_with_the_checkers_reasons():
    verdict = decide(POLICY, reward_score=0.9, consistency_passed=False, consistency_reasons=["product area grew 14 %"])
    assert verdict.reasons == ["product area grew 14 %"]


def test_both_failures_are_reported():
    verdict = decide(POLICY, reward_score=0.1, consistency_passed=False, consistency_reasons=["colour shift ΔE 9.3"])
    assert verdict.reasons == ["reward 0.10 < 0.55", "colour shift ΔE 9.3"]


def test_without_a_reward_model_the_reward_gate_is_skipped_and_said_so():
    verdict = decide(POLICY, reward_score=None, consistency_passed=True)
    assert verdict.passed and "no promoted reward model" in verdict.reasons[0]
    strict = GatePolicy(reward_threshold=0.55, require_reward_model=True)
    assert not decide(strict, reward_score=None, consistency_passed=True).passed


def test_unchecked_consistency_never_passes():
    assert not decide(POLICY, reward_score=0.9, consistency_passed=None).passed
