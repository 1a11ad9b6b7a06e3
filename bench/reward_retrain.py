"""Retraining the fusion head from cached features: 10k pairs, CPU.

Features are 1280-d unit vectors (the EfficientNet-Lite0 size) with a planted quality direction
(so training behaves like a real run rather than stopping at once), written to a FeatureCache on
disk first; the timed part is what a retraining job does: read every feature from the cache and
train. Reported twice: with the default early stopping, and forced to the full max_epochs
(worst case).

    .venv/bin/python bench/reward_retrain.py [--pairs 10000] [--quick]
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile

import numpy as np

from reward_common import Timer, load_note, peak_rss_mb, set_threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="2k pairs")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--worst-case", action="store_true", help="also train the full max_epochs without early stopping")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    n_pairs = 2000 if args.quick else args.pairs

    from rewardmodel.ml import FeatureCache, PairwiseLabel, TrainConfig, evaluate_examples, head_score_fn, split_by_product, train_reward_head
    from rewardmodel.ml.data import all_image_keys

    rng = np.random.default_rng(0)
    dim, gens_per_product = 1280, 6
    w = rng.normal(size=dim)
    w /= np.linalg.norm(w)
    labels, feats = [], {}
    backbone_name = "bench-planted-1280"
    p = 0
    while len(labels) < n_pairs:
        o = hashlib.sha256(f"o{p}".encode()).hexdigest()
        feats[o] = rng.normal(size=dim)
        gens = []
        for g in range(gens_per_product):
            k = hashlib.sha256(f"g{p}-{g}".encode()).hexdigest()
            q = rng.uniform(-1, 1)
            feats[k] = rng.normal(size=dim) + 12.0 * q * w
            gens.append((k, q))
        for i in range(gens_per_product):
            for j in range(i + 1, gens_per_product):
                if len(labels) >= n_pairs:
                    break
                (ka, qa), (kb, qb) = gens[i], gens[j]
                labels.append(PairwiseLabel(f"p{p}", o, ka, kb, "a" if qa > qb else "b"))
        p += 1
    keys = all_image_keys(labels)
    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(d)
        for k in keys:
            cache.put(backbone_name, k, feats[k] / np.linalg.norm(feats[k]))
        print(f"{len(labels)} pairs over {p} products, {len(keys)} cached features; torch threads {threads}")
        with Timer() as t_read:
            loaded = {k: cache.get(backbone_name, k) for k in keys}
        print(f"read {len(loaded)} features from the on-disk cache: {t_read.seconds:.1f} s")
        train, val = split_by_product(labels, 0.1, seed=0)
        runs = [("default early stopping", TrainConfig())]
        if args.worst_case:
            runs.append(("full max_epochs (worst case)", TrainConfig(patience=10_000)))
        for label, cfg in runs:
            with Timer() as t:
                res = train_reward_head(train, val, cfg, features=loaded)
            acc = evaluate_examples(head_score_fn(res.head, loaded), val)["pairwise_accuracy"]
            print(f"{label}: {t.seconds:.1f} s wall / {t.cpu_seconds:.1f} s CPU train ({res.epochs_run} epochs, best {res.best_epoch}, "
                  f"{t.seconds / res.epochs_run:.2f} s/epoch), total with cache read {t.seconds + t_read.seconds:.1f} s; "
                  f"held-out pairwise acc {acc:.3f}; full {cfg.max_epochs} epochs would take about "
                  f"{cfg.max_epochs * t.cpu_seconds / res.epochs_run:.0f} CPU s", flush=True)
    print(f"peak RSS {peak_rss_mb():.0f} MB; {load_note()}")


if __name__ == "__main__":
    main()
