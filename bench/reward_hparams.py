"""Which head hyperparameters? The same settings on a demo-sized label set and on larger constructed sets.

CONSTRUCTED LABELS, NOT HUMAN ONES (see bench/reward_learning.py for how they are made).

* demo: the label set of the platform tests and the demo (the 8 sample_data products, 4 stagings
  each, good vs one defect: one pair label and two image labels per staging; the last product has
  one generation with two image labels only: 86 labels). Leave-one-product-out: every product is
  held out once, the head is trained on the others (20 % of them held back for early stopping, as
  the platform does) and its pairs are scored; pairwise accuracy pooled over the 28 held-out pairs
  (mean over seeds); ROC-AUC of the image labels, mean over folds.
* N pairs: the first N training pairs of bench/reward_learning.py (shared photos, products split
  80/20), scored on the same held-out pairs of unseen products.

    .venv/bin/python bench/reward_hparams.py --threads 1 --sizes 100,300,1000
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from reward_common import OUT, ROOT, cached_features, data_root, learning_set, load_note, set_threads

# name: (TrainConfig overrides, backbone input size)
SETTINGS = {
    "old default [256,64] b256 lr1e-3 p8": ({"hidden": [256, 64], "batch_size": 256, "lr": 1e-3, "patience": 8}, 224),
    "old default @128px": ({"hidden": [256, 64], "batch_size": 256, "lr": 1e-3, "patience": 8}, 128),
    "test FAST [64] b64 lr2e-3 p6 @128px": ({"hidden": [64], "batch_size": 64, "lr": 2e-3, "patience": 6,
                                              "max_epochs": 40}, 128),
    "[64] b64 lr2e-3 p6": ({"hidden": [64], "batch_size": 64, "lr": 2e-3, "patience": 6, "max_epochs": 40}, 224),
    "[256,64] b32 lr1e-3 p8": ({"hidden": [256, 64], "batch_size": 32, "lr": 1e-3, "patience": 8}, 224),
    "[64] b32 lr1e-3 p10": ({"hidden": [64], "batch_size": 32, "lr": 1e-3, "patience": 10}, 224),
    "[64] b32 lr1e-3 p10 wd1e-2": ({"hidden": [64], "batch_size": 32, "lr": 1e-3, "patience": 10,
                                    "weight_decay": 1e-2}, 224),
    "[32] b32 lr1e-3 p10 drop0.2": ({"hidden": [32], "batch_size": 32, "lr": 1e-3, "patience": 10,
                                     "dropout": 0.2}, 224),
    "[256,64] b32 lr3e-4 p10": ({"hidden": [256, 64], "batch_size": 32, "lr": 3e-4, "patience": 10}, 224),
    "defaults": ({}, 224),
}


def demo_labels():
    """The platform tests' 86 labels (tests/rewardmodel/test_django_data.build_labelled_project) as ML records."""
    from rewardmodel.ml import PairwiseLabel, SingleLabel
    from tests.rewardmodel.helpers import constructed_dataset

    images, labels = constructed_dataset(stages_per_product=4, size=160, seed=0)
    last = labels[-1].product_id
    kept = [ex for ex in labels if ex.product_id != last]
    first_good = next(ex for ex in labels if ex.product_id == last and isinstance(ex, SingleLabel) and ex.appropriate)
    kept += [first_good, first_good]  # one generation, an annotator's and a QA label
    assert len(kept) == 86 and sum(isinstance(ex, PairwiseLabel) for ex in kept) == 28
    return images, kept


