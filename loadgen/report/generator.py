"""How busy the generator itself was, and whether it, not the provider, was the bottleneck.

Generator saturation
    See ``metrics_summary``: a process is saturated when its hub lag p99
    exceeds HUB_LAG_P99_LIMIT_MS or its CPU is at or above CPU_BUSY_PERCENT
    in more than CPU_BUSY_FRACTION_LIMIT of its samples.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from loadgen.report.percentiles import percentile

# Generator-health thresholds (docs/report.md, "Generator saturation").
HUB_LAG_P99_LIMIT_MS = 100.0
CPU_BUSY_PERCENT = 90.0
CPU_BUSY_FRACTION_LIMIT = 0.10


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
# The generator's share of each record


GENERATOR_DELAY_LIMIT_MS = 10.0
_GEN_PHASES = ("create", "readiness", "liveness", "destroy")


def generator_share(records: Sequence[dict]) -> dict:
    """How long this tool itself held each phase, from the per-record ``*_gen_before_ms`` /
    ``*_gen_after_ms`` fields (wire-timed adapters), and how many sandboxes it delayed.

    Before: from the lifecycle starting the phase to the request's wire start
    (this process queueing the request). After: from the answer's arrival to
    the lifecycle seeing it. A wire-timed latency leaves both out, but a
    sandbox whose requests the generator held was not started when the
    schedule said, so a run reports them. A sandbox is *delayed* when any of
    its phases was held more than GENERATOR_DELAY_LIMIT_MS in all (before +
    after); the worst is the largest such hold.
    """
    from loadgen.report.percentiles import distribution

    per_phase = {}
    for phase in _GEN_PHASES:
        before = [r.get(f"{phase}_gen_before_ms") for r in records]
        after = [r.get(f"{phase}_gen_after_ms") for r in records]
        per_phase[phase] = {"before": distribution(before), "after": distribution(after)}
    held = []
    worst = None
    measured = 0
    for r in records:
        best = None
        for phase in _GEN_PHASES:
            b, a = r.get(f"{phase}_gen_before_ms"), r.get(f"{phase}_gen_after_ms")
            if b is None and a is None:
                continue
            total = (b or 0.0) + (a or 0.0)
            if best is None or total > best[0]:
                best = (total, phase)
        if best is None:
            continue
        measured += 1
        held.append(best[0])
        if worst is None or best[0] > worst["held_ms"]:
            worst = {"sandbox_idx": r.get("sandbox_idx"), "phase": best[1], "held_ms": round(best[0], 3)}
    delayed = sum(1 for h in held if h > GENERATOR_DELAY_LIMIT_MS)
    return {
        "sandboxes_measured": measured,
        "wire_timed": sum(1 for r in records if r.get("wire_timed")),
        "held_ms": distribution(held),
        "per_phase": per_phase,
        "limit_ms": GENERATOR_DELAY_LIMIT_MS,
        "delayed": delayed,
        "delayed_share": round(delayed / measured, 6) if measured else None,
        "worst": worst,
    }
