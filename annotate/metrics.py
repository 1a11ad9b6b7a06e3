"""Agreement statistics for nominal labels, as small plain functions.

cohen_kappa: two annotators on the same items, kappa = (p_o - p_e) / (1 - p_e).
krippendorff_alpha: any number of annotators, missing values allowed, alpha = 1 - D_o / D_e
computed from the coincidence matrix (Krippendorff, "Computing Krippendorff's Alpha-Reliability").
Both return None when the statistic is undefined (no items, or no variation at all).
"""
from __future__ import annotations

from collections import Counter
from statistics import median
from typing import Hashable, Iterable, Sequence


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two label lists of the same length (the same items)")
    n = len(a)
    if n == 0:
        return None
    observed = sum(1 for x, y in zip(a, b) if x == y) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in set(count_a) | set(count_b)) / (n * n)
    if expected == 1:
        return None  # both annotators used one and the same category throughout: undefined
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Nominal alpha. `units`: for each item, the values the annotators gave (missing ones left out)."""
    coincidence: Counter = Counter()
    for values in units:
        values = [v for v in values if v is not None]
        m = len(values)
        if m < 2:
            continue  # an item with one value carries no information about agreement
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidence[(c, k)] += 1 / (m - 1)
    totals: Counter = Counter()
    for (c, _k), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    if n <= 1:
        return None
    disagree_observed = sum(w for (c, k), w in coincidence.items() if c != k)
    disagree_expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if disagree_expected == 0:
        return None
    return 1 - (n - 1) * disagree_observed / disagree_expected


def median_or_none(values: Iterable[float]) -> float | None:
    values = list(values)
    return median(values) if values else None
