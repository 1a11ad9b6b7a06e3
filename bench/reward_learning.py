"""Does the reward head learn? Constructed pairs from real photos, held-out products.

CONSTRUCTED LABELS, NOT HUMAN ONES: a product cut out from its white-background photo is
composited onto an empty stage with a contact shadow (good) and again with one clear defect
(bad): mismatched cluttered in-store background, white halo, wrong scale, floating without a
shadow, or a strong colour cast. The figures say the training path learns such defects from
N pairs; they say nothing about agreement with annotators.

Products are split 80/20 (no product in both); the head is trained on the first N training
pairs (N = 100, 300, 1000, 3000) and every model is scored on the same held-out pairs, next to
the cosine-similarity and aesthetic-proxy baselines.

    .venv/bin/python bench/reward_learning.py            # full (about 5k images to encode)
    .venv/bin/python bench/reward_learning.py --quick    # sizes up to 1000
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from reward_common import OUT, Timer, cached_features, data_root, learning_set, load_note, peak_rss_mb, set_threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds averaged per size")
    ap.add_argument("--sizes", default=None, help="comma-separated training sizes (pairs), e.g. 100,300,600")
    ap.add_argument("--val", type=int, default=None, help="held-out pairs")
    args = ap.parse_args()
    threads = set_threads(args.threads)

    from rewardmodel.ml import (
        TrainConfig,
        cosine_score_fn,
        evaluate_examples,
        head_score_fn,
        split_by_product,
        train_reward_head,
    )

    sizes = [100, 300, 1000] if args.quick else [100, 300, 1000, 3000]
    n_val_target = 300 if args.quick else 600
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    if args.val:
        n_val_target = args.val
    root = data_root()
    print(f"data: {root}; threads: {threads}; {load_note()}")

    with Timer() as t_build:
        data = learning_set(max(sizes), n_val_target, root)
    images, defect_of, aesthetic, train_all, val = (data[k] for k in ("images", "defect_of", "aesthetic", "train", "val"))
    print(f"built {len(data['labels'])} pairs, {len(images)} images in {t_build.seconds:.0f} s")
    with Timer() as t_enc:
        feats = cached_features(images, list(images))
    print(f"features: {len(feats)} images in {t_enc.seconds:.0f} s ({len(feats) / max(t_enc.seconds, 1e-9):.1f} img/s incl. cache hits)")
    print(f"train pool {len(train_all)} pairs; held-out {len(val)} pairs from {len({e.product_id for e in val})} products")
    cos = evaluate_examples(cosine_score_fn(feats), val)["pairwise_accuracy"]
    aes = evaluate_examples(lambda tr: np.array([aesthetic[g] for _, g, _ in tr]), val)["pairwise_accuracy"]
    results = []
    for n in sizes:
        if n > len(train_all):
            print(f"skip N={n}: only {len(train_all)} training pairs")
            continue
        subset = train_all[:n]
        # early stopping needs its own held-out set: hold out 15 % of the training *products*
        tr, es = split_by_product(subset, 0.15, seed=1)
        accs, per_defect = [], defaultdict(list)
        with Timer() as t_train:
            for seed in range(args.seeds):
                res = train_reward_head(tr, es, TrainConfig(seed=seed, min_labels=50, batch_size=128, lr=1e-3), features=feats)
                fn = head_score_fn(res.head, feats)
                accs.append(evaluate_examples(fn, val)["pairwise_accuracy"])
                for d in sorted(set(defect_of.values())):
                    sub = [e for e in val if defect_of[e] == d]
                    per_defect[d].append(evaluate_examples(fn, sub)["pairwise_accuracy"])
        row = {"n_train_pairs": n, "pairwise_accuracy_mean": float(np.mean(accs)), "pairwise_accuracy_min": float(np.min(accs)),
               "per_defect": {d: float(np.mean(v)) for d, v in per_defect.items()}, "train_seconds_per_seed": t_train.seconds / args.seeds}
        results.append(row)
        print(f"N={n:5d}  held-out pairwise acc {row['pairwise_accuracy_mean']:.3f} (min over {args.seeds} seeds "
              f"{row['pairwise_accuracy_min']:.3f})  train {row['train_seconds_per_seed']:.1f} s/seed  per defect: "
              + ", ".join(f"{d} {v:.2f}" for d, v in row["per_defect"].items()), flush=True)
    per_defect_cos = {d: evaluate_examples(cosine_score_fn(feats), [e for e in val if defect_of[e] == d])["pairwise_accuracy"]
                      for d in sorted(set(defect_of.values()))}
    print(f"baselines on the same held-out pairs: cosine {cos:.3f}, aesthetic proxy {aes:.3f}")
    print("cosine per defect: " + ", ".join(f"{d} {v:.2f}" for d, v in per_defect_cos.items()))
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reward_learning.json").write_text(json.dumps({
        "constructed_labels": True, "data_root": str(root), "n_val_pairs": len(val), "cosine": cos, "aesthetic_proxy": aes,
        "cosine_per_defect": per_defect_cos, "results": results}, indent=2))


if __name__ == "__main__":
    main()
