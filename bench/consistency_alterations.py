"""Alteration benchmark for the product-consistency checker.

Real product photos on white (GroceryStoreDataset "iconic" shots, plus ABO catalogue images when
/work/shared/data is present) are cut out with core.ml.segmentation and composited into real stage
photos (IC-Light backgrounds). Negatives: the untouched composite re-rendered (JPEG, exposure,
noise), the product moved elsewhere on the stage (an allowed backend move), and the product
untouched on a second stage at another size. Positives:
controlled alterations with a known magnitude (scale, anisotropic expansion, local warp, colour
shift, erased part, added part, blurred text region).

    .venv/bin/python bench/consistency_alterations.py --quick
    .venv/bin/python bench/consistency_alterations.py --products 40 --json out.json

Prints detection rate per alteration type and magnitude, false-alarm rate on negatives, and
pairs/s on CPU. --fit-thresholds also prints thresholds chosen for <= 5 % false alarms.
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
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bench import consistency_data as D  # noqa: E402
from core.ml.images import load_rgb  # noqa: E402
from core.ml.segmentation import segment_product  # noqa: E402

SCALES = (0.05, 0.10, 0.20, 0.30)  # relative area change
COLOURS = (3.0, 5.0, 8.0, 12.0)  # ΔE2000 of the mean colour
PARTS = (0.05, 0.10, 0.20, 0.30)  # share of the product area
BLURS = (0.10, 0.30)


def build_cases(n_products: int, seed: int = 0, quick: bool = False):
    rng = np.random.default_rng(seed)
    root = D.data_root()
    man = D.manifest(root)
    products = [r for r in man if r["kind"] in ("product_plain", "product_catalog")]
    stages = [r for r in man if r["kind"] == "stage"]
    rng.shuffle(products)
    products = products[:n_products]
    cases = []
    for i, rec in enumerate(products):
        rgb = load_rgb(root / rec["file"])
        seg = segment_product(rgb)
        cut = D.make_cutout(Path(rec["file"]).stem, rec.get("category", "product"), rgb, seg.alpha)
        if cut is None:
            continue
        stage = load_rgb(root / stages[i % len(stages)]["file"])
        center = (rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.6))
        hf = rng.uniform(0.35, 0.55)
        original, m_orig = D.composite(stage, cut, center, hf)
        area = m_orig.sum()
        base = dict(product=cut.name, category=cut.category, original=original, original_mask=m_orig)

        def add(kind, magnitude, gen, gen_mask=None, positive=True, area_change=None, de=None):
            ac = None if gen_mask is None else float(gen_mask.sum() / area - 1)
            cases.append(dict(base, kind=kind, magnitude=magnitude, generated=D.rerender(gen, rng), positive=positive,
                              area_change=ac if area_change is None else area_change, delta_e=de))

        add("untouched", 0.0, original, m_orig, positive=False)
        # an allowed move: towards the stage centre, and only if the product stays fully in frame
        # (a product pushed partly out of the frame IS cut off, so it would not be a negative)
        dx = (1 if center[0] < 0.5 else -1) * rng.uniform(0.08, 0.15)
        g, gm = D.composite(stage, cut, (center[0] + dx, center[1]), hf)
        if abs(gm.sum() / area - 1) <= 0.02:
            add("moved", 0.0, g, gm, positive=False)
        # the same product untouched on another stage, at another size: negatives are the rarer
        # class, and a false-alarm rate needs many of them
        other = load_rgb(root / stages[(i + len(stages) // 2) % len(stages)]["file"])
        o2, m2 = D.composite(other, cut, (rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.6)), rng.uniform(0.3, 0.6))
        if m2.sum() >= 100:
            cases.append(dict(base, original=o2, original_mask=m2, kind="other_stage", magnitude=0.0,
                              generated=D.rerender(o2, rng), positive=False, area_change=0.0, delta_e=None))
        scales = SCALES if not quick else (0.10, 0.30)
        for m in scales:
            g, gm = D.composite(stage, cut, center, hf * np.sqrt(1 + m))
            add("scale", m, g, gm)
            if rng.random() < 0.5:
                g, gm = D.composite(stage, cut, center, hf, sx=1 + m)
            else:
                g, gm = D.composite(stage, cut, center, hf, sy=1 + m)
            add("stretch", m, g, gm)
        for strength in ((0.05, 0.10, 0.20) if not quick else (0.10,)):
            wr, wa, off = D.local_warp(cut.rgb, cut.alpha, strength, rng)
            c2, hf2 = D.placement_for(cut, stage.shape, center, hf, wa.shape, off)
            g, gm = D.composite(stage, cut, c2, hf2, rgb=wr, alpha=wa)
            add("local_warp", strength, g, gm)
        for de in (COLOURS if not quick else (3.0, 8.0)):
            rc, measured = D.recolour(cut.rgb, cut.alpha, de, rng)
            g, gm = D.composite(stage, cut, center, hf, rgb=rc)
            add("colour", de, g, gm, de=measured)
        for f in (PARTS if not quick else (0.10, 0.30)):
            ea = D.erase_part(cut.alpha, f, rng)
            g, gm = D.composite(stage, cut, center, hf, alpha=ea)
            add("erase", f, g, gm)
            # the first side is drawn; if the frame cuts the part off there (a wide product reaching
            # the stage's edge), the next side is tried, so every case shows what it claims to
            side, aspect = int(rng.integers(4)), rng.uniform(0.8, 1.2)
            for k in range(4):
                ar, aa, off = D.add_part(cut.rgb, cut.alpha, f, (side + k) % 4, aspect)
                c3, hf3 = D.placement_for(cut, stage.shape, center, hf, aa.shape, off)  # body stays in place
                g, gm = D.composite(stage, cut, c3, hf3, rgb=ar, alpha=aa)
                drawn = ((aa >= 0.5).sum() - (cut.alpha >= 0.5).sum()) * (hf * stage.shape[0] / cut.rgb.shape[0]) ** 2
                if (gm & ~m_orig).sum() >= 0.9 * drawn:
                    add("add_part", f, g, gm)
                    break
        if cut.category == "packages" or rec["kind"] == "product_catalog":
            for f in BLURS:
                g, gm = D.composite(stage, cut, center, hf, rgb=D.blur_region(cut.rgb, cut.alpha, f))
                add("text_blur", f, g, gm)
    return cases


def is_large(c) -> bool:
    """Alterations the targets speak about: >= 10 % of the area, or ΔE2000 >= 5."""
    if not c["positive"]:
        return False
    if c["kind"] == "colour":
        return (c["delta_e"] or c["magnitude"]) >= 5.0
    return c["magnitude"] >= 0.10


def platform_reference(c) -> np.ndarray:
    """The original as the platform builds it when the generator reports where it put the
    product: the original product's pixels pasted into the generated image at that place."""
    return np.where(c["original_mask"][..., None], c["original"], c["generated"])


