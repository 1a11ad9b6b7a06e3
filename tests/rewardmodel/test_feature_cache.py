import numpy as np
import pytest

from rewardmodel.ml import BlipBackbone, FeatureCache
from rewardmodel.ml.cache import text_key
from rewardmodel.ml.data import image_key


def test_cache_computes_once_survives_corruption_and_separates_backbones(tiny_blip_dir, tmp_path):
    bb = BlipBackbone(str(tiny_blip_dir))
    rng = np.random.default_rng(0)
    imgs = {}
    for i in range(5):
        im = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
        imgs[image_key(im)] = im
    calls = []

    def load(k):
        calls.append(k)
        return imgs[k]

    cache = FeatureCache(tmp_path / "c")
    first = cache.image_features(bb, list(imgs), load, batch_size=2)
    assert len(calls) == 5
    again = FeatureCache(tmp_path / "c").image_features(bb, list(imgs), load)  # a new process, same folder
    assert len(calls) == 5
    for k in imgs:
        np.testing.assert_array_equal(first[k], again[k])
        np.testing.assert_allclose(first[k], bb.encode_images([imgs[k]])[0], atol=1e-5)
    # a truncated file (killed worker) is recomputed, not a crash
    victim = next(iter(imgs))
    cache._path(bb.name, victim).write_bytes(b"\x93NUMPY garbage")
    cache.image_features(bb, list(imgs), load)
    assert calls[5:] == [victim]
    # features of another backbone are never mixed in
    assert cache.get(bb.name + "-other", victim) is None
    # text features (BLIP) are cached by prompt
    t = cache.text_features(bb, ["fruit", "fruit", "vase"])
    assert set(t) == {text_key("A photo of fruit"), text_key("A photo of vase")}
    with pytest.raises(ValueError, match="bad feature-cache key"):
        cache.get(bb.name, "../../etc/passwd")
