"""Time to N live, the seed's field names and the cost of a run, on hand-built records (and the seed's
names on a real run's meta.json too)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.emulator import start_emulator
from loadgen.providers.prices import PRICES, Price, PriceFileError, load_price_file, price_for
from loadgen.report import stats
from loadgen.report.concurrency import time_to_live
from loadgen.report.cost import estimate, run_cost
from loadgen.result import iso, parse_iso
from tests.locust_harness import run_locust

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_800_000_000.0


def brute_time_to(intervals, k):
    """The first instant at which at least k of the closed intervals overlap, by trying every start."""
    for t in sorted({s for s, _ in intervals}):
        if sum(1 for s, e in intervals if s <= t <= e) >= k:
            return t
    return None


@FAST
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 15)), min_size=1, max_size=40),
       st.integers(0, 5))
def test_time_to_n_live_equals_brute_force(pairs, lead):
    intervals = [(float(s), float(s + d)) for s, d in pairs]
    origin = min(s for s, _ in intervals) - lead
    out = time_to_live([s for s, _ in intervals], [e for _, e in intervals], origin)
    n = len(intervals)
    assert out["ever_alive"] == n
    for name, frac in (("50pct", 0.5), ("90pct", 0.9), ("99pct", 0.99), ("100pct", 1.0)):
        k = math.ceil(round(frac * n, 9))
        assert out[f"live_{name}"] == k
        t = brute_time_to(intervals, k)
        assert out[f"to_{name}_ms"] == (None if t is None else pytest.approx((t - origin) * 1000))
    peak = max(sum(1 for s, e in intervals if s <= t <= e) for t, _ in intervals)
    assert out["peak_live"] == peak
    assert out["to_peak_ms"] == pytest.approx((brute_time_to(intervals, peak) - origin) * 1000)


def _record(idx, create_start, created, ready, live_start, destroyed, status="success", **kw):
    rec = {
        "run_id": "r", "sandbox_idx": idx, "provider": "e2b", "sandbox_id": f"sb{idx}", "status": status,
        "started_at": iso(T0 + create_start), "completed_at": iso(T0 + destroyed),
        "create_started_at": iso(T0 + create_start), "create_ended_at": iso(T0 + created),
        "readiness_started_at": iso(T0 + created), "readiness_ended_at": iso(T0 + ready),
        "liveness_started_at": iso(T0 + live_start), "liveness_ended_at": iso(T0 + live_start + 0.1),
        "destroy_started_at": iso(T0 + destroyed - 0.1), "destroy_ended_at": iso(T0 + destroyed),
        "latency_ms": (created - create_start) * 1000, "first_command_ms": (ready - created) * 1000,
        "liveness_ms": 100.0, "destroy_ms": 100.0, "destroy_ok": True, "failure_class": None,
    }
    rec.update(kw)
    return rec


KINDS = ("destroyed", "retried", "destroy_failed", "no_sandbox", "never_destroyed")


def _hand_built(rows) -> list:
    """Records from (create start, create s, readiness s, hold s, rest s, kind), whole seconds after T0."""
    records = []
    for idx, (start, create, ready, hold, rest, kind) in enumerate(rows):
        created = start + create
        live = created + ready + hold
        r = _record(idx, start, created, created + ready, live, live + 0.1 + rest)
        if kind == "retried":  # the first destroy failed; the second retry removed it, 2 s later
            r.update(destroy_ok=False, destroy_retries=[{"ok": False, "ended_at": iso(T0 + live + 1.1 + rest)},
                                                        {"ok": True, "ended_at": iso(T0 + live + 2.1 + rest)}])
        elif kind == "destroy_failed":
            r.update(destroy_ok=False, destroy_retries=[{"ok": False, "ended_at": iso(T0 + live + 1.1 + rest)}])
        elif kind == "no_sandbox":
            r.update(status="failed", sandbox_id=None)
        elif kind == "never_destroyed":
            r.update(destroy_ok=None, destroy_ended_at=None, destroy_ms=None)
        records.append(r)
    return records


def _brute_time_to_live(records) -> dict:
    """time_to_live by its definition (docs/report.md, Concurrency), counting at every instant that matters."""
    def t(value):
        return None if value is None else parse_iso(value)

    every = [t(v) for r in records for k, v in r.items() if k.endswith("_at") and isinstance(v, str)]
    run_end = max(every)
    intervals, holds = [], []
    for r in records:
        if r["sandbox_id"] is None:
            continue
        retried = [a for a in r.get("destroy_retries") or [] if a["ok"]]
        end = t(retried[0]["ended_at"]) if r["destroy_ok"] is False and retried else t(r["destroy_ended_at"])
        intervals.append((t(r["create_ended_at"]), run_end if end is None else end))
        if r["status"] in ("success", "partial"):
            holds.append((t(r["readiness_ended_at"]), t(r["liveness_started_at"])))
    origin = min(t(r["create_started_at"]) for r in records)
    instants = sorted({x for iv in intervals for x in iv})

    def alive(at, ivs):
        return sum(1 for s, e in ivs if s <= at <= e)

    def first(k):
        return next(((at - origin) * 1000 for at in instants if alive(at, intervals) >= k), None)

    n = len(intervals)
    peak = max((alive(at, intervals) for at in instants), default=0)
    out = {"ever_alive": n, "peak_live": peak, "to_peak_ms": first(peak) if peak else None,
           "peak_live_during_hold": max((alive(at, holds) for at in {x for iv in holds for x in iv}), default=0)}
    for name, frac in (("50pct", 0.5), ("90pct", 0.9), ("99pct", 0.99), ("100pct", 1.0)):
        k = math.ceil(round(frac * n, 9))
        out[f"live_{name}"], out[f"to_{name}_ms"] = k, first(k) if n else None
    return out


@FAST
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 4), st.integers(0, 3), st.integers(0, 6),
                          st.integers(0, 6), st.sampled_from(KINDS)), min_size=1, max_size=30))
def test_time_to_n_live_of_hand_built_records_equals_brute_force(rows):
    records = _hand_built(rows)
    ttl = stats.compute(records)["time_to_live"]
    expected = _brute_time_to_live(records)
    for key, value in expected.items():
        assert ttl[key] == (value if value is None or isinstance(value, int) and "ms" not in key
                            else pytest.approx(value, abs=1e-3)), (key, ttl, expected)


def test_time_to_live_in_meta_on_a_hand_built_run():
    # four sandboxes: created at 1, 2, 3 and 4 s, all destroyed at 10 s; the last is ready only at 8 s
    records = [_record(i, 0.5 * i, 1.0 + i, 1.5 + i if i < 3 else 8.0, 9.0, 10.0) for i in range(4)]
    ttl = stats.compute(records)["time_to_live"]
    assert ttl["from"] == iso(T0)
    assert ttl["ever_alive"] == 4 and ttl["peak_live"] == 4
    assert (ttl["to_50pct_ms"], ttl["to_90pct_ms"], ttl["to_99pct_ms"], ttl["to_100pct_ms"]) == (
        2000.0, 4000.0, 4000.0, 4000.0)
    assert ttl["to_peak_ms"] == 4000.0
    # held at once: [1.5, 9], [2.5, 9], [3.5, 9], [8, 9]: all four from 8 s
    assert ttl["peak_live_during_hold"] == 4
    # a sandbox that never became ready is never held
    records[3].update(status="readiness_failed")
    assert stats.compute(records)["time_to_live"]["peak_live_during_hold"] == 3


# The seed's names, written out here as the seed's meta.json spells them (not taken from loadgen's code).
SEED_DISTRIBUTION_KEYS = ("min_ms", "p10_ms", "p25_ms", "p50_ms", "p75_ms", "p90_ms", "p95_ms", "p99_ms",
                          "p999_ms", "max_ms", "mean_ms")
LOADGEN_DISTRIBUTION_KEYS = ("min", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99_9", "max", "mean")
DISTRIBUTIONS = ("latency_distribution", "first_command_distribution", "tti_distribution",
                 "liveness_distribution", "destroy_distribution", "lateness_distribution")
FIGURES = ("p50 create", "p99 create", "succeeded", "partial", "readiness failed", "create failed",
           "create timeouts", "create http errors", "create network errors")


def read_as_the_seed(meta: dict) -> dict:
    """What a script written for the seed's meta.json reads, by the seed's names only."""
    out = dict(zip(FIGURES, (meta["p50_latency_ms"], meta["p99_latency_ms"], meta["sandboxes_succeeded"],
                             meta["partials"], meta["readiness_failures"], meta["failures"], meta["timeouts"],
                             meta["http_errors"], meta["network_errors"])))
    for dist in DISTRIBUTIONS:
        out.update({f"{dist} {i}": meta[dist][key] for i, key in enumerate(SEED_DISTRIBUTION_KEYS)})
    return out


def read_as_loadgen(meta: dict) -> dict:
    """The same figures by loadgen's own names."""
    statuses, creates = meta["status_histogram"], meta["create_failure_class"]
    out = dict(zip(FIGURES, (meta["latency_distribution"]["p50"], meta["latency_distribution"]["p99"],
                             statuses["success"], statuses["partial"], statuses["readiness_failed"],
                             statuses["failed"], creates["timeout"], creates["http_error"],
                             creates["network_error"])))
    for dist in DISTRIBUTIONS:
        out.update({f"{dist} {i}": meta[dist][key] for i, key in enumerate(LOADGEN_DISTRIBUTION_KEYS)})
    return out


