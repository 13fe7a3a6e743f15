"""How many sandboxes existed, and how many requests were in flight, at every instant of a run.

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

Time to N live
    From the first create's start (the earliest ``create_started_at``) to
    the first instant at which ceil(f × E) sandboxes existed at once, for f
    = 50%, 90%, 99% and 100% of E, the number of sandboxes that ever existed;
    and to the first instant of the peak. A sandbox that existed is counted
    over the same closed interval as above (a destroy that failed and was
    retried ends with the retry that succeeded). Peak live during the hold
    is the most sandboxes held at once: ready (their readiness passed) and
    in their hold, over [readiness_ended_at, liveness_started_at].
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left, bisect_right
from datetime import datetime
from itertools import chain, repeat
from typing import Iterable, Optional, Sequence

from loadgen.result import PHASES, destroyed_at, iso, parse_iso

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
    counts = _counts(s, e, closed)
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


def _counts(s: Sequence[float], e: Sequence[float], closed: bool = True) -> list:
    """The count at each start of sorted starts ``s``, given sorted ends ``e``.

    counts[k] = (k + 1) - #ended by s[k]: exact for the last of a group of
    equal starts and an undercount for the others at that same instant, so
    maxima and "first start at which the count reaches K" (all that is read
    from it) are exact, and it saves a search per start."""
    ended = bisect_left if closed else bisect_right
    return list(map(operator.sub, range(1, len(s) + 1), map(ended, repeat(e), s)))


LIVE_FRACTIONS = (("50pct", 1, 2), ("90pct", 9, 10), ("99pct", 99, 100), ("100pct", 1, 1))


def time_to_live(starts: Sequence[float], ends: Sequence[float], origin: Optional[float],
                 hold_starts: Sequence[float] = (), hold_ends: Sequence[float] = ()) -> dict:
    """time_to_live (see module doc): existence intervals [starts[i], ends[i]], times in epoch seconds."""
    n = len(starts)
    out = {"ever_alive": n, "from": iso(origin)}
    s, e = sorted(starts), sorted(ends)
    counts = _counts(s, e) if n else []

    def since(t):
        return None if t is None or origin is None else round((t - origin) * 1000.0, 3)

    for name, num, den in LIVE_FRACTIONS:
        target = -(-num * n // den)  # ceil, in integers
        reached = next((i for i, c in enumerate(counts) if c >= target), None) if n else None
        out[f"live_{name}"] = target
        out[f"to_{name}_ms"] = since(s[reached]) if reached is not None else None
    peak = max(counts) if counts else 0
    out["peak_live"] = peak
    out["to_peak_ms"] = since(s[counts.index(peak)]) if peak else None
    held = _counts(sorted(hold_starts), sorted(hold_ends)) if hold_starts else []
    out["peak_live_during_hold"] = max(held) if held else 0
    return out


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
            "time_to_live": time_to_live([], [], None),
        }
    # sandboxes: [create_ended_at, the end of the destroy that removed it, else destroy_ended_at, else t1]
    created = cols["create_ended_at"]
    destroyed = [d if r.get("destroy_ok") is not False else (ts(destroyed_at(r)) or d)
                 for r, d in zip(records, cols["destroy_ended_at"])]
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
    hs, he = [], []  # holds: [readiness_ended_at, liveness_started_at (else destroy start, else t1)]
    for r, ready, live, destroy in zip(records, cols["readiness_ended_at"], cols["liveness_started_at"],
                                       cols["destroy_started_at"]):
        if ready is not None and r.get("status") in ("success", "partial"):
            end = live if live is not None else (destroy if destroy is not None else t1)
            hs.append(ready)
            he.append(max(end, ready))
    first_create = min((t for t in cols["create_started_at"] if t is not None), default=None)
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
        "time_to_live": time_to_live(starts, ends, first_create, hs, he),
    }
