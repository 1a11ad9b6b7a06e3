"""Label sets for tests: planted-signal random features, and constructed pairs from real photos."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rewardmodel.ml import PairwiseLabel, SingleLabel

REPO = Path(__file__).resolve().parents[2]


def planted_features(n_products=12, gens_per_product=4, dim=32, seed=0, noise=0.3):
    """Random unit features where a hidden direction decides quality; labels follow it exactly."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    w /= np.linalg.norm(w)
    feats, labels = {}, []
    for p in range(n_products):
        o = f"orig{p:04d}xxxx"
        feats[o] = rng.normal(size=dim).astype(np.float32)
        gens = []
        for g in range(gens_per_product):
            k = f"gen{p:04d}{g:04d}"
            q = rng.uniform(-1, 1)
            f = noise * rng.normal(size=dim) + 2.0 * q * w
            feats[k] = (f / np.linalg.norm(f)).astype(np.float32)
            gens.append((k, q))
            labels.append(SingleLabel(f"p{p}", o, k, appropriate=bool(q > 0)))
        for i in range(len(gens)):
            for j in range(i + 1, len(gens)):
                (ka, qa), (kb, qb) = gens[i], gens[j]
                labels.append(PairwiseLabel(f"p{p}", o, ka, kb, "a" if qa > qb else "b"))
    for k in feats:
        feats[k] = (feats[k] / np.linalg.norm(feats[k])).astype(np.float32)
    return feats, labels


def constructed_dataset(stages_per_product=4, size=160, seed=0):
    """Good vs clearly worse composites of the sample_data products (constructed, not human labels).

    Returns (images: key -> RGB, labels, held-out-able product ids)."""
    from core.ml.images import load_rgb
    from rewardmodel.ml.synthetic import DEFECTS, make_pair, white_cutout

    root = REPO / "sample_data"
    man = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    products = [m for m in man if m["kind"] == "product_plain"]
    stages = [load_rgb(root / m["file"]) for m in man if m["kind"] == "stage"]
    clutter = [load_rgb(root / m["file"]) for m in man if m["kind"] == "product_in_store"]
    rng = np.random.default_rng(seed)
    images, labels = {}, []
    n = 0
    for pi, m in enumerate(products):
        prod = load_rgb(root / m["file"])
        alpha = white_cutout(prod, convex=m["category"] == "packages")
        pid = Path(m["file"]).stem
        okey = f"orig-{pid}"
        images[okey] = prod
        for s in range(stages_per_product):
            stage = stages[(pi * stages_per_product + s) % len(stages)]
            defect = DEFECTS[n % len(DEFECTS)]
            n += 1
            pair = make_pair(prod, alpha, stage, clutter[(pi + 1 + s) % len(clutter)], defect, rng, size=size)
            gk, bk = f"good-{pid}-{s}", f"bad-{pid}-{s}"
            images[gk], images[bk] = pair.good, pair.bad
            if s % 2:
                labels.append(PairwiseLabel(pid, okey, gk, bk, "a", m["category"]))
            else:
                labels.append(PairwiseLabel(pid, okey, bk, gk, "b", m["category"]))
            labels.append(SingleLabel(pid, okey, gk, True, m["category"]))
            labels.append(SingleLabel(pid, okey, bk, False, m["category"]))
    return images, labels
