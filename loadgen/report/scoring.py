"""The daily benchmark's published scores: time to interactive, and storage.

Both are pure functions of per-iteration samples, so ``loadgen leaderboard``
can recompute them from any provider's records, and so a reader can check
them by hand. Percentiles are nearest rank (``loadgen.report.percentiles``).

Time to interactive (the sequential, staggered and burst tables)
    TTI of an iteration = create latency + the first command (``node -v``,
    with the reuse probe before it when that was on). An iteration is
    successful when its readiness passed (loadgen status ``success`` or
    ``partial``: the benchmark's iteration ends at ``node -v``) within
    ``TTI_TIMEOUT_MS`` (120 s). Over the successful iterations only, sorted,
    ``floor(n x 5 / 100)`` values are dropped from each end; on what is left,
    median (p50), p95 and p99 by nearest rank. Each scores
    ``max(0, 100 x (1 - ms / 10,000))``;
    ``timing = 0.60 x median + 0.25 x p95 + 0.15 x p99`` (of those scores);
    ``score = timing x success rate``, success rate = successful / all
    iterations. No successful iteration: score 0.

Storage (upload, download, delete of one object per iteration)
    An iteration is successful when all three succeeded and the download
    matched the upload (size and SHA-256). Over the successful iterations
    (not trimmed), median, p95 and p99 of download and of upload time, each
    scoring ``max(0, 100 x (1 - ms / 30,000))``; throughput of an iteration
    = ``bytes x 8 / download seconds / 1e6`` Mbps, and the median throughput
    scores ``100 x (Mbps - 1) / 999`` clamped to 0..100 (linear over
    1-1,000 Mbps). ``score = (0.35 x dl p50 + 0.15 x dl p95 + 0.05 x dl p99
    + 0.25 x ul p50 + 0.10 x ul p95 + 0.05 x ul p99 + 0.05 x throughput)
    x success rate``.

How this differs from ``loadgen report --compare``'s score
    The compare score, ``100 x success_rate / (1 s + 0.5 p50 + 0.3 p95 +
    0.2 p99)``, is built for bursts of any size: no ceiling (a 60 s TTI still
    ranks above a 90 s one, where the daily score gives both 0), no trimming
    (at 100,000 sandboxes the slowest 5% are 5,000 sandboxes, and the tail is
    what a burst measures), over ``success`` records only. The daily score
    reproduces the published tables of about 100 iterations per provider,
    where a 10 s ceiling and 5% trimming are the benchmark's own choices.
"""

from __future__ import annotations

from typing import Optional, Sequence

from loadgen.report.percentiles import percentile

TTI_CEILING_MS = 10_000.0
TTI_TIMEOUT_MS = 120_000.0
TRIM_PERCENT = 5
TTI_WEIGHTS = (("median", 50, 0.60), ("p95", 95, 0.25), ("p99", 99, 0.15))

MIB = 1024 * 1024
STORAGE_SIZES_MIB = (1, 4, 10, 16)  # each iteration's object is one of these, drawn at random
STORAGE_CEILING_MS = 30_000.0
STORAGE_WEIGHTS = (("download", (("median", 50, 0.35), ("p95", 95, 0.15), ("p99", 99, 0.05))),
                   ("upload", (("median", 50, 0.25), ("p95", 95, 0.10), ("p99", 99, 0.05))))
THROUGHPUT_WEIGHT = 0.05
THROUGHPUT_RANGE_MBPS = (1.0, 1000.0)

TTI_FORMULA = (
    "score = (0.60 x S(median) + 0.25 x S(p95) + 0.15 x S(p99)) x success rate, where S(t) = max(0, 100 x (1 - t / 10 s)); "
    "TTI = create + first node -v; over successful iterations only (ready within 120 s), 5% trimmed from each end, "
    "percentiles by nearest rank; failed or skipped providers rank last with 0"
)
STORAGE_FORMULA = (
    "score = (0.35 x S(download median) + 0.15 x S(download p95) + 0.05 x S(download p99) + 0.25 x S(upload median) "
    "+ 0.10 x S(upload p95) + 0.05 x S(upload p99) + 0.05 x T(median throughput)) x success rate, where "
    "S(t) = max(0, 100 x (1 - t / 30 s)) and T(x) = 100 x (x - 1 Mbps) / 999 Mbps clamped to 0..100; "
    "throughput = bytes x 8 / download seconds / 1e6; successful iterations only (upload, download with matching "
    "size and SHA-256, delete), not trimmed, percentiles by nearest rank"
)


