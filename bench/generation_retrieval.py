"""Catalog retrieval latency: top-10 over N catalog vectors (default 100k, 1280-d like the shared
EfficientNet-Lite0 encoder), exact flat vs IVF (what `CatalogIndex` switches to above 50k
entries), unfiltered, with a category filter, and with silhouette-fit re-ranking.

The vectors are synthetic but clustered (200 clusters, like product families) so IVF recall is
meaningful; uniformly random vectors would make any approximate index look worse than it is.

    .venv/bin/python bench/generation_retrieval.py            # 100k, 1 thread
    .venv/bin/python bench/generation_retrieval.py --n 20000 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--categories", type=int, default=20)
    ap.add_argument("--json", type=str, default="")
    args = ap.parse_args()

    import faiss

    from generation.ml.retrieval import IVF_THRESHOLD, CatalogIndex

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, args.dim)).astype(np.float32)
    labels = rng.integers(0, 200, args.n)
    x = centres[labels] + 0.7 * rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cats = [f"cat{labels[i] % args.categories}" for i in range(args.n)]
    ids = [f"item{i}" for i in range(args.n)]
    # product masks: a few shapes (tall, wide, round) at scene size 64
    shapes = []
    for w, h in ((20, 56), (56, 24), (40, 40), (30, 44)):
        m = np.zeros((64, 64), bool)
        m[64 - h :, (64 - w) // 2 : (64 + w) // 2] = True
        shapes.append(m)
    masks = [shapes[i % len(shapes)] for i in range(args.n)]
    qi = rng.integers(0, args.n, args.queries)
    q = x[qi] + 0.15 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    qmask = shapes[0]

    t = time.perf_counter()
    import generation.ml.retrieval as r

    saved, r.IVF_THRESHOLD = r.IVF_THRESHOLD, 10**12  # build flat first
    index = CatalogIndex(dim=args.dim)
    for s in range(0, args.n, 20_000):
        index.add(ids[s : s + 20_000], cats[s : s + 20_000], x[s : s + 20_000], masks[s : s + 20_000])
    r.IVF_THRESHOLD = saved
    build_s = time.perf_counter() - t

    def timed(fn):
        fn(0)  # warm
        ts, cs, outs = [], [], []
        for i in range(args.queries):
            t0, c0 = time.perf_counter(), time.process_time()
            outs.append(fn(i))
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        ts, cs = np.array(ts) * 1000, np.array(cs) * 1000
        return {
            "wall_median_ms": round(float(np.median(ts)), 2),
            "wall_p95_ms": round(float(np.percentile(ts, 95)), 2),
            "cpu_median_ms": round(float(np.median(cs)), 2),
            "cpu_p95_ms": round(float(np.percentile(cs, 95)), 2),
        }, outs

    results = {"n": args.n, "dim": args.dim, "threads": args.threads, "build_flat_s": round(build_s, 1)}
    results["flat_top10"], exact = timed(lambda i: [h.item_id for h in index.search(q[i], k=10).hits])
    results["flat_top10_category"], _ = timed(lambda i: index.search(q[i], k=10, category=cats[qi[i]]))
    results["flat_top10_fit_rerank"], _ = timed(lambda i: index.search(q[i], k=10, query_mask=qmask))
    t = time.perf_counter()
    index.use_ivf()
    results["ivf_train_add_s"] = round(time.perf_counter() - t, 1)
    results["ivf_nlist"] = int(faiss.extract_index_ivf(index._index).nlist)
    for nprobe in (4, 8, 16, 32):
        index.nprobe = nprobe
        stats, got = timed(lambda i: [h.item_id for h in index.search(q[i], k=10).hits])
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got)]))
        results[f"ivf_top10_nprobe{nprobe}"] = {**stats, "recall@10_vs_exact": round(recall, 4)}
    index.nprobe = 16
    results["ivf_top10_category"], _ = timed(lambda i: index.search(q[i], k=10, category=cats[qi[i]]))
    results["ivf_top10_fit_rerank"], _ = timed(lambda i: index.search(q[i], k=10, query_mask=qmask))
    results["ivf_threshold"] = IVF_THRESHOLD
    results["loadavg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
