"""Percentiles and distributions: the one definition every latency figure uses.

Percentile
    Nearest rank, and only nearest rank. Over ``n`` sorted values
    ``v[1] <= ... <= v[n]`` the p-th percentile is ``v[ceil(p/100 * n)]``
    (1-based), with p = 0 giving ``v[1]`` (the minimum). The rank is computed
    in exact rational arithmetic (p = 99.9 is 999/10), so no float rounding
    moves a value by one rank. Every reported value is an observed value,
    never an interpolation, so a p99 can be looked up in raw.jsonl.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable, Optional, Sequence

PERCENTILES = (
    ("p10", Fraction(10)),
    ("p25", Fraction(25)),
    ("p50", Fraction(50)),
    ("p75", Fraction(75)),
    ("p90", Fraction(90)),
    ("p95", Fraction(95)),
    ("p99", Fraction(99)),
    ("p99_9", Fraction(999, 10)),
)


def nearest_rank(p, n: int) -> int:
    """The 1-based nearest rank of the p-th percentile among n values (n >= 1).

    Exact: p is turned into a Fraction from its decimal text, so 99.9 is
    999/10 and ceil(999/10 / 100 * 1000) is 999, not 1000.
    """
    if n < 1:
        raise ValueError("nearest_rank needs at least one value")
    p = p if isinstance(p, Fraction) else Fraction(str(p))
    if p < 0 or p > 100:
        raise ValueError(f"percentile {p} outside [0, 100]")
    rank = math.ceil(p * n / 100)
    return min(max(rank, 1), n)


def percentile(sorted_values: Sequence[float], p) -> Optional[float]:
    """The nearest-rank p-th percentile of already sorted values; None when empty."""
    if not sorted_values:
        return None
    return sorted_values[nearest_rank(p, len(sorted_values)) - 1]


def distribution(values: Iterable[Optional[float]]) -> dict:
    """count, min, p10 ... p99_9, max and mean of the non-null values.

    Empty input gives count 0 and nulls, so meta.json always has the same
    keys and a reader never has to guess whether a figure was forgotten.
    """
    xs = sorted(v for v in values if v is not None)
    n = len(xs)
    out = {"count": n, "min": xs[0] if n else None}
    for key, p in PERCENTILES:
        out[key] = xs[nearest_rank(p, n) - 1] if n else None
    out["max"] = xs[-1] if n else None
    out["mean"] = round(math.fsum(xs) / n, 3) if n else None
    return out


# The seed system's names for a distribution's figures (meta.json carries both; docs/report.md).
SEED_NAMES = {"min": "min_ms", "p10": "p10_ms", "p25": "p25_ms", "p50": "p50_ms", "p75": "p75_ms",
              "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms", "p99_9": "p999_ms", "max": "max_ms",
              "mean": "mean_ms"}


def with_seed_names(dist: dict) -> dict:
    """The distribution with each figure also under the seed's name (``p99_9`` as ``p999_ms``, ...)."""
    out = dict(dist)
    out.update({seed: dist[key] for key, seed in SEED_NAMES.items() if key in dist})
    return out
