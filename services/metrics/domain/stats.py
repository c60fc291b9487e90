"""The few statistics the KPIs use, each defined once so the API docs and the code say the same thing."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def median(values: Sequence[float]) -> float | None:
    """The middle value; the mean of the two middle values for an even count."""
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by nearest rank: the smallest value with at least q of the values at or below it
    (p90 of 1..10 is 9). No interpolation, so every reported quantile is a value that occurred."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(q * len(s)))
    return float(s[rank - 1])


def gini_of_histogram(histogram: dict[int, int]) -> float | None:
    """:func:`gini` of the values a histogram (value -> how many) stands for."""
    return gini([value for value, n in sorted(histogram.items()) for _ in range(n)])


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of non-negative values: sum over all ordered pairs of |x_i - x_j| divided by
    2 n^2 mean. 0 = everyone carries the same; 0 also when all are zero. Computed on the sorted values
    in O(n log n): G = sum_i (2i - n - 1) x_(i) / (n sum x)."""
    if not values:
        return None
    s = sorted(values)
    n, total = len(s), sum(s)
    if total == 0:
        return 0.0
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(s, start=1))
    return weighted / (n * total)


def normalise(score: int, scale_min: int, scale_max: int) -> float:
    """A score as a fraction of its question's scale: 0 at the minimum, 1 at the maximum."""
    span = scale_max - scale_min
    if span <= 0:
        return 1.0
    share = (score - scale_min) / span
    return 0.0 if share < 0 else 1.0 if share > 1 else share  # clamped; comparisons cost less than min/max


def on_five_point_scale(fraction: float) -> float:
    """A normalised score shown on the familiar 1-5 scale."""
    return 1 + 4 * fraction


PROMOTER = 9
"""a 0-10 answer at or above this is a promoter's"""
DETRACTOR = 6
"""a 0-10 answer at or below this is a detractor's"""


def nps(recommend: Sequence[int]) -> float | None:
    """Net Promoter Score from 0-10 answers: % promoters (9-10) minus % detractors (0-6), -100..100."""
    promoters = sum(1 for r in recommend if r >= PROMOTER)
    detractors = sum(1 for r in recommend if r <= DETRACTOR)
    return nps_of(promoters, detractors, len(recommend))


def nps_of(promoters: int, detractors: int, answers: int) -> float | None:
    """The same from the counts."""
    return 100 * (promoters - detractors) / answers if answers else None


def share(hits: int, total: int) -> float | None:
    return hits / total if total else None
