"""Training the fusion head on features with a planted quality direction (fast: no backbone)."""
import numpy as np
import pytest
import torch

from tests.rewardmodel.helpers import planted_features
from rewardmodel.ml import (
    PairwiseLabel,
    SingleLabel,
    TrainConfig,
    TrainingDiverged,
    evaluate_with_baselines,
    head_score_fn,
    load_artifact,
    save_artifact,
    split_by_product,
    train_reward_head,
)

FAST = dict(hidden=[32], max_epochs=40, patience=6, batch_size=64, lr=3e-3, min_labels=20)


@pytest.fixture(scope="module")
def planted():
    feats, labels = planted_features(n_products=16, gens_per_product=4, dim=32, seed=1)
    train, val = split_by_product(labels, 0.25, seed=0)
    return feats, labels, train, val


@pytest.fixture(scope="module")
def trained(planted):
    feats, _, train, val = planted
    progress = []
    res = train_reward_head(train, val, TrainConfig(**FAST), lambda e, n, msg: progress.append((e, n, msg)), features=feats)
    return res, progress


def test_head_learns_held_out_products_and_beats_cosine(planted, trained):
    feats, _, _, val = planted
    res, _ = trained
    m = evaluate_with_baselines(res.head, val, feats)
    assert m["pairwise_accuracy"] >= 0.75
    assert m["roc_auc"] >= 0.85
    assert m["pairwise_accuracy"] > m["baselines"]["cosine"]["pairwise_accuracy"] + 0.1


def test_progress_is_reported_every_epoch_and_best_epoch_is_kept(trained):
    res, progress = trained
    assert [p[0] for p in progress] == list(range(1, res.epochs_run + 1))
    assert all(p[1] == FAST["max_epochs"] for p in progress)
    best = min(h["val_loss"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_loss"] == best
    if res.stopped_early:
        assert res.epochs_run - res.best_epoch == FAST["patience"]


def test_training_is_deterministic(planted):
    feats, _, train, val = planted
    cfg = TrainConfig(**{**FAST, "max_epochs": 3})
    a = train_reward_head(train, val, cfg, features=feats).head.state_dict()
    b = train_reward_head(train, val, cfg, features=feats).head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_artifact_roundtrip_scores_identically(planted, trained, tmp_path):
    feats, _, _, val = planted
    res, _ = trained
    save_artifact(tmp_path / "art", res.head, {"kind": "test", "name": "planted"}, {"threshold": {"threshold": 0.5}})
    assert (tmp_path / "art" / "head.safetensors").exists() and (tmp_path / "art" / "config.json").exists()
    head2, cfg = load_artifact(tmp_path / "art")
    triples = [(e.original, e.generated, "") for e in val if isinstance(e, SingleLabel)]
    np.testing.assert_allclose(head_score_fn(res.head, feats)(triples), head_score_fn(head2, feats)(triples), atol=1e-6)
    assert cfg["threshold"]["threshold"] == 0.5 and cfg["backbone"]["name"] == "planted"


def test_nan_loss_raises_and_returns_no_model(planted):
    """Absurd label weights overflow float32: the loss becomes NaN and training must stop loudly."""
    import dataclasses

    feats, _, train, val = planted
    huge = [dataclasses.replace(e, weight=3e38) for e in train]
    with pytest.raises(TrainingDiverged, match="diverged.*loss is nan.*no model"):
        train_reward_head(huge, val, TrainConfig(**FAST), features=feats)


def test_exploding_learning_rate_raises_training_diverged(planted):
    feats, _, train, val = planted
    with pytest.raises(TrainingDiverged, match="diverged"):
        train_reward_head(train, val, TrainConfig(**{**FAST, "lr": 1e30, "grad_clip": None, "max_epochs": 5}),
                          features=feats)


def test_nan_features_are_refused_with_the_image_named(planted):
    feats, _, train, val = planted
    bad = dict(feats)
    key = train[0].original
    bad[key] = np.full_like(feats[key], np.nan)
    with pytest.raises(ValueError, match=key):
        train_reward_head(train, val, TrainConfig(**FAST), features=bad)


def test_products_with_a_single_generation_and_mixed_label_kinds(planted):
    """Products with one generation only have single-image labels (no pairs): they still train,
    and validation made only of such products reports pairwise accuracy as undefined."""
    feats, labels, _, _ = planted
    singles_only = {}
    for ex in labels:
        if isinstance(ex, SingleLabel) and ex.product_id not in singles_only:
            singles_only[ex.product_id] = ex  # first generation of each product only
    one_gen = list(singles_only.values())
    pairs = [ex for ex in labels if isinstance(ex, PairwiseLabel) and ex.product_id in ("p0", "p1", "p2", "p3")]
    tie = [PairwiseLabel("p0", pairs[0].original, pairs[0].image_a, pairs[0].image_b, "tie", weight=0.5),
           PairwiseLabel("p1", pairs[6].original, pairs[6].image_a, pairs[6].image_b, "both_bad")]
    train = pairs + tie + [e for e in one_gen if e.product_id not in ("p14", "p15")]
    val = [e for e in one_gen if e.product_id in ("p14", "p15")]
    res = train_reward_head(train, val, TrainConfig(**{**FAST, "max_epochs": 5}), features=feats)
    m = evaluate_with_baselines(res.head, val, feats)
    assert m["pairwise_accuracy"] is None and m["n_pairs"] == 0
    assert all(torch.isfinite(p).all() for p in res.head.state_dict().values())
