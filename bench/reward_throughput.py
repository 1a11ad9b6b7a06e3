"""Scoring throughput and memory of the default reward backbone (EfficientNet-Lite0) on CPU.

Times RewardScorer.score_batch end to end (resize + backbone + head) on real staged photos
(already decoded; JPEG decoding is not included), batched, for a set of input sizes.
A freshly initialised head is used: head cost is negligible next to the backbone and does not
depend on its weights.

    .venv/bin/python bench/reward_throughput.py [--quick] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from reward_common import Timer, data_root, load_note, manifest, peak_rss_mb, set_threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = set_threads(args.threads)
    rss0 = peak_rss_mb()

    from core.ml.embeddings import EfficientNetLiteEncoder
    from core.ml.images import load_rgb
    from rewardmodel.ml import EfficientNetBackbone, HeadConfig, RewardHead, RewardScorer, save_artifact

    root = data_root()
    man = manifest(root)
    staged = [load_rgb(root / m["file"]) for m in man if m["kind"] == "staged"][:32]
    originals = [load_rgb(root / m["file"]) for m in man if m["kind"] == "product_plain"][:8]
    n = 32 if args.quick else 64
    gens = [staged[i % len(staged)] for i in range(n)]
    origs = [originals[i % len(originals)] for i in range(n)]  # 8 distinct originals, encoded once each
    print(f"data: {root}; torch threads: {threads}; {n} generated images per run ({gens[0].shape[1]}x{gens[0].shape[0]} px source)")

    for size in (224, 299):
        enc = EfficientNetLiteEncoder("lite0", image_size=size)
        bb = EfficientNetBackbone(enc)
        with tempfile.TemporaryDirectory() as d:
            save_artifact(d, RewardHead(HeadConfig(image_dim=bb.image_dim)), bb.spec)
            scorer = RewardScorer.load(d, backbone=bb)
        scorer.score_batch(origs[:2], gens[:2])  # warm-up
        for bs in (1, 16):
            with Timer() as t:
                scores = scorer.score_batch(origs, gens, batch_size=bs)
            assert np.isfinite(scores).all()
            print(f"input {size} px, batch {bs:2d}: {n / t.seconds:5.1f} generated images/s wall "
                  f"({1000 * t.seconds / n:.0f} ms each, incl. 8 originals); {1000 * t.cpu_seconds / n:.0f} CPU-ms each "
                  f"= {n / max(t.cpu_seconds, 1e-9) * threads:.1f} img/s if {threads} cores were free", flush=True)
        with Timer() as t:
            scorer.score(origs[0], gens[0])
        print(f"input {size} px, single score() call: {1000 * t.seconds:.0f} ms")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (process with torch imported and two encoders loaded; "
          f"{rss0:.0f} MB before imports); {load_note()}")


if __name__ == "__main__":
    main()
