"""Shared helpers for the reward-model benchmarks (data root, constructed pairs, timing)."""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"


def data_root() -> Path:
    shared = Path("/work/shared/data")
    return shared if (shared / "manifest.jsonl").is_file() else ROOT / "sample_data"


def manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Wall-clock seconds and process CPU seconds (all threads) of a block."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def set_threads(n: int | None):
    import torch

    n = n or min(2, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def constructed_pairs(n_pairs: int, bads_per_good: int = 2, size: int = 256, seed: int = 0, root: Path | None = None):
    """Constructed (NOT human) pairs from real photos: good composite vs one with a clear defect.

    Yields dicts: product_id, category, original (RGB), good (RGB), bad (RGB), defect. Products are
    visited round-robin so every product gets about the same number of pairs.
    """
    from core.ml.images import load_rgb
    from rewardmodel.ml.synthetic import DEFECTS, fit_scene, make_pair, white_cutout

    root = root or data_root()
    man = manifest(root)
    products = [m for m in man if m["kind"] == "product_plain"]
    def fitted(m):
        return fit_scene(load_rgb(root / m["file"]), size).astype(np.uint8)

    stages = [fitted(m) for m in man if m["kind"] == "stage"]
    clutter = [fitted(m) for m in man if m["kind"] == "product_in_store"]
    rng = np.random.default_rng(seed)
    cut = {}
    n, k = 0, 0
    while n < n_pairs:
        m = products[k % len(products)]
        pid = Path(m["file"]).stem
        if pid not in cut:
            prod = load_rgb(root / m["file"])
            cut[pid] = (prod, white_cutout(prod, convex=m.get("category") == "packages"))
        prod, alpha = cut[pid]
        stage = stages[int(rng.integers(len(stages)))]
        group_seed = int(rng.integers(1 << 31))
        defects = rng.choice(len(DEFECTS), size=min(bads_per_good, len(DEFECTS)), replace=False)
        for d in defects:
            if n >= n_pairs:
                break
            defect = DEFECTS[int(d)]
            scene_clutter = clutter[int(rng.integers(len(clutter)))]
            # the same seed gives the same placement, so the group's good image is identical
            pair = make_pair(prod, alpha, stage, scene_clutter, defect, np.random.default_rng(group_seed), size=size)
            yield {"product_id": pid, "category": m.get("category", ""), "original": prod,
                   "good_key": f"good-{pid}-{k}", "bad_key": f"bad-{pid}-{k}-{defect}",
                   "good": pair.good, "bad": pair.bad, "defect": defect}
            n += 1
        k += 1


def learning_set(max_train: int, n_val: int, root: Path | None = None) -> dict:
    """The learning benches' data: constructed (NOT human) pairs, split 80/20 by product, enough for
    ``max_train`` training pairs and ``n_val`` held-out pairs.

    Returns images (key -> RGB), labels, defect_of (label -> defect), aesthetic (key -> proxy),
    train (the training pool, in a fixed random order: the first N pairs are the N-pair set) and
    val (at most ``n_val`` held-out pairs of products never trained on)."""
    from rewardmodel.ml import PairwiseLabel, aesthetic_proxy, split_by_product

    # the split is by whole products, so the training side can fall a little short of 80 %
    n_pairs = max(int(max_train / 0.75), int((max_train + n_val) * 1.05))
    images, labels, defect_of, aesthetic = {}, [], {}, {}
    for rec in constructed_pairs(n_pairs, bads_per_good=2, size=256, seed=0, root=root):
        okey = "orig-" + rec["product_id"]
        images.setdefault(okey, rec["original"])
        for kk, img in ((rec["good_key"], rec["good"]), (rec["bad_key"], rec["bad"])):
            if kk not in images:
                images[kk] = img
                aesthetic[kk] = aesthetic_proxy(img)
        # alternate which side is A so "A better" is not a shortcut
        if len(labels) % 2:
            lab = PairwiseLabel(rec["product_id"], okey, rec["good_key"], rec["bad_key"], "a", rec["category"])
        else:
            lab = PairwiseLabel(rec["product_id"], okey, rec["bad_key"], rec["good_key"], "b", rec["category"])
        labels.append(lab)
        defect_of[lab] = rec["defect"]
    train_all, val = split_by_product(labels, 0.2, seed=0)
    order = np.random.default_rng(0).permutation(len(train_all))
    return {"images": images, "labels": labels, "defect_of": defect_of, "aesthetic": aesthetic,
            "train": [train_all[i] for i in order], "val": val[:n_val]}


def cached_features(images: dict, keys, image_size: int = 224) -> dict:
    """EfficientNet-Lite0 features of ``images[k]`` for ``keys`` through the bench's feature cache
    (keyed by content hash, so a rerun encodes nothing)."""
    from core.ml.embeddings import EfficientNetLiteEncoder
    from rewardmodel.ml import EfficientNetBackbone, FeatureCache
    from rewardmodel.ml.data import image_key

    backbone = EfficientNetBackbone(EfficientNetLiteEncoder("lite0", image_size=image_size))
    key_of = {k: image_key(images[k]) for k in dict.fromkeys(keys)}
    by_hash = FeatureCache(OUT / "reward_feature_cache").image_features(
        backbone, list(key_of.values()), {h: images[k] for k, h in key_of.items()}.__getitem__, batch_size=16,
        progress=lambda d, n, m: print(f"  {image_size} px: {m}", flush=True) if d % 800 < 16 or d == n else None,
    )
    return {k: by_hash[h] for k, h in key_of.items()}
