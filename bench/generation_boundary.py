"""Boundary benchmark: filling the copy-paste silhouette gap, classical vs the learned WBL inpainter.

On real staged photos (DreamBooth subjects in natural scenes; /work/shared/data, falling back to
sample_data) the product is segmented (core.ml.segmentation) and a synthetic silhouette gap is cut
around it (an "old" silhouette = the product scaled/shifted/dilated, minus the product; the ring a
copy-paste leaves). Each inpainter fills the gap with the product protected (never a source, never
changed). Metrics against the real pixels, over the hole pixels within 10 px of the hole boundary
(``band10``) and over the whole hole: PSNR (dB, mean over images) and L1 (mean |error|, 0-255).

The WBL inpainter is trained by this script itself, briefly, on CPU, on photos of *other*
subjects than the evaluation photos (split by subject), so its figures are those of a short CPU
run, not of a converged model.

    .venv/bin/python bench/generation_boundary.py --quick          # 300 steps at crop 64: ~1 CPU min
    .venv/bin/python bench/generation_boundary.py --steps 1000 --batch 4 --crop 128 --width 16 --n-res 2  # 10 CPU min (docs)
    .venv/bin/python bench/generation_boundary.py --steps 3000 --json out.json   # crop 96, width 24: use a GPU
    .venv/bin/python bench/generation_boundary.py --artifact var/models/wbl_inpainter   # reuse a model
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # on the shared 2-core box 2 threads cost ~3x the CPU per step

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.ml.images import load_rgb  # noqa: E402
from generation.ml import wbl_inpainter as wbl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BAND_PX = 10


def data_root() -> Path:
    shared = Path("/work/shared/data")
    return shared if (shared / "manifest.jsonl").is_file() else ROOT / "sample_data"


def staged_records(root: Path) -> list[dict]:
    recs = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in recs if r.get("kind") == "staged"]


def load_photo(root: Path, rec: dict, max_side: int, cache: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Photo resized to max_side and its product mask (cached: segmentation is the slow part)."""
    rgb = load_rgb(root / rec["file"])
    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    key = cache / (rec["file"].replace("/", "__") + f".{max_side}.npy")
    if key.is_file():
        mask = np.load(key)
    else:
        from core.ml.segmentation import segment_product

        mask = segment_product(rgb).mask
        cache.mkdir(parents=True, exist_ok=True)
        np.save(key, mask)
    frac = mask.mean()
    if frac < 0.02 or frac > 0.6:  # no clear product, or no background left to evaluate
        return None
    return rgb, mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def band_of(hole: np.ndarray, px: int = BAND_PX) -> np.ndarray:
    d = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    return hole & (d <= px)