def leave_one_product_out(labels, features, cfg_kwargs, seeds):
    from rewardmodel.ml import TrainConfig, evaluate_examples, head_score_fn, split_by_product, train_reward_head

    products = sorted({ex.product_id for ex in labels})
    correct = n_pairs = 0.0
    aucs, epochs = [], []
    for seed in range(seeds):
        for p in products:
            rest = [ex for ex in labels if ex.product_id != p]
            test = [ex for ex in labels if ex.product_id == p]
            tr, es = split_by_product(rest, 0.2, seed=seed)
            res = train_reward_head(tr, es, TrainConfig(**{**cfg_kwargs, "seed": seed, "min_labels": 10}),
                                    features=features)
            epochs.append(res.best_epoch)
            m = evaluate_examples(head_score_fn(res.head, features), test)
            if m["n_pairs"]:
                correct += m["pairwise_accuracy"] * m["n_pairs"]
                n_pairs += m["n_pairs"]
            if m["roc_auc"] is not None:
                aucs.append(m["roc_auc"])
    return {"pairwise_accuracy": correct / n_pairs, "roc_auc": float(np.mean(aucs)), "best_epoch": float(np.mean(epochs))}


def held_out(train, val, features, cfg_kwargs, seeds):
    from rewardmodel.ml import TrainConfig, evaluate_examples, head_score_fn, split_by_product, train_reward_head

    tr, es = split_by_product(train, 0.15, seed=1)
    accs, epochs = [], []
    for seed in range(seeds):
        res = train_reward_head(tr, es, TrainConfig(**{**cfg_kwargs, "seed": seed, "min_labels": 50}), features=features)
        accs.append(evaluate_examples(head_score_fn(res.head, features), val)["pairwise_accuracy"])
        epochs.append(res.best_epoch)
    return {"pairwise_accuracy": float(np.mean(accs)), "best_epoch": float(np.mean(epochs))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--sizes", default="100,300,1000", help="training pairs of the larger sets")
    ap.add_argument("--val", type=int, default=600, help="held-out pairs of the larger sets")
    ap.add_argument("--only", default=None, help="setting names separated by ; (default: all)")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    from rewardmodel.ml import cosine_score_fn, evaluate_examples

    sizes = [int(x) for x in args.sizes.split(",") if x]
    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only.split(";")}
    print(f"threads {threads}; {load_note()}")
    demo_images, demo = demo_labels()
    big = learning_set(max(sizes), args.val, data_root()) if sizes else None
    feats: dict[int, tuple[dict, dict]] = {}
    for px in sorted({px for _, px in settings.values()}):
        d = cached_features(demo_images, list(demo_images), px)
        b = {}
        if big:
            keys = [k for ex in big["train"][:max(sizes)] + big["val"] for k in (ex.original, ex.image_a, ex.image_b)]
            b = cached_features(big["images"], keys, px)
        feats[px] = (d, b)
    d224, b224 = feats.get(224, next(iter(feats.values())))
    cosine = {"demo": evaluate_examples(cosine_score_fn(d224), demo)["pairwise_accuracy"]}
    if big:
        cosine["big"] = evaluate_examples(cosine_score_fn(b224), big["val"])["pairwise_accuracy"]
    print("cosine baseline: " + ", ".join(f"{k} {v:.3f}" for k, v in cosine.items()))
    header = f"{'setting':40s} | demo LOPO acc | demo AUC | " + " | ".join(f"N={n}" for n in sizes)
    print(header)
    rows = []
    for name, (cfg, px) in settings.items():
        t0 = time.perf_counter()
        d, b = feats[px]
        row = {"setting": name, "config": cfg, "image_size": px, "demo": leave_one_product_out(demo, d, cfg, args.seeds)}
        for n in sizes:
            row[f"n{n}"] = held_out(big["train"][:n], big["val"], b, cfg, args.seeds)
        rows.append(row)
        print(f"{name:40s} | {row['demo']['pairwise_accuracy']:.3f} (ep {row['demo']['best_epoch']:.0f}) | "
              f"{row['demo']['roc_auc']:.3f} | "
              + " | ".join(f"{row[f'n{n}']['pairwise_accuracy']:.3f} (ep {row[f'n{n}']['best_epoch']:.0f})" for n in sizes)
              + f"   [{time.perf_counter() - t0:.0f} s]", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reward_hparams.json").write_text(json.dumps({"constructed_labels": True, "cosine": cosine,
                                                          "rows": rows, "root": str(ROOT)}, indent=2))


if __name__ == "__main__":
    main()
