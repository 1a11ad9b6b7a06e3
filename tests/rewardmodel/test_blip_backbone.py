"""The published-weights path (BLIP via transformers) on a tiny random BLIP saved to a local folder:
same loading code as for Salesforce/blip-itm-*, same training and scoring path as the default."""
import numpy as np
import pytest

from rewardmodel.ml import (
    BLIP_ENV_VAR,
    BlipBackbone,
    PairwiseLabel,
    RewardScorer,
    SingleLabel,
    TrainConfig,
    load_backbone,
    train_and_evaluate,
)


def _images(n_products=16, gens=3, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = {}, []
    for p in range(n_products):
        o = f"orig-{p:03d}"
        images[o] = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
        keys = []
        for g in range(gens):
            k = f"gen-{p:03d}-{g}"
            good = g % 2 == 0
            base = np.full((40, 48, 3), (200, 180, 160) if good else (20, 200, 30), np.uint8)
            images[k] = np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)
            keys.append((k, good))
            labels.append(SingleLabel(f"p{p}", o, k, good, category=["fruit", "vase"][p % 2]))
        labels.append(PairwiseLabel(f"p{p}", o, keys[0][0], keys[1][0], "a", category=["fruit", "vase"][p % 2]))
        labels.append(PairwiseLabel(f"p{p}", o, keys[1][0], keys[2][0], "b", category=["fruit", "vase"][p % 2]))
    return images, labels


def test_blip_backbone_features(tiny_blip_dir):
    bb = BlipBackbone(str(tiny_blip_dir))
    assert bb.image_dim == bb.text_dim == 16 and bb.name.startswith("blip-BlipForImageTextRetrieval@")
    imgs = [np.random.default_rng(i).integers(0, 255, (50, 70, 3), dtype=np.uint8) for i in range(3)]
    f = bb.encode_images(imgs, batch_size=2)
    assert f.shape == (3, 16) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(bb.encode_images(imgs[:1]), f[:1], atol=1e-5)  # batching does not change features
    t = bb.encode_texts(["A photo of fruit", "A photo of vase"])
    assert t.shape == (2, 16) and not np.allclose(t[0], t[1])


def test_blipmodel_checkpoints_load_too(tmp_path):
    from tests.rewardmodel.tiny_blip import write_tiny_blip

    bb = BlipBackbone(str(write_tiny_blip(tmp_path / "blipmodel", arch="BlipModel")))
    assert bb.arch == "BlipModel"
    assert bb.encode_images([np.zeros((32, 32, 3), np.uint8)]).shape == (1, 16)
    assert bb.encode_texts(["A photo of can"]).shape == (1, 16)


def test_blip_train_and_score_through_the_same_path(tiny_blip_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(BLIP_ENV_VAR, raising=False)
    images, labels = _images()
    bb = load_backbone(f"blip:{tiny_blip_dir}")
    run = train_and_evaluate(
        labels, images.__getitem__, output_dir=tmp_path / "art", cache_dir=tmp_path / "cache", backbone=bb,
        config=TrainConfig(hidden=[16], max_epochs=8, patience=3, batch_size=32, lr=3e-3, min_labels=20),
    )
    assert run.train.head.config.text_dim == 16  # the category prompt is used with BLIP
    assert run.metrics["n_pairs"] > 0
    scorer = RewardScorer.load(run.artifact_dir)  # rebuilds BLIP from the stored spec
    assert isinstance(scorer.backbone, BlipBackbone) and scorer.backbone.name == bb.name
    e = labels[0]
    s = scorer.score(images[e.original], images[e.generated], e.category)
    assert 0.0 <= s <= 1.0
    b = scorer.score_batch([images[e.original]] * 2, [images[e.generated]] * 2, [e.category, "vase"])
    assert b[0] == pytest.approx(s, abs=1e-5)


def test_env_var_selects_blip_and_missing_weights_are_a_clear_error(tiny_blip_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(BLIP_ENV_VAR, str(tiny_blip_dir))
    assert isinstance(load_backbone(None), BlipBackbone)
    monkeypatch.setenv(BLIP_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=BLIP_ENV_VAR):
        load_backbone(None)
    monkeypatch.delenv(BLIP_ENV_VAR)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_backbone("blip:Salesforce/blip-itm-base-coco-not-in-cache")