def _seed_counts(records) -> dict:
    """The seed's own definitions, from the records: statuses, and failed creates by class."""
    failed = [r for r in records if r["status"] == "failed"]
    return {"succeeded": sum(r["status"] == "success" for r in records),
            "partial": sum(r["status"] == "partial" for r in records),
            "readiness failed": sum(r["status"] == "readiness_failed" for r in records),
            "create failed": len(failed),
            **{f"create {name}": sum(r["failure_class"] == cls for r in failed)
               for name, cls in (("timeouts", "timeout"), ("http errors", "http_error"),
                                 ("network errors", "network_error"))}}


def test_a_meta_json_read_with_the_seeds_names_gives_the_same_figures():
    records = [_record(i, 0.0, 0.1 * (i + 1), 0.1 * (i + 1) + 0.05, 5.0, 6.0, start_lateness_ms=float(i))
               for i in range(10)]
    records[9].update(status="failed", failure_class="timeout", sandbox_id=None)
    records[8].update(status="failed", failure_class="http_error", http_status=503, sandbox_id=None)
    records[7].update(status="failed", failure_class="network_error", sandbox_id=None)
    records[6].update(status="partial", failure_class="network_error", failed_phase="liveness")
    records[5].update(status="readiness_failed", failure_class="timeout", failed_phase="readiness")
    meta = orjson.loads(orjson.dumps(stats.compute(records)))  # as a reader of meta.json sees it
    assert meta["schema_version"] == 2
    seed = read_as_the_seed(meta)
    assert seed == read_as_loadgen(meta)
    # creates that succeeded: 100, 200, ... 700 ms; nearest rank p50 is the 4th of 7
    assert seed["p50 create"] == pytest.approx(400.0) and seed["latency_distribution 10"] == pytest.approx(400.0)
    # the seed's timeouts / http_errors / network_errors sub-classify the failed creates only
    assert {k: seed[k] for k in _seed_counts(records)} == _seed_counts(records) == {
        "succeeded": 5, "partial": 1, "readiness failed": 1, "create failed": 3,
        "create timeouts": 1, "create http errors": 1, "create network errors": 1}