def metric_score(ms: Optional[float], ceiling_ms: float) -> float:
    """max(0, 100 x (1 - ms / ceiling)); 0 for a missing figure."""
    if ms is None:
        return 0.0
    return max(0.0, 100.0 * (1.0 - ms / ceiling_ms))


def trimmed(values: Sequence[float], percent: int = TRIM_PERCENT) -> list:
    """Sorted values without floor(n x percent / 100) of them at each end."""
    xs = sorted(values)
    k = len(xs) * percent // 100
    return xs[k:len(xs) - k]


def _percentiles(sorted_values: list, spec) -> dict:
    return {name: percentile(sorted_values, p) for name, p, _ in spec}


def tti_score(tti_ms: Sequence[float], iterations: int) -> dict:
    """The TTI score of one provider in one mode from its successful iterations' TTIs (ms) and the
    number of iterations it ran; every intermediate figure is returned, so the table can show them."""
    kept = trimmed(tti_ms)
    figures = _percentiles(kept, TTI_WEIGHTS)
    scores = {name: metric_score(figures[name], TTI_CEILING_MS) for name, _, _ in TTI_WEIGHTS}
    timing = sum(weight * scores[name] for name, _, weight in TTI_WEIGHTS) if kept else 0.0
    rate = len(tti_ms) / iterations if iterations else 0.0
    return {
        "iterations": iterations,
        "ok": len(tti_ms),
        "success_rate": rate,
        "trimmed_count": len(kept),
        **{f"{name}_ms": figures[name] for name, _, _ in TTI_WEIGHTS},
        **{f"{name}_score": scores[name] for name, _, _ in TTI_WEIGHTS},
        "timing_score": timing,
        "score": timing * rate,
    }


def throughput_mbps(size_bytes: int, download_ms: float) -> Optional[float]:
    """bytes x 8 / download seconds / 1e6."""
    if not download_ms or download_ms <= 0:
        return None
    return size_bytes * 8 / (download_ms / 1000.0) / 1e6


def throughput_score(mbps: Optional[float]) -> float:
    if mbps is None:
        return 0.0
    lo, hi = THROUGHPUT_RANGE_MBPS
    return min(100.0, max(0.0, 100.0 * (mbps - lo) / (hi - lo)))


def storage_score(ok_iterations: Sequence[dict], iterations: int) -> dict:
    """The storage score from the successful iterations ({size_bytes, upload_ms, download_ms}) and the
    number of iterations run."""
    out = {"iterations": iterations, "ok": len(ok_iterations),
           "success_rate": len(ok_iterations) / iterations if iterations else 0.0}
    total = 0.0
    for operation, spec in STORAGE_WEIGHTS:
        values = sorted(it[f"{operation}_ms"] for it in ok_iterations)
        for name, p, weight in spec:
            ms = percentile(values, p)
            out[f"{operation}_{name}_ms"] = ms
            out[f"{operation}_{name}_score"] = metric_score(ms, STORAGE_CEILING_MS)
            total += weight * out[f"{operation}_{name}_score"] if values else 0.0
    rates = sorted(r for r in (throughput_mbps(it["size_bytes"], it["download_ms"]) for it in ok_iterations)
                   if r is not None)
    out["throughput_median_mbps"] = percentile(rates, 50)
    out["throughput_score"] = throughput_score(out["throughput_median_mbps"])
    total += THROUGHPUT_WEIGHT * out["throughput_score"]
    out["weighted_score"] = total
    out["score"] = total * out["success_rate"]
    return out
