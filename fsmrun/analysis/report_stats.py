"""The statistics a report gives of one metric over the seeds of a group: n, mean, median,
sample std, min, max and the mean of its baseline, rounded to the report's digits. No torch."""

from __future__ import annotations

import math
from typing import Any

from fsmrun.schemas.sweep import MetricStats


def summarize(
    values: list[float | None],
    baselines: list[float | None] | None = None,
    digits: int | None = None,
) -> MetricStats:
    """n, mean, median, sample std (None below 2), min, max; the mean of the baselines beside
    them; each rounded to `digits` decimals when given (every form of a report shows these)."""
    return MetricStats(**summary(values, baselines, digits))


def summary(
    values: list[float | None],
    baselines: list[float | None] | None = None,
    digits: int | None = None,
) -> dict[str, Any]:
    """`summarize` as the fields of a MetricStats: a 100,000-run report validates all of
    its rows at once (one MetricStats per group and metric cost more than the rest). The
    mean is statistics.fmean's (a correctly rounded sum), the median statistics.median's."""
    present = [v for v in values if v is not None] if None in values else values
    n = len(present)
    std = baseline = None
    if n > 1:
        ordered = sorted(present)
        mid = n // 2
        mean = math.fsum(ordered) / n
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        std = math.sqrt(math.fsum([(v - mean) ** 2 for v in ordered]) / (n - 1))
        low, high = ordered[0], ordered[-1]
    elif n:
        mean = median = low = high = present[0]
    else:
        mean = median = low = high = None
    if baselines:
        base = [b for b in baselines if b is not None] if None in baselines else baselines
        baseline = math.fsum(base) / len(base) if base else None
    if digits is not None:  # one rounding for the four equal values of a single seed
        if n > 1:
            mean, median, std = round(mean, digits), round(median, digits), round(std, digits)
            low, high = round(low, digits), round(high, digits)
        elif n:
            mean = median = low = high = round(mean, digits)
        if baseline is not None:
            baseline = round(baseline, digits)
    return {"n": n, "mean": mean, "median": median, "std": std, "min": low, "max": high,
            "baseline": baseline}  # fmt: skip


def sample_std(values: list[float]) -> float:
    """The sample standard deviation in floats, with a correctly rounded sum
    (`statistics.stdev` computes in Fractions: 6 of a 100,000-run report's 9 seconds)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum([(v - mean) ** 2 for v in values]) / (len(values) - 1))