def test_a_real_runs_meta_json_read_with_the_seeds_names_gives_the_same_figures(tmp_path):
    """A run against an emulator that fails creates three ways, readiness and liveness: the master's own
    meta.json, read by the seed's names and by loadgen's, gives the same figures, and the seed's
    counts are the seed's definitions over the run's records."""
    with start_emulator("fast", seed=3, fault_create_5xx=0.15, fault_create_hang=0.1, fault_reset=0.1,
                        fault_readiness=0.1, fault_died=0.1) as emu:
        run = run_locust("local.py", 60, tmp_path, ["--emulator-url", emu.url, "--run-id", "seed-names-run",
                                                    "--create-timeout", "2", "--late-create-window", "0"],
                         timeout=180)
    assert run.returncode == 0, run.output[-3000:]
    meta = run.meta
    assert meta["schema_version"] == 2
    seed = read_as_the_seed(meta)
    assert seed == read_as_loadgen(meta)
    counts = _seed_counts(run.records)
    assert {k: seed[k] for k in counts} == counts
    assert all(counts[k] > 0 for k in counts), counts  # every figure is exercised (the draws are seeded)
    assert seed["p50 create"] is not None and seed["lateness_distribution 3"] is not None


PRICE = Price("e2b", 0.00003025, "2 vCPU", "test", "https://e2b.dev/pricing")


