"""Paired gains between arms: the mean difference, its 95% t-interval, a paired t-test, and Holm's correction."""

from __future__ import annotations

import math

import numpy as np


def paired(diff: np.ndarray) -> dict:
    """Mean paired gain over matched repeats, its 95% t-interval and a two-sided paired t-test (p unadjusted);
    `pairs` is the number of repeats."""
    from scipy import stats  # scipy is slow to import; only evaluate's summary needs it

    n = len(diff)
    out = {"mean": float(diff.mean()), "ci95": None, "p_value": None, "pairs": n}
    if n > 1:
        sd = diff.std(ddof=1)
        half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
        out["ci95"] = [float(diff.mean() - half), float(diff.mean() + half)]
        out["p_value"] = float(stats.ttest_1samp(diff, 0.0).pvalue) if sd > 0 else (0.0 if diff.mean() else 1.0)
    return out


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, kept monotone); None stays None and counts for nothing."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[i] = running
    return adjusted
