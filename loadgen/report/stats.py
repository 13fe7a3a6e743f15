"""Exact statistics over a run's result records: the figures of meta.json.

Every number a reader compares across providers comes from here, so each one
has a single written definition, and the functions are pure (records in,
plain dicts out): the master, ``loadgen report`` and the tests compute the
same figures from the same raw.jsonl, with or without a meta.json.

Definitions (docs/report.md repeats them for readers of the output):

Percentile
    Nearest rank, and only nearest rank. Over ``n`` sorted values
    ``v[1] <= ... <= v[n]`` the p-th percentile is ``v[ceil(p/100 * n)]``
    (1-based), with p = 0 giving ``v[1]`` (the minimum). The rank is computed
    in exact rational arithmetic (p = 99.9 is 999/10), so no float rounding
    moves a value by one rank. Every reported value is an observed value,
    never an interpolation, so a p99 can be looked up in raw.jsonl.

Which records a distribution covers
    Only phases that succeeded: create latency over records whose create
    succeeded (status is not ``failed``); first command and TTI
    (``latency_ms + first_command_ms``) over records whose readiness
    succeeded (``success`` or ``partial``); liveness over ``success``;
    destroy over ``destroy_ok is True``. A failed phase's duration is a
    timeout setting or an error's speed, not the provider's speed.

Concurrency
    A sandbox exists over the closed interval [create_ended_at,
    destroy_ended_at] when its create returned a sandbox (sandbox_id not
    null, late creates included: they existed and were billed). A sandbox
    whose destroy never ended is counted as existing until the end of the
    run (``open_ended`` says how many). The sweep processes starts before
    ends at equal timestamps, so two sandboxes that touch count as
    overlapping: the count at instant t is #{i : start_i <= t <= end_i}.
    The run spans from the earliest to the latest timestamp of any record.

1 Hz timelines
    Second k covers [run_start + k, run_start + k + 1); its value is the
    maximum of the count over that half-open second (so a one-millisecond
    spike is never hidden by sampling). Requests in flight use the same
    sweep over [P_started_at, P_ended_at) of every phase P that started
    (half-open: ends before starts on ties, so the instant one phase hands
    over to the next counts one request, not two); a phase that started
    but never ended is in flight until the end of the run.

Generator saturation
    See ``metrics_summary``: a process is saturated when its hub lag p99
    exceeds HUB_LAG_P99_LIMIT_MS or its CPU is at or above CPU_BUSY_PERCENT
    in more than CPU_BUSY_FRACTION_LIMIT of its samples.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import datetime
from fractions import Fraction
from itertools import chain, repeat
from typing import Iterable, Optional, Sequence

from loadgen.result import FAILURE_CLASSES, PHASES, STATUSES, iso, parse_iso

SCHEMA_VERSION = 1

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

# Generator-health thresholds (docs/report.md, "Generator saturation").
HUB_LAG_P99_LIMIT_MS = 100.0
CPU_BUSY_PERCENT = 90.0
CPU_BUSY_FRACTION_LIMIT = 0.10

TOP_ERRORS = 10

_CREATE_OK = frozenset(("success", "partial", "readiness_failed"))
_READY_OK = frozenset(("success", "partial"))
_PHASE_OF_STATUS = {"failed": "create", "readiness_failed": "readiness", "partial": "liveness"}


# ---------------------------------------------------------------------------
# Percentiles and distributions


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


# ---------------------------------------------------------------------------
# Timestamps

_fromiso = datetime.fromisoformat


def ts(value: Optional[str]) -> Optional[float]:
    """ISO 8601 timestamp to epoch seconds, fast path for our own `...Z` format.

    At 100k records times ten timestamps this runs a million times, so it
    avoids parse_iso's string surgery when the C parser accepts the text.
    """
    if not value:
        return None
    try:
        return _fromiso(value).timestamp()
    except ValueError:  # Python 3.10's fromisoformat refuses the trailing Z
        return parse_iso(value)


# ---------------------------------------------------------------------------
# Histograms


def _empty_classes() -> dict:
    return {c: 0 for c in FAILURE_CLASSES}


def _failed_phase(record: dict) -> Optional[str]:
    phase = record.get("failed_phase")
    if phase:
        return phase
    return _PHASE_OF_STATUS.get(record.get("status"))


def status_histogram(records: Sequence[dict]) -> dict:
    """Records per status; the four statuses are always present (unknown ones are kept too)."""
    hist = {s: 0 for s in STATUSES}
    for r in records:
        s = r.get("status")
        hist[s] = hist.get(s, 0) + 1
    return hist


def failure_class_histogram(records: Sequence[dict]) -> dict:
    """Non-success records by failure class (a missing class counts as `other`).

    Destroy failures are not in here: a sandbox whose destroy failed still
    had the status its lifecycle earned; they are in failure_class_by_phase
    and in leaks.
    """
    hist = _empty_classes()
    for r in records:
        if r.get("status") == "success":
            continue
        c = r.get("failure_class") or "other"
        hist[c] = hist.get(c, 0) + 1
    return hist


def failure_class_by_phase(records: Sequence[dict]) -> dict:
    """{phase: {failure_class: n}} for create, readiness, liveness and destroy.

    The first three count each non-success record once, under the phase that
    failed; destroy counts records with destroy_ok == false, whatever their
    status, under destroy_failure_class.
    """
    out = {p: _empty_classes() for p in PHASES}
    for r in records:
        if r.get("status") != "success":
            phase = _failed_phase(r) or "create"
            c = r.get("failure_class") or "other"
            bucket = out.setdefault(phase, _empty_classes())
            bucket[c] = bucket.get(c, 0) + 1
        if r.get("destroy_ok") is False:
            c = r.get("destroy_failure_class") or "other"
            out["destroy"][c] = out["destroy"].get(c, 0) + 1
    return out


def top_errors(records: Sequence[dict], limit: int = TOP_ERRORS) -> list:
    """The most frequent (phase, error_message) pairs, with counts.

    Messages are grouped verbatim: rewriting them would hide the difference
    between, say, two HTTP 429 bodies. Ties are broken by phase order, then
    message, so the list is deterministic.
    """
    counts: Counter = Counter()
    sample: dict = {}
    for r in records:
        if r.get("status") != "success":
            key = (_failed_phase(r) or "create", r.get("error_message") or "")
            counts[key] += 1
            if key not in sample:
                sample[key] = (r.get("failure_class"), r.get("error_type"), r.get("http_status"))
        if r.get("destroy_ok") is False:
            key = ("destroy", r.get("destroy_error_message") or "")
            counts[key] += 1
            if key not in sample:
                sample[key] = (r.get("destroy_failure_class"), None, None)
    order = {p: i for i, p in enumerate(PHASES)}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0][0], 99), kv[0][0], kv[0][1]))
    out = []
    for (phase, message), n in ranked[:limit]:
        failure_class, error_type, http_status = sample[(phase, message)]
        out.append(
            {
                "phase": phase,
                "message": message,
                "count": n,
                "failure_class": failure_class,
                "error_type": error_type,
                "http_status": http_status,
            }
        )
    return out


# ---------------------------------------------------------------------------
# Submission segments

SEGMENTS = ("first_25pct", "middle_50pct", "last_25pct")


def submission_segments(records: Sequence[dict]) -> list:
    """Create latency by position in submission order (sandbox_idx).

    With n records sorted by sandbox_idx and q = n // 4, the segments are
    positions [0, q), [q, n - q) and [n - q, n): the outer two are equal in
    size and the middle takes the remainder. It shows whether the provider
    slowed down (or started refusing) as the burst went on.
    """
    ordered = sorted(records, key=lambda r: r["sandbox_idx"])
    n = len(ordered)
    q = n // 4
    bounds = ((0, q), (q, n - q), (n - q, n))
    out = []
    for name, (lo, hi) in zip(SEGMENTS, bounds):
        part = ordered[lo:hi]
        lat = sorted(
            r["latency_ms"] for r in part if r.get("status") in _CREATE_OK and r.get("latency_ms") is not None
        )
        ok = sum(1 for r in part if r.get("status") == "success")
        out.append(
            {
                "segment": name,
                "idx_from": part[0]["sandbox_idx"] if part else None,
                "idx_to": part[-1]["sandbox_idx"] if part else None,
                "count": len(part),
                "success": ok,
                "success_rate": round(ok / len(part), 6) if part else None,
                "p50": percentile(lat, 50),
                "p95": percentile(lat, 95),
                "p99": percentile(lat, 99),
                "max": lat[-1] if lat else None,
            }
        )
    return out


# ---------------------------------------------------------------------------
# Concurrency sweep


def sweep(starts: Sequence[float], ends: Sequence[float], t0: float, t1: float, closed: bool = True) -> dict:
    """Exact sweep over intervals [starts[i], ends[i]] inside [t0, t1].

    closed=True (sandboxes): starts count before ends at equal times, so the
    count at instant t is #{i : start_i <= t} - #{i : end_i < t} =
    #{i : start_i <= t <= end_i} (given end_i >= start_i). closed=False
    (requests): ends count first, intervals are [start, end), so a request
    that ends at the instant its successor phase starts is not counted twice. The count only rises at a start, so the peak
    is the largest count seen at a start instant, and the maximum over a
    second is the larger of the count at the second's first instant and
    the counts at the starts inside it. Both are read with binary searches
    over the two sorted lists, which keeps the loops in C: at 100k
    sandboxes (400k requests) a Python event loop was the slowest part.

    Returns the peak, the first instant it is reached, the time-weighted
    mean over [t0, t1] (sum of interval lengths / (t1 - t0)), and the 1 Hz
    timeline of per-second maxima: second k covers [t0 + k, t0 + k + 1),
    and the last second also holds the instant t1.
    """
    span = max(t1 - t0, 0.0)
    seconds = max(int(math.ceil(span)), 1)
    s = sorted(starts)
    e = sorted(ends)
    if not s:
        return {"peak": 0, "peak_t": None, "mean": 0.0, "timeline": [0] * seconds}
    ended = bisect_left if closed else bisect_right  # ends strictly before t, or at/before t
    # counts[k] = (k + 1) - #ended by s[k]: exact for the last of a group of equal
    # starts and an undercount for the others at that same instant, so the
    # maxima (all that is read from it) are exact and it saves a search per start.
    counts = list(map(operator.sub, range(1, len(s) + 1), map(ended, repeat(e), s)))
    peak = max(counts)
    peak_t = s[counts.index(peak)] if peak else None
    timeline = []
    n = len(s)
    for k in range(seconds):
        lo = t0 + k
        a = bisect_left(s, lo)
        b = n if k == seconds - 1 else bisect_left(s, lo + 1)
        at_lo = bisect_right(s, lo) - ended(e, lo)
        timeline.append(max(at_lo, max(counts[a:b])) if b > a else at_lo)
    area = math.fsum(chain(e, map(operator.neg, s)))  # one exactly rounded sum: no cancellation
    return {
        "peak": peak,
        "peak_t": peak_t,
        "mean": (area / span) if span > 0 else float(peak),
        "timeline": timeline,
    }


_PHASE_KEYS = tuple((p, f"{p}_started_at", f"{p}_ended_at") for p in PHASES)


def _times(values: Sequence[Optional[str]]) -> list:
    """A column of ISO strings (or nulls) to epoch seconds, with the parser inlined for speed."""
    try:
        return [_fromiso(v).timestamp() if v else None for v in values]
    except (ValueError, TypeError):
        return [ts(v) for v in values]


def _extremes(values: Sequence[Optional[str]]) -> list:
    """The earliest and latest of a column of timestamps, as epoch seconds.

    Our own timestamps are fixed-width UTC strings, whose string order is
    time order, so only the two extremes need parsing; any other spelling
    falls back to parsing the whole column.
    """
    xs = [v for v in values if v]
    if not xs:
        return []
    if set(map(len, xs)) == {27} and all(map(str.endswith, xs, repeat("Z"))):
        return [ts(min(xs)), ts(max(xs))]
    return _times(xs)


def _bounds(columns: Iterable[list]) -> tuple:
    lo = hi = None
    for col in columns:
        xs = [x for x in col if x is not None]
        if xs:
            a, b = min(xs), max(xs)
            lo = a if lo is None or a < lo else lo
            hi = b if hi is None or b > hi else hi
    return lo, hi


def concurrency(records: Sequence[dict]) -> dict:
    """concurrency_summary, concurrency_timeline and in_flight_timeline (see module doc).

    The run spans from the earliest to the latest timestamp found in any
    record (started_at, completed_at and every phase's start and end).
    """
    cols = {}
    for _p, sk, ek in _PHASE_KEYS:
        cols[sk] = _times([r.get(sk) for r in records])
        cols[ek] = _times([r.get(ek) for r in records])
    edges = [_extremes([r.get("started_at") for r in records]), _extremes([r.get("completed_at") for r in records])]
    t0, t1 = _bounds(list(cols.values()) + edges)
    if t0 is None:
        return {
            "concurrency_summary": {
                "peak_concurrent": 0,
                "peak_t_ms": None,
                "mean_concurrent": 0.0,
                "total_run_ms": 0.0,
                "open_ended": 0,
                "peak_in_flight": 0,
                "run_started_at": None,
                "run_ended_at": None,
            },
            "concurrency_timeline": [],
            "in_flight_timeline": [],
        }
    # sandboxes: [create_ended_at, destroy_ended_at or t1]
    created = cols["create_ended_at"]
    destroyed = cols["destroy_ended_at"]
    starts, ends = [], []
    open_ended = 0
    for r, s, e in zip(records, created, destroyed):
        if s is None or r.get("sandbox_id") is None:
            continue
        if e is None:
            open_ended += 1
            e = t1
        starts.append(s)
        ends.append(e if e >= s else s)
    sb = sweep(starts, ends, t0, t1)
    # requests: [P_started_at, P_ended_at or t1] for every phase that started
    rs, re_ = [], []
    for _p, sk, ek in _PHASE_KEYS:
        rs += [s for s in cols[sk] if s is not None]
        re_ += [t1 if e is None else (e if e >= s else s) for s, e in zip(cols[sk], cols[ek]) if s is not None]
    fl = sweep(rs, re_, t0, t1, closed=False)
    return {
        "concurrency_summary": {
            "peak_concurrent": sb["peak"],
            "peak_t_ms": round((sb["peak_t"] - t0) * 1000.0, 3) if sb["peak_t"] is not None else None,
            "mean_concurrent": round(sb["mean"], 3),
            "total_run_ms": round((t1 - t0) * 1000.0, 3),
            "open_ended": open_ended,
            "peak_in_flight": fl["peak"],
            "run_started_at": iso(t0),
            "run_ended_at": iso(t1),
        },
        "concurrency_timeline": [{"t_s": k, "concurrent": c} for k, c in enumerate(sb["timeline"])],
        "in_flight_timeline": [{"t_s": k, "in_flight": c} for k, c in enumerate(fl["timeline"])],
    }


# ---------------------------------------------------------------------------
# Generator health


def metrics_summary(samples: Optional[Sequence[dict]]) -> dict:
    """Per-process health and the verdict on whether the generator was the bottleneck.

    For each process: sample count, CPU max and the fraction of samples at or
    above CPU_BUSY_PERCENT (of one core: a gevent process runs on one), hub
    lag max (of the per-second maxima) and p99 (nearest rank over the
    per-second p99 values), peak RSS, open fds, in flight and held. A
    process is saturated when hub_lag_p99_ms > HUB_LAG_P99_LIMIT_MS or
    cpu_busy_fraction > CPU_BUSY_FRACTION_LIMIT. Returns the summary plus
    ``generator_saturated`` and ``generator_saturated_reason``.
    """
    samples = samples or []
    by_proc: dict = {}
    for m in samples:
        by_proc.setdefault(str(m.get("process", "?")), []).append(m)
    procs = {}
    reasons = []
    for name in sorted(by_proc):
        ms = by_proc[name]
        cpu = [float(m["cpu_percent"]) for m in ms if m.get("cpu_percent") is not None]
        lag = [m.get("hub_lag_ms") or {} for m in ms]
        lag_p99 = sorted(float(x["p99"]) for x in lag if x.get("p99") is not None)
        lag_max = [float(x["max"]) for x in lag if x.get("max") is not None]
        busy = sum(1 for c in cpu if c >= CPU_BUSY_PERCENT)
        p = {
            "samples": len(ms),
            "cpu_percent_max": max(cpu) if cpu else None,
            "cpu_percent_mean": round(math.fsum(cpu) / len(cpu), 3) if cpu else None,
            "cpu_busy_fraction": round(busy / len(cpu), 6) if cpu else 0.0,
            "hub_lag_max_ms": max(lag_max) if lag_max else None,
            "hub_lag_p99_ms": percentile(lag_p99, 99),
            "rss_bytes_max": _max_of(ms, "rss_bytes"),
            "open_fds_max": _max_of(ms, "open_fds"),
            "in_flight_max": _max_of(ms, "in_flight"),
            "held_max": _max_of(ms, "held"),
            "loadavg_1m_max": max((m["loadavg"][0] for m in ms if m.get("loadavg")), default=None),
        }
        why = []
        if p["hub_lag_p99_ms"] is not None and p["hub_lag_p99_ms"] > HUB_LAG_P99_LIMIT_MS:
            why.append(f"hub lag p99 {p['hub_lag_p99_ms']:.0f} ms > {HUB_LAG_P99_LIMIT_MS:.0f} ms")
        if cpu and p["cpu_busy_fraction"] > CPU_BUSY_FRACTION_LIMIT:
            why.append(
                f"CPU >= {CPU_BUSY_PERCENT:.0f}% in {p['cpu_busy_fraction'] * 100:.1f}% of samples "
                f"(limit {CPU_BUSY_FRACTION_LIMIT * 100:.0f}%)"
            )
        p["saturated"] = bool(why)
        procs[name] = p
        if why:
            reasons.append(f"{name}: " + " and ".join(why))
    peak = lambda key: max((p[key] for p in procs.values() if p[key] is not None), default=None)  # noqa: E731
    summary = {
        "samples": len(samples),
        "processes": procs,
        "peak_cpu_percent": peak("cpu_percent_max"),
        "peak_hub_lag_ms": peak("hub_lag_max_ms"),
        "peak_rss_bytes": peak("rss_bytes_max"),
        "peak_open_fds": peak("open_fds_max"),
        "peak_loadavg_1m": peak("loadavg_1m_max"),
        "thresholds": {
            "hub_lag_p99_ms": HUB_LAG_P99_LIMIT_MS,
            "cpu_busy_percent": CPU_BUSY_PERCENT,
            "cpu_busy_fraction": CPU_BUSY_FRACTION_LIMIT,
        },
    }
    return {
        "metrics_summary": summary,
        "generator_saturated": bool(reasons),
        "generator_saturated_reason": "; ".join(reasons) if reasons else None,
    }


def _max_of(samples: Sequence[dict], key: str):
    return max((m[key] for m in samples if m.get(key) is not None), default=None)


# ---------------------------------------------------------------------------
# Clock offsets


def estimate_clock_offset(samples: Iterable[Sequence[float]]) -> dict:
    """A worker's clock offset from round trips (t_send_master, t_worker, t_recv_master).

    The sample with the smallest round trip bounds the error best (Cristian's
    algorithm): the worker read its clock somewhere inside that round trip,
    so offset = t_worker - (t_send + t_recv) / 2 is off by at most rtt / 2.
    A worker timestamp minus offset_s is on the master's clock. Samples with
    a negative round trip are ignored; no usable sample raises ValueError.
    """
    samples = list(samples)
    best = None
    for t_send, t_worker, t_recv in samples:
        rtt = t_recv - t_send
        if rtt < 0:
            continue
        if best is None or rtt < best[0]:
            best = (rtt, t_send, t_worker, t_recv)
    if best is None:
        raise ValueError("estimate_clock_offset: no round trip with t_recv >= t_send")
    rtt, t_send, t_worker, t_recv = best
    return {
        "offset_s": t_worker - (t_send + t_recv) / 2.0,
        "uncertainty_s": rtt / 2.0,
        "rtt_s": rtt,
        "samples": len(samples),
    }


# ---------------------------------------------------------------------------
# Leaks and the entry point


def leaks(records: Sequence[dict]) -> list:
    """Created sandboxes (sandbox_id not null) whose destroy_ok is not true: what `loadgen reap` must find."""
    return [
        {
            "sandbox_idx": r.get("sandbox_idx"),
            "sandbox_id": r.get("sandbox_id"),
            "worker_id": r.get("worker_id"),
            "destroy_ok": r.get("destroy_ok"),
            "destroy_failure_class": r.get("destroy_failure_class"),
            "destroy_error_message": r.get("destroy_error_message"),
        }
        for r in records
        if r.get("sandbox_id") is not None and r.get("destroy_ok") is not True
    ]


def phase_values(records: Sequence[dict]) -> dict:
    """The per-phase samples behind each distribution (successful phases only; see module doc)."""
    create, first, tti, live, destroy = [], [], [], [], []
    for r in records:
        status = r.get("status")
        if status in _CREATE_OK:
            lat = r.get("latency_ms")
            if lat is not None:
                create.append(lat)
            if status in _READY_OK:
                fc = r.get("first_command_ms")
                if fc is not None:
                    first.append(fc)
                    if lat is not None:
                        tti.append(lat + fc)
                if status == "success" and r.get("liveness_ms") is not None:
                    live.append(r["liveness_ms"])
        if r.get("destroy_ok") is True and r.get("destroy_ms") is not None:
            destroy.append(r["destroy_ms"])
    return {"create": create, "first_command": first, "tti": tti, "liveness": live, "destroy": destroy}


def compute(records: Sequence[dict], metrics: Optional[Sequence[dict]] = None) -> dict:
    """Every statistic of a run, under its meta.json key (docs/report.md defines each)."""
    records = list(records)
    n = len(records)
    values = phase_values(records)
    statuses = status_histogram(records)
    by_phase = failure_class_by_phase(records)
    leaked = leaks(records)
    out = {
        "schema_version": SCHEMA_VERSION,
        "sandboxes_attempted": n,
        "status_histogram": statuses,
        "success_rate": round(statuses["success"] / n, 6) if n else None,
        "failure_class_histogram": failure_class_histogram(records),
        "create_failure_class": dict(by_phase["create"]),
        "failure_class_by_phase": by_phase,
        "top_errors": top_errors(records),
        "latency_distribution": distribution(values["create"]),
        "first_command_distribution": distribution(values["first_command"]),
        "tti_distribution": distribution(values["tti"]),
        "liveness_distribution": distribution(values["liveness"]),
        "destroy_distribution": distribution(values["destroy"]),
        "submission_segments": submission_segments(records),
        "leaks": leaked,
        "leak_count": len(leaked),
    }
    out.update(concurrency(records))
    out.update(metrics_summary(metrics))
    return out


__all__ = [
    "SCHEMA_VERSION",
    "compute",
    "concurrency",
    "distribution",
    "estimate_clock_offset",
    "failure_class_by_phase",
    "failure_class_histogram",
    "leaks",
    "metrics_summary",
    "nearest_rank",
    "percentile",
    "phase_values",
    "status_histogram",
    "submission_segments",
    "sweep",
    "top_errors",
    "ts",
]
