"""Exact statistics over a run's result records: the figures of meta.json.

Every number a reader compares across providers comes from here, so each one
has a single written definition, and the functions are pure (records in,
plain dicts out): the master, ``loadgen report`` and the tests compute the
same figures from the same raw.jsonl, with or without a meta.json.

Definitions (docs/report.md repeats them for readers of the output):

Percentile
    Nearest rank, and only nearest rank: see ``loadgen.report.percentiles``.

Which records a distribution covers
    Only phases that succeeded: create latency over records whose create
    succeeded (status is not ``failed``); first command and TTI
    (``latency_ms + first_command_ms``) over records whose readiness
    succeeded (``success`` or ``partial``); liveness over ``success``;
    destroy over ``destroy_ok is True``. A failed phase's duration is a
    timeout setting or an error's speed, not the provider's speed.

Concurrency and 1 Hz timelines
    The exact sweep: see ``loadgen.report.concurrency``.

Generator saturation
    See ``loadgen.report.generator``.

Start lateness, wall clock, time to first ready, ramp profile
    See ``loadgen.report.pacing``.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

from loadgen.report.concurrency import concurrency, sweep, ts
from loadgen.report.generator import (  # noqa: F401  the thresholds are part of this module's vocabulary
    CPU_BUSY_FRACTION_LIMIT,
    CPU_BUSY_PERCENT,
    HUB_LAG_P99_LIMIT_MS,
    generator_share,
    metrics_summary,
)
from loadgen.report.pacing import LATENESS_P99_LIMIT_MS, pacing  # noqa: F401
from loadgen.report.percentiles import (  # noqa: F401
    PERCENTILES,
    SEED_NAMES,
    distribution,
    nearest_rank,
    percentile,
    with_seed_names,
)
from loadgen.report.reuse import reuse_summary
from loadgen.result import FAILURE_CLASSES, PHASES, STATUSES, FailureClass, was_destroyed

# 2: distributions also carry the seed's *_ms names; the seed's top-level figures; time_to_live
SCHEMA_VERSION = 2

TOP_ERRORS = 10

_CREATE_OK = frozenset(("success", "partial", "readiness_failed"))
_READY_OK = frozenset(("success", "partial"))
_PHASE_OF_STATUS = {"failed": "create", "readiness_failed": "readiness", "partial": "liveness"}


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
    """Created sandboxes (sandbox_id not null) that no destroy removed (neither the first attempt,
    ``destroy_ok``, nor a retry in ``destroy_retries``): what `loadgen reap` must find."""
    return [
        {
            "sandbox_idx": r.get("sandbox_idx"),
            "sandbox_id": r.get("sandbox_id"),
            "worker_id": r.get("worker_id"),
            "destroy_ok": r.get("destroy_ok"),
            "destroy_failure_class": r.get("destroy_failure_class"),
            "destroy_error_message": r.get("destroy_error_message"),
            "destroy_retries": len(r.get("destroy_retries") or ()),
        }
        for r in records
        if r.get("sandbox_id") is not None and not was_destroyed(r)
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


def compute(records: Sequence[dict], metrics: Optional[Sequence[dict]] = None, mode: Optional[str] = None) -> dict:
    """Every statistic of a run, under its meta.json key (docs/report.md defines each).

    ``mode`` is the run's schedule (``meta.schedule.mode``); a staggered run also gets its ramp profile."""
    records = list(records)
    n = len(records)
    values = phase_values(records)
    statuses = status_histogram(records)
    by_phase = failure_class_by_phase(records)
    leaked = leaks(records)
    generator_failed = sum(1 for r in records if r.get("failure_class") == FailureClass.GENERATOR_ERROR.value)
    provider_attempted = n - generator_failed
    out = {
        "schema_version": SCHEMA_VERSION,
        "sandboxes_attempted": n,
        "status_histogram": statuses,
        # the provider's success rate: sandboxes the generator itself failed are not the provider's
        "generator_failures": generator_failed,
        "provider_attempted": provider_attempted,
        "success_rate": round(statuses["success"] / provider_attempted, 6) if provider_attempted else None,
        "measurement_compromised": generator_failed > 0,
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
        "reuse_probe": reuse_summary(records),
    }
    out["generator_share"] = generator_share(records)
    out.update(concurrency(records))
    out.update(metrics_summary(metrics))
    out.update(pacing(records, mode))
    retried = [r for r in records if r.get("destroy_retries")]
    out["destroy_retried"] = {"sandboxes": len(retried),
                              "destroyed_by_retry": sum(1 for r in retried if was_destroyed(r))}
    for key in [k for k in out if k.endswith("_distribution")]:
        out[key] = with_seed_names(out[key])
    out.update(seed_figures(out))
    return out


def seed_figures(figures: dict) -> dict:
    """The seed system's top-level names for figures meta.json also has under loadgen's own.

    The seed's ``timeouts``, ``http_errors`` and ``network_errors`` sub-classify
    the failed creates (they sum to its ``failures``), so they read
    ``create_failure_class``; ``failure_class_histogram`` (and Postgres's
    ``runs.timeouts``) count every non-success sandbox instead."""
    statuses = figures["status_histogram"]
    creates = figures["create_failure_class"]
    return {
        "p50_latency_ms": figures["latency_distribution"]["p50"],
        "p99_latency_ms": figures["latency_distribution"]["p99"],
        "sandboxes_succeeded": statuses.get("success", 0),
        "partials": statuses.get("partial", 0),
        "readiness_failures": statuses.get("readiness_failed", 0),
        "failures": statuses.get("failed", 0),  # sandboxes whose create failed (as runs.failures)
        "timeouts": creates.get("timeout", 0),
        "http_errors": creates.get("http_error", 0),
        "network_errors": creates.get("network_error", 0),
    }


__all__ = [
    "CPU_BUSY_FRACTION_LIMIT",
    "CPU_BUSY_PERCENT",
    "HUB_LAG_P99_LIMIT_MS",
    "LATENESS_P99_LIMIT_MS",
    "PERCENTILES",
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
    "pacing",
    "percentile",
    "phase_values",
    "status_histogram",
    "submission_segments",
    "sweep",
    "top_errors",
    "ts",
]
