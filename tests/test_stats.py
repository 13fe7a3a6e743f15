"""loadgen.report.stats: definitions checked against brute force, and known answers.

The property tests restate each definition in the most literal (slow) way
and let hypothesis look for an input where the fast code disagrees.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.report import stats
from loadgen.result import FAILURE_CLASSES, STATUSES, iso

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# Percentiles


def brute_percentile(values, p):
    """Nearest rank, literally: the smallest value such that at least p% of values are <= it."""
    xs = sorted(values)
    n = len(xs)
    if p == 0:
        return xs[0]
    for v in xs:
        if Fraction(sum(1 for x in xs if x <= v) * 100, n) >= Fraction(str(p)):
            return v
    raise AssertionError("unreachable")


@FAST
@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0, 1, 10, 25, 33.3, 50, 75, 90, 95, 99, 99.9, 100]),
)
def test_percentile_matches_definition(values, p):
    assert stats.percentile(sorted(values), p) == brute_percentile(values, p)


@FAST
@given(st.integers(min_value=1, max_value=100_000))
def test_nearest_rank_exact_for_decimal_percentiles(n):
    # ceil(p/100 * n) in exact arithmetic; floats get 99.9% of 1000 wrong
    assert stats.nearest_rank(99.9, n) == -(-999 * n // 1000)
    assert stats.nearest_rank(50, n) == -(-n // 2)
    assert stats.nearest_rank(0, n) == 1
    assert stats.nearest_rank(100, n) == n


def test_nearest_rank_known():
    assert stats.nearest_rank(99.9, 1000) == 999
    assert stats.nearest_rank(99, 100) == 99
    assert stats.nearest_rank(50, 1) == 1
    with pytest.raises(ValueError):
        stats.nearest_rank(50, 0)


def test_distribution_known_and_empty():
    d = stats.distribution(range(1, 101))
    assert d == {
        "count": 100,
        "min": 1,
        "p10": 10,
        "p25": 25,
        "p50": 50,
        "p75": 75,
        "p90": 90,
        "p95": 95,
        "p99": 99,
        "p99_9": 100,
        "max": 100,
        "mean": 50.5,
    }
    e = stats.distribution([None, None])
    assert e["count"] == 0 and all(v is None for k, v in e.items() if k != "count")
    assert list(e) == list(d)


@FAST
@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=1, max_size=50))
def test_distribution_values_are_observed_and_ordered(values):
    d = stats.distribution(values)
    keys = ["min", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99_9", "max"]
    got = [d[k] for k in keys]
    assert got == sorted(got)
    assert all(v in values for v in got)
    assert d["mean"] == pytest.approx(sum(values) / len(values), abs=1e-3)


# ---------------------------------------------------------------------------
# Concurrency sweep


def brute_count(intervals, t, closed=True):
    if closed:
        return sum(1 for s, e in intervals if s <= t <= e)
    return sum(1 for s, e in intervals if s <= t < e)


def brute_sweep(intervals, t0, t1, closed=True):
    times = sorted({x for iv in intervals for x in iv})
    counts = [(brute_count(intervals, t, closed), t) for t in times]
    peak = max((c for c, _ in counts), default=0)
    peak_t = min((t for c, t in counts if c == peak), default=None) if peak else None
    seconds = max(math.ceil(t1 - t0), 1)
    timeline = []
    for k in range(seconds):
        lo, hi = t0 + k, t0 + k + 1
        last = k == seconds - 1
        cands = [lo] + [t for t in times if lo <= t and (t < hi or last)]
        timeline.append(max(brute_count(intervals, t, closed) for t in cands))
    mean = sum(e - s for s, e in intervals) / (t1 - t0) if t1 > t0 else float(peak)
    return peak, peak_t, mean, timeline


# Times on a coarse grid so that ties (a start equal to an end) are common.
_interval = st.tuples(st.integers(0, 40), st.integers(0, 15)).map(lambda a: (a[0] / 4, (a[0] + a[1]) / 4))


@FAST
@given(st.lists(_interval, max_size=40), st.booleans())
def test_sweep_matches_brute_force(intervals, closed):
    t0 = 0.0
    t1 = max([e for _, e in intervals], default=0.0) + 0.5
    got = stats.sweep([s for s, _ in intervals], [e for _, e in intervals], t0, t1, closed=closed)
    peak, peak_t, mean, timeline = brute_sweep(intervals, t0, t1, closed)
    assert got["peak"] == peak
    assert got["peak_t"] == peak_t
    assert got["mean"] == pytest.approx(mean, rel=1e-9, abs=1e-9)
    assert got["timeline"] == timeline


def test_sweep_counts_touching_intervals_as_overlapping():
    got = stats.sweep([0.0, 1.0], [1.0, 2.0], 0.0, 2.0)
    assert got["peak"] == 2 and got["peak_t"] == 1.0
    assert got["timeline"] == [1, 2]
    assert got["mean"] == pytest.approx(1.0)
    half = stats.sweep([0.0, 1.0], [1.0, 2.0], 0.0, 2.0, closed=False)
    assert half["peak"] == 1 and half["peak_t"] == 0.0 and half["timeline"] == [1, 1]


# ---------------------------------------------------------------------------
# Hand-built run: known answers

T = 1795882800.0  # 2026-11-28T16:20:00Z


def rec(idx, status, create=None, ready=None, live=None, destroy=None, **kw):
    """A record whose phases run over the given (start, end) offsets in seconds from T."""
    r = {
        "run_id": "r",
        "sandbox_idx": idx,
        "provider": "p",
        "worker_id": "w0",
        "sandbox_id": None,
        "status": status,
        "failure_class": None,
        "failed_phase": None,
        "error_message": None,
        "error_type": None,
        "http_status": None,
        "latency_ms": None,
        "first_command_ms": None,
        "liveness_ms": None,
        "destroy_ms": None,
        "destroy_ok": None,
        "destroy_failure_class": None,
        "destroy_error_message": None,
        "late_create": False,
    }
    first = last = None
    for name, span, key in (
        ("create", create, "latency_ms"),
        ("readiness", ready, "first_command_ms"),
        ("liveness", live, "liveness_ms"),
        ("destroy", destroy, "destroy_ms"),
    ):
        r[f"{name}_started_at"] = iso(T + span[0]) if span else None
        r[f"{name}_ended_at"] = iso(T + span[1]) if span and span[1] is not None else None
        if span:
            first = span[0] if first is None else first
            if span[1] is not None:
                last = span[1]
                r[key] = round((span[1] - span[0]) * 1000, 3)
    r["started_at"] = iso(T + first) if first is not None else None
    r["completed_at"] = iso(T + last) if last is not None else None
    r.update(kw)
    return r


def hand_run():
    return [
        # 0: full success; exists [1, 6]
        rec(0, "success", (0, 1), (1, 1.5), (4, 4.25), (5, 6), sandbox_id="a", destroy_ok=True),
        # 1: success, destroy failed (a leak); exists [2, 7]
        rec(
            1,
            "success",
            (0, 2),
            (2, 2.5),
            (4, 4.5),
            (6, 7),
            sandbox_id="b",
            destroy_ok=False,
            destroy_failure_class="http_error",
            destroy_error_message="500: boom",
        ),
        # 2: create timed out
        rec(
            2,
            "failed",
            (0, 3),
            failure_class="timeout",
            failed_phase="create",
            error_message="create timed out",
            latency_ms=None,
        ),
        # 3: readiness failed; exists [1, 3]
        rec(
            3,
            "readiness_failed",
            (0, 1),
            (1, 2),
            None,
            (2, 3),
            sandbox_id="d",
            destroy_ok=True,
            failure_class="other",
            failed_phase="readiness",
            error_message="exit 127",
            first_command_ms=None,
        ),
        # 4: partial (liveness failed); destroy never ended -> exists [3, run end = 8]
        rec(
            4,
            "partial",
            (0.5, 3),
            (3, 3.5),
            (4, 8),
            (8, None),
            sandbox_id="e",
            failure_class="network_error",
            failed_phase="liveness",
            error_message="reset",
            liveness_ms=None,
        ),
        # 5: create http error
        rec(
            5,
            "failed",
            (1, 1.25),
            failure_class="http_error",
            failed_phase="create",
            http_status=429,
            error_message="create timed out",
        ),
    ]


def test_known_answers():
    recs = hand_run()
    # create failures carry no latency in a real record
    recs[5]["latency_ms"] = None
    out = stats.compute(recs)
    assert out["schema_version"] == stats.SCHEMA_VERSION
    assert out["sandboxes_attempted"] == 6
    assert out["status_histogram"] == {"success": 2, "partial": 1, "readiness_failed": 1, "failed": 2}
    assert out["success_rate"] == pytest.approx(2 / 6, abs=1e-6)
    assert out["failure_class_histogram"] == {"timeout": 1, "http_error": 1, "network_error": 1, "other": 1,
                                              "generator_error": 0}
    assert out["create_failure_class"] == {"timeout": 1, "http_error": 1, "network_error": 0, "other": 0,
                                           "generator_error": 0}
    assert out["failure_class_by_phase"]["readiness"]["other"] == 1
    assert out["failure_class_by_phase"]["liveness"]["network_error"] == 1
    assert out["failure_class_by_phase"]["destroy"] == {"timeout": 0, "http_error": 1, "network_error": 0, "other": 0,
                                                        "generator_error": 0}
    assert out["top_errors"][0] == {
        "phase": "create",
        "message": "create timed out",
        "count": 2,
        "failure_class": "timeout",
        "error_type": None,
        "http_status": None,
    }
    assert {(e["phase"], e["message"]) for e in out["top_errors"]} == {
        ("create", "create timed out"),
        ("readiness", "exit 127"),
        ("liveness", "reset"),
        ("destroy", "500: boom"),
    }
    # create latency over successful creates: 1000, 2000, 1000, 2500
    lat = out["latency_distribution"]
    assert (lat["count"], lat["min"], lat["p50"], lat["max"]) == (4, 1000.0, 1000.0, 2500.0)
    assert lat["p75"] == 2000.0 and lat["mean"] == 1625.0
    # TTI over ready records (0, 1, 4): 1500, 2500, 3000
    tti = out["tti_distribution"]
    assert (tti["count"], tti["min"], tti["p50"], tti["max"]) == (3, 1500.0, 2500.0, 3000.0)
    assert out["first_command_distribution"]["count"] == 3
    assert out["liveness_distribution"]["count"] == 2 and out["liveness_distribution"]["max"] == 500.0
    # destroy over destroy_ok True: records 0 and 3 -> 1000 ms each
    assert out["destroy_distribution"]["count"] == 2 and out["destroy_distribution"]["p50"] == 1000.0
    # leaks: created and destroy_ok not true (1: false, 4: null)
    assert [(x["sandbox_idx"], x["sandbox_id"]) for x in out["leaks"]] == [(1, "b"), (4, "e")]
    assert out["leak_count"] == 2
    # concurrency: exists [1,6], [2,7], [1,3], [3,8]; run [0, 8]
    c = out["concurrency_summary"]
    assert c["peak_concurrent"] == 4 and c["peak_t_ms"] == 3000.0
    assert c["total_run_ms"] == 8000.0 and c["open_ended"] == 1
    assert c["mean_concurrent"] == pytest.approx((5 + 5 + 2 + 5) / 8)
    assert c["run_started_at"] == "2026-11-28T16:20:00.000000Z"
    assert [x["concurrent"] for x in out["concurrency_timeline"]] == [0, 2, 3, 4, 3, 3, 3, 2]
    assert [x["t_s"] for x in out["concurrency_timeline"]] == list(range(8))
    # requests in flight (half-open): 0:[0,1),[1,1.5),[4,4.25),[5,6); 1:[0,2),[2,2.5),[4,4.5),[6,7);
    # 2:[0,3); 3:[0,1),[1,2),[2,3); 4:[0.5,3),[3,3.5),[4,8),[8,8); 5:[1,1.25)
    assert [x["in_flight"] for x in out["in_flight_timeline"]] == [5, 6, 4, 1, 3, 2, 2, 1]
    assert c["peak_in_flight"] == 6
    segs = out["submission_segments"]
    assert [s["segment"] for s in segs] == ["first_25pct", "middle_50pct", "last_25pct"]
    assert [s["count"] for s in segs] == [1, 4, 1]
    assert segs[0]["p50"] == 1000.0 and segs[2]["p50"] is None and segs[2]["success"] == 0
    assert segs[1]["idx_from"] == 1 and segs[1]["idx_to"] == 4
    assert out["generator_saturated"] is False and out["metrics_summary"]["samples"] == 0


def test_compute_has_every_meta_key_on_empty_input():
    out = stats.compute([])
    for key in (
        "sandboxes_attempted",
        "status_histogram",
        "failure_class_histogram",
        "create_failure_class",
        "failure_class_by_phase",
        "top_errors",
        "latency_distribution",
        "first_command_distribution",
        "tti_distribution",
        "liveness_distribution",
        "destroy_distribution",
        "submission_segments",
        "concurrency_summary",
        "concurrency_timeline",
        "in_flight_timeline",
        "metrics_summary",
        "generator_saturated",
        "generator_saturated_reason",
        "leaks",
        "schema_version",
    ):
        assert key in out
    assert set(out["status_histogram"]) == set(STATUSES)
    assert set(out["failure_class_histogram"]) == set(FAILURE_CLASSES)
    assert out["concurrency_summary"]["peak_concurrent"] == 0


_status = st.sampled_from(STATUSES)


@FAST
@given(st.lists(st.tuples(_status, st.integers(0, 20), st.integers(0, 12), st.booleans()), min_size=1, max_size=30))
def test_run_concurrency_matches_brute_force(rows):
    recs = []
    for i, (status, start, dur, destroyed) in enumerate(rows):
        a = start / 2
        if status == "failed":
            recs.append(rec(i, status, (a, a + dur / 4), failure_class="timeout"))
            continue
        end = (a + dur / 2, a + dur / 2 + 0.5) if destroyed else (a + dur / 2, None)
        recs.append(rec(i, status, (a, a + 0.25), None, None, end, sandbox_id=f"s{i}", destroy_ok=destroyed))
    out = stats.compute(recs)
    times = [
        stats.ts(r[k])
        for r in recs
        for k in r
        if k.endswith("_at") and r[k]
    ]
    t0, t1 = min(times), max(times)
    ivs = []
    for r in recs:
        if r["sandbox_id"] is None:
            continue
        s = stats.ts(r["create_ended_at"])
        e = stats.ts(r["destroy_ended_at"]) if r["destroy_ended_at"] else t1
        ivs.append((s - t0, e - t0))
    peak, peak_t, mean, timeline = brute_sweep(ivs, 0.0, t1 - t0)
    c = out["concurrency_summary"]
    assert c["peak_concurrent"] == peak
    assert [x["concurrent"] for x in out["concurrency_timeline"]] == timeline
    assert c["mean_concurrent"] == pytest.approx(mean, abs=2e-3)
    assert sum(out["status_histogram"].values()) == len(recs)


# ---------------------------------------------------------------------------
# Generator health and clock offsets


def sample(process, cpu, lag_p99, t=0.0):
    return {
        "t": t,
        "process": process,
        "cpu_percent": cpu,
        "rss_bytes": 1,
        "hub_lag_ms": {"p50": 1, "p99": lag_p99, "max": lag_p99 * 2},
        "open_fds": 3,
        "loadavg": [0.5, 0.4, 0.3],
        "in_flight": 2,
        "held": 1,
    }


def test_generator_not_saturated_under_thresholds():
    ms = [sample("master", 50, 5, t) for t in range(20)] + [sample("w0", 95 if t < 2 else 10, 20, t) for t in range(20)]
    out = stats.metrics_summary(ms)
    assert out["generator_saturated"] is False and out["generator_saturated_reason"] is None
    assert out["metrics_summary"]["processes"]["w0"]["cpu_busy_fraction"] == 0.1  # exactly 10%: not more
    assert out["metrics_summary"]["peak_hub_lag_ms"] == 40


def test_generator_saturated_by_cpu_or_hub_lag():
    ms = [sample("w0", 95 if t < 3 else 10, 5, t) for t in range(20)]
    ms += [sample("w1", 10, 150 if t == 0 else 5, t) for t in range(200)]
    ms += [sample("w2", 10, 150, t) for t in range(20)]
    out = stats.metrics_summary(ms)
    assert out["generator_saturated"] is True
    reason = out["generator_saturated_reason"]
    assert "w0: CPU >= 90% in 15.0% of samples" in reason
    assert "w2: hub lag p99 150 ms > 100 ms" in reason
    assert "w1" not in reason  # one slow second in 200 is under the p99 rank (198th of 200)
    procs = out["metrics_summary"]["processes"]
    assert procs["w0"]["saturated"] and not procs["w1"]["saturated"] and procs["w2"]["saturated"]


def test_estimate_clock_offset_picks_smallest_round_trip():
    samples = [(10.0, 15.2, 10.4), (20.0, 25.05, 20.1), (30.0, 36.0, 30.9), (40.0, 1.0, 39.0)]
    out = stats.estimate_clock_offset(samples)
    assert out["rtt_s"] == pytest.approx(0.1)
    assert out["offset_s"] == pytest.approx(5.0)
    assert out["uncertainty_s"] == pytest.approx(0.05)
    assert out["samples"] == 4
    with pytest.raises(ValueError):
        stats.estimate_clock_offset([])


@FAST
@given(
    st.floats(-1e4, 1e4),
    st.lists(st.tuples(st.floats(0, 1e3), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20),
)
def test_clock_offset_true_offset_within_uncertainty(offset, trips):
    samples = []
    for send, frac, rtt in trips:
        samples.append((send, send + frac * rtt + offset, send + rtt))
    out = stats.estimate_clock_offset(samples)
    assert abs(out["offset_s"] - offset) <= out["uncertainty_s"] + 1e-6


# ---------------------------------------------------------------------------
# Invariants over arbitrary records, and the documentation


_opt_ms = st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))
_record = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "failure_class": st.one_of(st.none(), st.sampled_from(FAILURE_CLASSES)),
        "failed_phase": st.one_of(st.none(), st.sampled_from(["create", "readiness", "liveness"])),
        "sandbox_id": st.one_of(st.none(), st.just("sbx")),
        "latency_ms": _opt_ms,
        "first_command_ms": _opt_ms,
        "liveness_ms": _opt_ms,
        "destroy_ms": _opt_ms,
        "destroy_ok": st.one_of(st.none(), st.booleans()),
        "error_message": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        "create_ended_at": st.one_of(st.none(), st.integers(0, 100).map(lambda s: iso(T + s))),
        "destroy_ended_at": st.one_of(st.none(), st.integers(100, 200).map(lambda s: iso(T + s))),
    }
)


@FAST
@given(st.lists(_record, max_size=25))
def test_invariants_on_arbitrary_records(recs):
    for i, r in enumerate(recs):
        r["sandbox_idx"] = i
    out = stats.compute(recs)
    n = len(recs)
    non_success = sum(1 for r in recs if r["status"] != "success")
    assert sum(out["status_histogram"].values()) == n
    assert sum(out["failure_class_histogram"].values()) == non_success
    by_phase = out["failure_class_by_phase"]
    assert sum(sum(by_phase[p].values()) for p in ("create", "readiness", "liveness")) == non_success
    assert sum(by_phase["destroy"].values()) == sum(1 for r in recs if r["destroy_ok"] is False)
    assert sum(s["count"] for s in out["submission_segments"]) == n
    assert out["leak_count"] == sum(1 for r in recs if r["sandbox_id"] and r["destroy_ok"] is not True)
    assert out["tti_distribution"]["count"] <= out["latency_distribution"]["count"]
    assert out["concurrency_summary"]["peak_concurrent"] <= sum(1 for r in recs if r["sandbox_id"])
    assert len(out["top_errors"]) <= stats.TOP_ERRORS


def test_docs_define_every_meta_key():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "report.md").read_text()
    for key in stats.compute([]):
        assert f"| `{key}` |" in doc, f"docs/report.md does not define meta key {key}"
