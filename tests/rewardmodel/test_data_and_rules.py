import numpy as np
import pytest
import torch

from rewardmodel.ml import (
    MIN_LABELS,
    NotEnoughLabels,
    PairwiseLabel,
    SingleLabel,
    TrainConfig,
    annotator_weight,
    choose_threshold,
    evaluate_examples,
    should_promote,
    split_by_product,
    train_reward_head,
)
from rewardmodel.ml.data import check_enough_labels
from rewardmodel.ml.losses import OUTCOME_CODES, pair_losses, single_losses, weighted_total


def _labels(n_products, per_product):
    return [
        SingleLabel(f"p{p}", f"orig{p:05d}", f"gen{p:04d}{i:04d}", bool(i % 2))
        for p in range(n_products)
        for i in range(per_product)
    ]


def test_split_by_product_has_no_leakage_and_is_deterministic():
    ex = _labels(20, 5) + [PairwiseLabel(f"p{p}", f"orig{p:05d}", "x" * 10, "y" * 10, "a") for p in range(20)]
    train, val = split_by_product(ex, val_fraction=0.25, seed=3)
    assert len(train) + len(val) == len(ex)
    assert not {e.product_id for e in train} & {e.product_id for e in val}
    assert 0.15 <= len(val) / len(ex) <= 0.35
    assert split_by_product(ex, 0.25, seed=3) == (train, val)
    assert split_by_product(ex, 0.25, seed=4) != (train, val)


def test_split_with_a_single_product_keeps_everything_for_training():
    ex = _labels(1, 10)
    train, val = split_by_product(ex, 0.2)
    assert len(train) == 10 and val == []


def test_split_with_two_products_gives_each_side_one():
    train, val = split_by_product(_labels(2, 3), 0.01)
    assert {e.product_id for e in train} and {e.product_id for e in val}


def test_too_few_labels_is_a_clear_error_before_any_work():
    with pytest.raises(NotEnoughLabels, match=f"need at least {MIN_LABELS} labels, have 7"):
        check_enough_labels(_labels(1, 7))
    with pytest.raises(NotEnoughLabels, match="need at least 30 labels, have 12"):
        train_reward_head(_labels(3, 4), [], TrainConfig(min_labels=30), features={})


def test_outcome_strings_are_validated():
    with pytest.raises(ValueError):
        PairwiseLabel("p", "o" * 10, "a" * 10, "b" * 10, "A better")


def test_annotator_weight_orders_reliability():
    assert annotator_weight(50, 50) > annotator_weight(40, 50) > annotator_weight(30, 50)
    assert annotator_weight(25, 50) < 0.1  # chance level on a binary choice
    assert 0 < annotator_weight(0, 0) < 1


def test_losses_behave_as_documented():
    r_a = torch.tensor([2.0, -1.0, 0.5, 0.5, -3.0])
    r_b = torch.tensor([0.0, 1.0, 0.5, 1.5, -3.0])
    out = torch.tensor([OUTCOME_CODES[o] for o in ["a", "a", "tie", "tie", "both_bad"]])
    l = pair_losses(r_a, r_b, out)
    assert l[0] < l[1]  # BT: the right order costs less
    assert l[2] == 0 and l[3] > 0  # tie: zero only at equal scores
    assert l[4] < pair_losses(torch.tensor([3.0]), torch.tensor([3.0]), torch.tensor([3]))[0]  # both bad: lower is better
    s = single_losses(torch.tensor([3.0, 3.0]), torch.tensor([1, 0]))
    assert s[0] < s[1]
    # a zero-weight label does not change the total
    t1 = weighted_total(l[:1], torch.ones(1), s[:1], torch.ones(1))
    t2 = weighted_total(l[:2], torch.tensor([1.0, 0.0]), s[:1], torch.ones(1))
    assert torch.isclose(t1, t2)


def test_choose_threshold_is_lowest_with_required_precision():
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 1, 1, 1, 0, 1, 0])
    c = choose_threshold(scores, labels, min_precision=0.95)
    assert c.threshold == pytest.approx(0.7) and c.precision == 1.0 and c.recall == pytest.approx(5 / 6)
    assert [p["threshold"] for p in c.curve] == sorted(scores, reverse=True)
    c80 = choose_threshold(scores, labels, min_precision=0.8)
    # 0.5 lets 6 of 7 through (0.857); 0.4 would give 6/8 = 0.75 < 0.8
    assert c80.threshold == pytest.approx(0.5) and c80.precision == pytest.approx(6 / 7) and c80.recall == 1.0


def test_choose_threshold_without_any_qualifying_threshold_passes_nothing():
    c = choose_threshold([0.9, 0.8, 0.1], [0, 1, 1], 0.95)
    assert c.threshold is None and "human review" in c.reason
    assert choose_threshold([0.3], [0]).threshold is None


def test_evaluate_examples_pairwise_accuracy_and_undefined_metrics():
    ex = [
        PairwiseLabel("p", "o" * 10, "g1" * 5, "g2" * 5, "a"),
        PairwiseLabel("p", "o" * 10, "g1" * 5, "g3" * 5, "b"),
        PairwiseLabel("p", "o" * 10, "g2" * 5, "g3" * 5, "tie"),
    ]
    score = {"g1" * 5: 0.9, "g2" * 5: 0.2, "g3" * 5: 0.5}
    m = evaluate_examples(lambda t: np.array([score[g] for _, g, _ in t]), ex, threshold=0.5)
    assert m["pairwise_accuracy"] == 0.5 and m["n_pairs"] == 2 and m["n_ties"] == 1
    assert m["roc_auc"] is None  # no absolute labels


def test_should_promote_rule():
    cand = {"pairwise_accuracy": 0.80, "roc_auc": 0.85, "baselines": {"cosine": {"pairwise_accuracy": 0.6}}}
    assert should_promote(cand, None).promote
    assert should_promote(cand, {"pairwise_accuracy": 0.78}, margin=0.01).promote
    assert not should_promote(cand, {"pairwise_accuracy": 0.795}, margin=0.01).promote
    assert not should_promote(cand, {"pairwise_accuracy": 0.7, "roc_auc": 0.95}).promote  # AUC drop
    weak = {"pairwise_accuracy": 0.6, "baselines": {"cosine": {"pairwise_accuracy": 0.62}}}
    d = should_promote(weak, None)
    assert not d.promote and "cosine" in d.reason
    assert not should_promote({"pairwise_accuracy": None}, None).promote