def classical_inpainters() -> dict:
    from generation.ml.inpaint import OpenCVInpainter

    out = {"opencv-telea": OpenCVInpainter("telea", radius=5)}
    try:
        import patchmatch  # noqa: F401
        from generation.ml.inpaint import PatchMatchInpainter

        out["patchmatch"] = PatchMatchInpainter(patch_size=3, seed=0)
    except Exception as exc:  # pragma: no cover - optional
        print(f"(PatchMatch not importable: {exc})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few photos, short training (minutes on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="WBL training steps (default 3000; 300 with --quick)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default 8; 4 with --quick)")
    ap.add_argument("--crop", type=int, default=None, help="training crop px (default 96; 64 with --quick)")
    ap.add_argument("--width", type=int, default=None, help="network width (default 24; 16 with --quick)")
    ap.add_argument("--n-res", type=int, default=None, help="residual blocks (default 3; 2 with --quick)")
    ap.add_argument("--max-side", type=int, default=256, help="photos are resized to this longer side")
    ap.add_argument("--n-eval", type=int, default=None, help="evaluation photos (default all; 16 with --quick)")
    ap.add_argument("--artifact", default=None, help="use this trained WBL artifact instead of training")
    ap.add_argument("--out-dir", default="/tmp/stagecraft_bench_wbl", help="where the bench's model is written")
    ap.add_argument("--cache", default="/tmp/stagecraft_bench_masks", help="product-mask cache")
    ap.add_argument("--device", default=None, help="training/inference device (default: cuda if available)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    steps = args.steps if args.steps is not None else (300 if args.quick else 3000)
    n_eval = args.n_eval if args.n_eval is not None else (16 if args.quick else 10 ** 9)
    root = data_root()
    recs = staged_records(root)
    subjects = sorted({r.get("subject", r["file"].split("/")[1]) for r in recs})
    rng = np.random.default_rng(args.seed)
    rng.shuffle(subjects)
    n_eval_subj = max(1, len(subjects) // 3)
    eval_subj = set(subjects[:n_eval_subj])
    t0 = time.time()
    cache = Path(args.cache)
    train, evals = [], []
    for r in recs:
        subj = r.get("subject", r["file"].split("/")[1])
        if subj in eval_subj and len(evals) >= n_eval:
            continue
        if args.quick and subj not in eval_subj and len(train) >= 24:
            continue
        item = load_photo(root, r, args.max_side, cache)
        if item is None:
            continue
        (evals if subj in eval_subj else train).append((r["file"], *item))
    print(f"data: {root} | {len(train)} training photos, {len(evals)} evaluation photos "
          f"({len(eval_subj)} held-out subjects) | loaded + segmented in {time.time() - t0:.0f} s")

    device = args.device
    if args.artifact:
        art = wbl.find_artifact(args.artifact)
        train_note = f"loaded {art}"
    else:
        def pick(value, quick, full):
            return value if value is not None else (quick if args.quick else full)

        cfg = wbl.WblConfig(steps=steps, batch_size=pick(args.batch, 4, 8), crop=pick(args.crop, 64, 96),
                            max_side=args.max_side, width=pick(args.width, 16, 24), n_res=pick(args.n_res, 2, 3),
                            lr=1e-3, log_every=max(1, steps // 10), seed=args.seed, output_dir=args.out_dir)
        t1, c1 = time.time(), time.process_time()

        def progress(step, total, m):
            print(f"  train step {step}/{total}: loss {m['loss']:.4f} (edge WBL {m['edge_wbl']:.4f}, "
                  f"image WBL {m['image_wbl']:.4f}) {m['seconds']:.0f} s", flush=True)

        art = wbl.train_wbl_inpainter([t[1] for t in train], [t[2] for t in train], cfg, progress, device)
        dev_used = json.loads((art / wbl.CONFIG_FILE).read_text())["device"]
        train_note = (f"trained here on {dev_used.upper()} for {steps} steps (batch {cfg.batch_size}, crop "
                      f"{cfg.crop}, width {cfg.width}, {cfg.n_res} res blocks, cosine lr to {cfg.lr_final:g}x) "
                      f"in {time.time() - t1:.0f} s wall, {time.process_time() - c1:.0f} s CPU")
    print(f"WBL inpainter: {train_note}")
    methods = dict(classical_inpainters())
    methods["wbl (learned)"] = wbl.WblInpainter.load(art, device=device)

    cfg_masks = wbl.WblConfig(seed=12345)
    mask_rng = np.random.default_rng(12345)
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, rgb, pm in evals:
        hole = wbl.silhouette_gap_mask(pm, mask_rng, cfg_masks)
        band = band_of(hole)
        damaged = rgb.copy()
        damaged[hole] = 0
        for mname, inp in methods.items():
            t = time.time()
            out = inp.inpaint(damaged, hole, protect_mask=pm)
            dt = time.time() - t
            assert (out[~hole] == damaged[~hole]).all()
            s = scores[mname]
            s["psnr_band10"].append(psnr(out[band], rgb[band]))
            s["l1_band10"].append(float(np.abs(out[band].astype(float) - rgb[band]).mean()))
            s["psnr_hole"].append(psnr(out[hole], rgb[hole]))
            s["l1_hole"].append(float(np.abs(out[hole].astype(float) - rgb[hole]).mean()))
            s["seconds"].append(dt)
        scores["_hole"]["px"].append(float(hole.sum()))
    mean_hole = float(np.mean(scores.pop("_hole")["px"]))
    print(f"\nsilhouette-gap fill on {len(evals)} held-out staged photos at {args.max_side} px "
          f"(mean hole {mean_hole:.0f} px; band = hole pixels within {BAND_PX} px of the hole boundary)")
    header = f"{'method':<16} {'PSNR band10':>12} {'L1 band10':>10} {'PSNR hole':>10} {'L1 hole':>8} {'s/image':>8}"
    print(header)
    print("-" * len(header))
    table = {}
    for mname, s in scores.items():
        row = {k: float(np.mean(v)) for k, v in s.items()}
        table[mname] = row
        print(f"{mname:<16} {row['psnr_band10']:>12.2f} {row['l1_band10']:>10.2f} {row['psnr_hole']:>10.2f} "
              f"{row['l1_hole']:>8.2f} {row['seconds']:>8.3f}")
    result = {"data": str(root), "n_eval": len(evals), "n_train": len(train), "max_side": args.max_side,
              "wbl": train_note, "artifact": str(art), "mean_hole_px": mean_hole, "metrics": table,
              "total_seconds": round(time.time() - t0, 1)}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