def test_actual_cost_is_the_records_sandbox_seconds_times_the_price_and_leaks_count_their_lifetime():
    records = [_record(i, 0.0, 1.0, 1.5, 5.0, 11.0) for i in range(3)]  # 10 s each
    records.append(_record(3, 0.0, 2.0, 2.5, 5.0, 6.0, destroy_ok=False,
                           destroy_retries=[{"ok": False}, {"ok": True, "ended_at": iso(T0 + 12.0)}]))  # 10 s
    records.append(_record(4, 0.0, 1.0, 1.5, 5.0, 6.0, destroy_ok=False, destroy_retries=[{"ok": False}]))  # leak
    records.append(_record(5, 0.0, 1.0, 1.5, 5.0, 6.0, status="failed", sandbox_id=None))  # nothing made
    cost = run_cost(records, sandboxes=6, lifetime_s=900.0, price=PRICE)
    assert cost["sandbox_seconds"] == pytest.approx(40.0 + 900.0)
    assert cost["leaked"] == 1 and cost["leaked_sandbox_seconds"] == 900.0
    assert cost["usd"] == pytest.approx(940.0 * 0.00003025, abs=1e-6)
    assert cost["estimate"] == {"sandboxes": 6, "lifetime_s": 900.0, "sandbox_seconds": 5400.0,
                                "usd": pytest.approx(5400 * 0.00003025)}
    assert stats.compute(records)["leak_count"] == 1  # the retried destroy is no leak


def test_the_price_table_and_a_price_file(tmp_path):
    for provider, price in PRICES.items():
        assert price.source.startswith("https://") and price.size and price.basis and price.as_of, provider
    assert PRICES["e2b"].usd_per_sandbox_second == pytest.approx(0.00003025)
    assert PRICES["runloop"].usd_per_sandbox_second is None
    assert estimate(10, 100, PRICES["runloop"])["usd"] is None
    path = tmp_path / "prices.json"
    path.write_text('{"runloop": {"usd_per_sandbox_second": 0.00002, "as_of": "2026-11-30"}}')
    got = price_for("runloop", str(path))
    assert (got.usd_per_sandbox_second, got.as_of, got.size) == (0.00002, "2026-11-30", PRICES["runloop"].size)
    assert price_for("e2b", str(path)) == PRICES["e2b"]
    path.write_text('{"e2b": {"usd_per_sandbox_second": -1}}')
    with pytest.raises(PriceFileError, match="must be a number"):
        load_price_file(str(path))



def test_a_run_is_behind_schedule_when_its_start_lateness_p99_is_above_100_ms_and_the_summary_says_so_readably():
    from loadgen.engine.coordinator import schedule_summary_lines

    def meta_with(lateness_ms):
        records = [_record(i, 0.0, 1.0, 1.5, 5.0, 6.0, start_lateness_ms=v) for i, v in enumerate(lateness_ms)]
        return stats.compute(records)

    on_time = meta_with([5.0] * 99 + [900.0])  # p99 is the 99th of 100: one late create is not p99
    assert on_time["behind_schedule"] is False and on_time["lateness_summary"]["reason"] is None
    assert on_time["lateness_summary"]["over_limit"] == 1
    assert not any("WARNING" in line for line in schedule_summary_lines(on_time))
    at_the_bound = meta_with([5.0] * 98 + [100.0] * 2)
    assert at_the_bound["behind_schedule"] is False  # the bound itself is on time
    late = meta_with([5.0] * 98 + [1523.4567, 2000.0])
    assert late["behind_schedule"] is True and late["lateness_distribution"]["p99"] == 1523.4567
    reason = "start lateness p99 1.52 s > 100 ms (2 of 100 creates more than 100 ms late)"
    assert late["lateness_summary"] == {"limit_ms": 100.0, "over_limit": 2, "behind_schedule": True, "reason": reason}
    assert f"[summary] WARNING: creates started behind their schedule: {reason}" in schedule_summary_lines(late)
    assert "p99 1.52 s, max 2 s" in schedule_summary_lines(late)[0]
