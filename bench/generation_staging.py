"""Copy-paste staging cost per 512² candidate on one core (after model load), memory peak, and
the paste-on-stage baseline and parallax render for comparison.

Catalog: staged photos (/work/shared/data/staged when present, else sample_data/staged) cut by
the shared segmenter and embedded by the shared encoder. Products: grocery photos on white.

    .venv/bin/python bench/generation_staging.py                      # 6 products x 2 candidates
    .venv/bin/python bench/generation_staging.py --products 3 --out /tmp/staging   # + contact sheet

Reported per candidate: CPU seconds (process time, 1 thread: the "one core" figure) and wall
seconds of the staging step (placement, inpainting, colour match, shadow, composite), and per
request the product-side work done once (cut-out, embedding, retrieval). Peak RSS from
getrusage (whole process, models included).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from _generation_common import data_root, manifest, segmented_catalog  # first: sets threads, sys.path

import numpy as np  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stats(xs) -> dict:
    xs = np.asarray(xs, float)
    return {"median": round(float(np.median(xs)), 3), "p90": round(float(np.percentile(xs, 90)), 3), "max": round(float(xs.max()), 3), "n": int(xs.size)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", type=int, default=24, help="staged catalog photos to index")
    ap.add_argument("--products", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=str, default="")
    ap.add_argument("--json", type=str, default="")
    ap.add_argument("--quick", action="store_true", help="smoke run (make bench): 6 catalog photos, 2 products, 1 candidate")
    args = ap.parse_args()
    if args.quick:  # smaller defaults; options given explicitly still win
        ap.set_defaults(catalog=6, products=2, candidates=1)
        args = ap.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from core.ml.embeddings import default_image_encoder
    from core.ml.images import load_rgb
    from core.ml.segmentation import default_segmenter
    from generation.ml.backends import ProductInput
    from generation.ml.copy_paste import CopyPasteStagingBackend, PasteOnStageBackend
    from generation.ml.parallax import render_parallax
    from generation.ml.retrieval import CatalogIndex

    rss0 = peak_rss_mb()
    t = time.perf_counter()
    encoder, segmenter = default_image_encoder(), default_segmenter()
    load_s = time.perf_counter() - t

    rng = np.random.default_rng(0)
    staged = manifest("staged")
    staged = [staged[i] for i in sorted(rng.permutation(len(staged))[: args.catalog])]
    t = time.perf_counter()
    source, photos = segmented_catalog(staged, segmenter)
    seg_s = time.perf_counter() - t
    t = time.perf_counter()
    index = CatalogIndex.build(photos, encoder=encoder, segmenter=segmenter)
    embed_s = time.perf_counter() - t
    rss_models = peak_rss_mb()

    products = manifest("product_plain")
    products = [products[i] for i in rng.permutation(len(products))[: args.products]]
    categories = sorted(index.category_counts())
    backend = CopyPasteStagingBackend(index, source, encoder=encoder, segmenter=segmenter, size=args.size)
    stages_dir = data_root() / "stages"
    baseline = PasteOnStageBackend(str(stages_dir), segmenter=segmenter, size=args.size)

    stage_cpu, stage_wall, inpaint_wall, inpaint_cpu, request_wall, request_cpu, once = [], [], [], [], [], [], []
    base_wall, sheet = [], []
    for i, r in enumerate(products):
        rgb = load_rgb(r["path"])
        # grocery categories are not in the staged catalog: use a catalog category in turn
        product = ProductInput(rgb, categories[i % len(categories)], r.get("fine_category", ""))
        c0, w0 = time.process_time(), time.perf_counter()
        cands = backend.generate(product, seed=i, num_candidates=args.candidates)
        request_wall.append(time.perf_counter() - w0)
        request_cpu.append(time.process_time() - c0)
        tm = cands[0].metadata["timings"]
        once_s = tm["cutout_s"] + tm["embed_s"] + tm["retrieve_s"]
        once.append(once_s)
        for c in cands:
            stage_wall.append(c.metadata["timings"]["total_s"])
            stage_cpu.append(c.metadata["timings"]["total_cpu_s"])
            inpaint_wall.append(c.metadata["timings"]["inpaint_s"])
            inpaint_cpu.append(c.metadata["timings"]["inpaint_cpu_s"])
        w0 = time.perf_counter()
        base = baseline.generate(product, seed=i, num_candidates=1)
        base_wall.append(time.perf_counter() - w0 - base[0].metadata["timings"]["cutout_s"])
        if args.out:
            tiles = [cv2.resize(rgb, (192, 192))] + [cv2.resize(c.image, (192, 192)) for c in cands]
            tiles += [np.zeros((192, 192, 3), np.uint8)] * (args.candidates - len(cands)) + [cv2.resize(base[0].image, (192, 192))]
            sheet.append(np.hstack(tiles))
    t = time.perf_counter()
    plx = render_parallax(cands[0], formats=("mp4", "webp"))
    parallax_s = time.perf_counter() - t

    result = {
        "data_root": str(data_root()),
        "catalog_photos": len(index),
        "catalog_categories": index.category_counts(),
        "size": args.size,
        "model_load_s": round(load_s, 2),
        "catalog_segment_s_per_photo": round(seg_s / len(photos), 3),
        "catalog_embed_s_per_photo": round(embed_s / len(photos), 3),
        "copy_paste_stage_cpu_s_per_candidate": stats(stage_cpu),
        "copy_paste_stage_wall_s_per_candidate": stats(stage_wall),
        "copy_paste_inpaint_wall_s": stats(inpaint_wall),
        "copy_paste_inpaint_cpu_s": stats(inpaint_cpu),
        "copy_paste_request_cpu_s": stats(request_cpu),
        "copy_paste_once_per_request_wall_s(cutout+embed+retrieve)": stats(once),
        "copy_paste_request_wall_s": stats(request_wall),
        "candidates_per_request": args.candidates,
        "paste_on_stage_wall_s_per_candidate(excl. cutout)": stats(base_wall),
        "parallax_3s_24fps_512_wall_s": round(parallax_s, 2),
        "parallax_timings": plx.timings,
        "parallax_bytes": {k: len(v) for k, v in plx.files.items()},
        "peak_rss_mb": {"start": round(rss0), "models_and_catalog_loaded": round(rss_models), "end": round(peak_rss_mb())},
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(np.vstack(sheet)).save(out / "staging_sheet.jpg", quality=88)
        for fmt, data in plx.files.items():
            (out / f"parallax.{fmt}").write_bytes(data)
        print(f"wrote {out}/staging_sheet.jpg (product | copy-paste candidates | paste-on-stage)")


if __name__ == "__main__":
    main()
