"""Re-decide stored benchmark rows under other thresholds (no model runs).

    .venv/bin/python bench/consistency_thresholds.py /tmp/bench.json [--fit]

--fit: per metric, put the limit just outside the negatives' range at the given quantile (so that
each metric alone raises at most ~1 % false alarms), then report the combined rates.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from consistency.ml.checker import ConsistencyChecker, ConsistencyThresholds  # noqa: E402

# threshold field -> (metric, direction): "max" = fail above, "min" = fail below
LIMITS = {
    "max_area_change": ("area_change", "absmax"),
    "min_iou": ("iou", "min"),
    "max_expansion": ("expansion", "max"),
    "max_shrinkage": ("shrinkage", "max"),
    "min_boundary_f": ("boundary_f", "min"),
    "min_ssim": ("ssim", "min"),
    "max_delta_e": ("delta_e_mean_colour", "max"),
    "max_colour_changed_fraction": ("colour_changed_fraction", "max"),
    "max_edge_difference": ("edge_difference", "max"),
    "max_mismatch_fraction": ("mismatch_fraction", "max"),
    "max_detail_loss": ("detail_loss", "max"),
}


def decide(rows, th: ConsistencyThresholds):
    checker = ConsistencyChecker(locator=object(), thresholds=th)
    out = []
    for r in rows:
        if r["status"] not in ("consistent", "inconsistent"):
            out.append(True)
            continue
        m = {k: (np.nan if v is None else v) for k, v in r["metrics"].items()}
        out.append(bool(checker.reasons(m)))
    return np.array(out)


def rates(rows, flagged):
    neg = np.array([not r["positive"] for r in rows])
    large = np.array([r["large"] for r in rows])
    pos = np.array([r["positive"] for r in rows])
    return {"false_alarm": float(flagged[neg].mean()), "detect_large": float(flagged[large].mean()),
            "detect_all": float(flagged[pos].mean())}


def fit(rows, quantile=0.99, margin=0.1):
    negs = [r for r in rows if not r["positive"] and r["status"] in ("consistent", "inconsistent")]
    th = ConsistencyThresholds()
    for field, (metric, how) in LIMITS.items():
        v = np.array([r["metrics"][metric] for r in negs if r["metrics"].get(metric) is not None], float)
        if v.size == 0:
            continue
        if how == "absmax":
            lim = np.quantile(np.abs(v), quantile) * (1 + margin)
        elif how == "max":
            lim = np.quantile(v, quantile) * (1 + margin)
        else:
            lim = np.quantile(v, 1 - quantile) * (1 - margin)
        th = replace(th, **{field: float(lim)})
    return th


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--quantile", type=float, default=0.99)
    args = ap.parse_args()
    rows = json.loads(Path(args.json).read_text())["rows"]
    print("defaults:", rates(rows, decide(rows, ConsistencyThresholds())))
    if args.fit:
        th = fit(rows, args.quantile)
        print("fitted:", {k: round(v, 3) for k, v in th.to_dict().items() if isinstance(v, float)})
        print("fitted rates (same rows: optimistic):", rates(rows, decide(rows, th)))


if __name__ == "__main__":
    main()
