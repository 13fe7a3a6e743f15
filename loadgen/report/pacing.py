"""How the run kept its schedule: start lateness, wall clock, time to first ready, the ramp profile.

Start lateness
    ``start_lateness_ms`` of a record is its ``create_started_at`` minus its
    ``scheduled_start_at`` (loadgen.engine.schedule): how long after the
    schedule said "now" the create really went out. A generator that falls
    behind (a stalled worker, a saturated hub, a slow spawn) would otherwise
    stretch the schedule silently and make the provider look better than it
    is (coordinated omission). ``lateness_distribution`` covers every record
    whose create started.

Behind schedule
    A run is behind schedule when its lateness p99 is above
    ``LATENESS_P99_LIMIT_MS`` (100 ms): then the arrival rate the provider saw
    was not the one asked for, and figures that depend on it (the burst's
    peak, the rate a limit was hit at) describe a gentler load.

Origin, wall clock and time to first ready
    The run's origin is its schedule's t0 (the earliest ``scheduled_start_at``;
    for records without one, the earliest ``create_started_at``). Wall clock
    is from the origin to the latest ``completed_at``; time to first ready is
    from the origin to the earliest ``readiness_ended_at`` of a sandbox whose
    readiness succeeded.

Ramp profile (staggered runs)
    One entry per sandbox in ``sandbox_idx`` order: ``launchedAt`` (its
    create's start) and ``readyAt`` (its readiness's end) in ms since the
    origin, and ``ttiMs`` (``latency_ms + first_command_ms``); the last two
    are null when readiness did not succeed.
"""

from __future__ import annotations

from typing import Optional, Sequence

from loadgen.report.concurrency import ts
from loadgen.report.human import count, duration_ms
from loadgen.report.percentiles import distribution

LATENESS_P99_LIMIT_MS = 100.0

_READY_OK = frozenset(("success", "partial"))


def _ms(t: Optional[float], origin: Optional[float]) -> Optional[float]:
    return None if t is None or origin is None else round((t - origin) * 1000.0, 3)


def origin_of(records: Sequence[dict]) -> Optional[float]:
    """The schedule's t0: the earliest scheduled start, else the earliest create start (epoch s)."""
    for key in ("scheduled_start_at", "create_started_at"):
        times = [t for t in (ts(r.get(key)) for r in records) if t is not None]
        if times:
            return min(times)
    return None


def lateness(records: Sequence[dict]) -> dict:
    """lateness_distribution, lateness_summary and behind_schedule (see module doc)."""
    values = [r["start_lateness_ms"] for r in records if r.get("start_lateness_ms") is not None]
    dist = distribution(values)
    over = sum(1 for v in values if v > LATENESS_P99_LIMIT_MS)
    behind = dist["p99"] is not None and dist["p99"] > LATENESS_P99_LIMIT_MS
    return {
        "lateness_distribution": dist,
        "lateness_summary": {
            "limit_ms": LATENESS_P99_LIMIT_MS,
            "over_limit": over,
            "behind_schedule": behind,
            "reason": f"start lateness p99 {duration_ms(dist['p99'])} > {duration_ms(LATENESS_P99_LIMIT_MS)} "
                      f"({count(over)} of {count(len(values))} creates more than "
                      f"{duration_ms(LATENESS_P99_LIMIT_MS)} late)"
            if behind else None,
        },
        "behind_schedule": behind,
    }


def pacing(records: Sequence[dict], mode: Optional[str] = None) -> dict:
    """Every pacing figure of meta.json: lateness, wall clock, time to first ready, and the ramp profile
    when ``mode`` is ``staggered``."""
    origin = origin_of(records)
    ends = [t for t in (ts(r.get("completed_at")) for r in records) if t is not None]
    ready = [t for t in (ts(r.get("readiness_ended_at")) for r in records if r.get("status") in _READY_OK)
             if t is not None]
    out = lateness(records)
    out["wall_clock_ms"] = _ms(max(ends), origin) if ends else None
    out["time_to_first_ready_ms"] = _ms(min(ready), origin) if ready else None
    if mode == "staggered":
        out["ramp_profile"] = ramp_profile(records, origin)
    return out


def ramp_profile(records: Sequence[dict], origin: Optional[float]) -> list:
    out = []
    for r in sorted(records, key=lambda r: r["sandbox_idx"]):
        ok = r.get("status") in _READY_OK
        tti = None
        if ok and r.get("latency_ms") is not None and r.get("first_command_ms") is not None:
            tti = round(r["latency_ms"] + r["first_command_ms"], 3)
        out.append({
            "sandbox_idx": r["sandbox_idx"],
            "launchedAt": _ms(ts(r.get("create_started_at")), origin),
            "readyAt": _ms(ts(r.get("readiness_ended_at")), origin) if ok else None,
            "ttiMs": tti,
        })
    return out