def run(cases, checker, use_mask: bool = True, reference_from_generated: bool = False):
    rows = []
    t0 = time.perf_counter()
    for c in cases:
        c0 = time.process_time()
        original = platform_reference(c) if reference_from_generated else c["original"]
        res = checker.check(original, c["generated"], category=c["category"],
                            original_mask=c["original_mask"] if use_mask else None,
                            surroundings_from_generated=reference_from_generated)
        rows.append(dict(kind=c["kind"], magnitude=c["magnitude"], positive=c["positive"], product=c["product"],
                         flagged=not res.passed, status=res.status, reasons=res.reasons, metrics=res.metric_row(),
                         area_change_true=c["area_change"], delta_e_true=c["delta_e"], large=is_large(c), seconds=res.seconds,
                         cpu_seconds=time.process_time() - c0))
    return rows, time.perf_counter() - t0


def report(rows, elapsed):
    by = defaultdict(list)
    for r in rows:
        by[(r["kind"], r["magnitude"])].append(r["flagged"])
    print(f"{'alteration':<12} {'magnitude':>9} {'n':>4} {'flagged':>8}")
    for (k, m), v in sorted(by.items(), key=lambda kv: (kv[0][0] in ("untouched", "moved", "other_stage"), kv[0])):
        print(f"{k:<12} {m:>9.2f} {len(v):>4} {np.mean(v) * 100:>7.1f}%")
    neg = [r["flagged"] for r in rows if not r["positive"]]
    large = [r["flagged"] for r in rows if r["large"]]
    allpos = [r["flagged"] for r in rows if r["positive"]]
    summary = {
        "pairs": len(rows),
        "false_alarm_rate": float(np.mean(neg)) if neg else None,
        "detection_rate_large": float(np.mean(large)) if large else None,
        "detection_rate_all": float(np.mean(allpos)) if allpos else None,
        "pairs_per_s": len(rows) / elapsed if elapsed else None,
        "median_s_per_pair": float(np.median([r["seconds"] for r in rows])),
        "cpu_s_per_pair": float(np.mean([r["cpu_seconds"] for r in rows])),
    }
    print(f"false alarms on negatives: {summary['false_alarm_rate'] * 100:.1f} % (n={len(neg)})")
    print(f"detection, alterations >= 10 % area or dE >= 5: {summary['detection_rate_large'] * 100:.1f} % (n={len(large)})")
    print(f"detection, all alterations: {summary['detection_rate_all'] * 100:.1f} % (n={len(allpos)})")
    print(f"throughput: {summary['pairs_per_s']:.2f} pairs/s wall-clock (median {summary['median_s_per_pair']:.3f} s/pair); "
          f"{summary['cpu_s_per_pair']:.3f} CPU-s/pair = {1 / summary['cpu_s_per_pair']:.2f} pairs per CPU-second (1 thread)")
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 products, fewer magnitudes (about a minute)")
    ap.add_argument("--products", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["reference", "segment-both"], default="reference",
                    help="reference: the default checker (original-guided); segment-both: U2-Net segments the "
                         "generated image on its own, refined with the original's colours (the earlier default)")
    ap.add_argument("--no-mask", action="store_true", help="segment the original too instead of passing its mask")
    ap.add_argument("--reference-from-generated", action="store_true",
                    help="compare with the original product pasted into the generated image, as the platform does "
                         "when a backend reports its placement (the product stays in place; 'moved' pairs are skipped)")
    ap.add_argument("--fit-thresholds", action="store_true", help="also fit a calibrated model (held-out split)")
    ap.add_argument("--json", help="write rows and summary here")
    args = ap.parse_args(argv)

    from consistency.ml import ConsistencyChecker, SalientLocator

    n = 4 if args.quick else args.products
    t = time.perf_counter()
    cases = build_cases(n, args.seed, quick=args.quick)
    print(f"built {len(cases)} pairs from {n} products in {time.perf_counter() - t:.1f} s (data: {D.data_root()})")
    checker = ConsistencyChecker() if args.mode == "reference" else ConsistencyChecker(locator=SalientLocator())
    print(f"mode: {args.mode} ({checker._models()})")
    if args.reference_from_generated:
        cases = [c for c in cases if c["kind"] != "moved"]
    rows, elapsed = run(cases, checker, use_mask=not args.no_mask, reference_from_generated=args.reference_from_generated)
    summary = report(rows, elapsed)
    if args.fit_thresholds:
        from consistency.ml.calibration import evaluate, fit_calibration

        prods = sorted({r["product"] for r in rows})
        test_p = set(prods[::3])
        train = [r for r in rows if r["product"] not in test_p and r["status"] in ("consistent", "inconsistent")]
        test = [r for r in rows if r["product"] in test_p and r["status"] in ("consistent", "inconsistent")]
        model = fit_calibration([r["metrics"] for r in train], [r["positive"] for r in train], target_false_alarm=0.05)
        ev = evaluate(model, [r["metrics"] for r in test], [r["positive"] for r in test])
        print("calibrated logistic model, held-out products:", json.dumps(ev, indent=1))
        summary["calibrated_held_out"] = ev
    if args.json:
        for r in rows:
            r["metrics"] = {k: (None if v != v else v) for k, v in r["metrics"].items()}
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
