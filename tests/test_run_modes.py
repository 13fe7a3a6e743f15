"""Run modes and the open arrival model (with and without a ramp) against the emulator with a latency profile.

Tolerances are stated here once and meant for a shared, busy 2-core machine
(other test suites running beside this one): at least 90% of the creates
reach the emulator within ARRIVAL_TOLERANCE_S after their scheduled start,
and every one within LATE_BOUND_S (each process's first create also pays the
SDK's first-call cost, and a busy machine deschedules a process now and then).
"""

import os
import signal
import time

import orjson
import pytest

from loadgen.emulator import start_emulator
from loadgen.result import parse_iso
from tests.locust_harness import finish, kill_all, run_locust, start_locust, wait_for

ARRIVAL_TOLERANCE_S = 0.25
LATE_BOUND_S = 1.0
# A worker's clock offset is estimated from round trips (its uncertainty is in meta.json), so a worker
# may start a create a few milliseconds before the master's clock says it is due.
CLOCK_SLACK_S = 0.02
# The emulator dates a request's arrival from TCP_INFO's age of the connection's last segment, to a
# jiffy (4 ms at HZ=250) plus the millisecond it is rounded to: an arrival may read up to this much early.
# The profile's kill takes 10 ms, so a create sent when a kill was sent, not answered, still shows.
ARRIVAL_STAMP_SLACK_S = 0.005

PROFILE = dict(
    create_latency={"kind": "lognormal", "median_ms": 40, "p95_ms": 80},
    exec_latency={"kind": "constant", "ms": 5},
    kill_latency={"kind": "constant", "ms": 10},
)


@pytest.fixture
def profiled_emulator():
    with start_emulator("fast", **PROFILE) as emu:
        yield emu


def _arrivals(emu) -> dict:
    """sandbox_idx -> when the emulator's kernel received the create (the emulator's ground truth)."""
    return {int(s["metadata"]["sandbox_idx"]): s for s in emu.sandboxes()}


def _on_schedule(deviations: list) -> None:
    """Emulator arrival minus scheduled start, seconds: within the stated tolerances."""
    assert all(-CLOCK_SLACK_S <= d < LATE_BOUND_S for d in deviations), sorted(deviations)[-5:]
    on_time = sum(1 for d in deviations if d < ARRIVAL_TOLERANCE_S)
    assert on_time >= 0.9 * len(deviations), sorted(deviations)[-10:]


def _exactly_once(run, n):
    records = run.records
    assert run.returncode == 0, run.output[-4000:]
    assert sorted(r["sandbox_idx"] for r in records) == list(range(n))
    assert all(r["status"] == "success" for r in records), [r["error_message"] for r in records]
    return {r["sandbox_idx"]: r for r in records}


def test_burst_is_the_default_and_every_sandbox_is_due_at_t0(tmp_path, profiled_emulator):
    run = run_locust("local.py", 20, tmp_path, ["--emulator-url", profiled_emulator.url])
    records = _exactly_once(run, 20)
    meta = run.meta
    assert meta["schedule"]["mode"] == "burst" and meta["schedule"]["planned_span_s"] == 0
    assert {r["scheduled_start_at"] for r in records.values()} == {meta["schedule"]["t0"]}
    for r in records.values():
        assert r["start_lateness_ms"] == pytest.approx(
            (parse_iso(r["create_started_at"]) - parse_iso(r["scheduled_start_at"])) * 1000, abs=0.002)
        assert r["start_lateness_ms"] >= 0
    assert meta["lateness_distribution"]["count"] == 20
    assert meta["wall_clock_ms"] > 0 and 0 < meta["time_to_first_ready_ms"] < meta["wall_clock_ms"]
    assert "ramp_profile" not in meta
    assert profiled_emulator.stats()["live"] == 0


def test_staggered_starts_are_200_ms_apart_and_the_ramp_profile_matches_the_records(tmp_path, profiled_emulator):
    run = run_locust("local.py", 10, tmp_path, ["--emulator-url", profiled_emulator.url, "--mode", "staggered"])
    records = _exactly_once(run, 10)
    meta = run.meta
    t0 = parse_iso(meta["schedule"]["t0"])
    assert meta["schedule"]["stagger_ms"] == 200 and meta["schedule"]["planned_span_s"] == pytest.approx(1.8)
    arrivals = _arrivals(profiled_emulator)
    for idx, r in records.items():
        assert parse_iso(r["scheduled_start_at"]) == pytest.approx(t0 + idx * 0.2, abs=1e-5)
    _on_schedule([arrivals[idx]["t_received"] - (t0 + idx * 0.2) for idx in records])
    # the ramp profile is the records, in ms since t0
    profile = meta["ramp_profile"]
    assert [p["sandbox_idx"] for p in profile] == list(range(10))
    for p in profile:
        r = records[p["sandbox_idx"]]
        assert p["launchedAt"] == pytest.approx((parse_iso(r["create_started_at"]) - t0) * 1000, abs=0.002)
        assert p["readyAt"] == pytest.approx((parse_iso(r["readiness_ended_at"]) - t0) * 1000, abs=0.002)
        assert p["ttiMs"] == pytest.approx(r["latency_ms"] + r["first_command_ms"], abs=0.001)
    assert meta["time_to_first_ready_ms"] == min(p["readyAt"] for p in profile)


def test_sequential_never_has_two_sandboxes_alive_across_two_workers(tmp_path, profiled_emulator):
    run = run_locust("local.py", 8, tmp_path, ["--emulator-url", profiled_emulator.url, "--mode", "sequential"],
                     workers=2, timeout=180)
    records = _exactly_once(run, 8)
    assert len({r["worker_id"] for r in records.values()}) == 2, "both workers took part"
    # the emulator's ground truth: each create arrived after the previous sandbox was killed
    truth = sorted(_arrivals(profiled_emulator).values(), key=lambda s: s["t_received"])
    assert [int(s["metadata"]["sandbox_idx"]) for s in truth] == list(range(8))
    for before, after in zip(truth, truth[1:]):
        assert before["state"] == "killed", before
        assert after["t_received"] + ARRIVAL_STAMP_SLACK_S >= before["t_ended"], (before, after)
    meta = run.meta
    assert meta["schedule"]["mode"] == "sequential" and meta["barrier"]["reason"] == "sequential"
    assert meta["concurrency_summary"]["peak_concurrent"] == 1
    assert meta["wall_clock_ms"] > 0 and meta["time_to_first_ready_ms"] > 0


def test_sequential_with_concurrency_never_has_more_than_k_alive_across_two_workers(tmp_path, profiled_emulator):
    run = run_locust("local.py", 12, tmp_path, ["--emulator-url", profiled_emulator.url, "--mode", "sequential",
                                                "--concurrency", "3"], workers=2, timeout=180)
    _exactly_once(run, 12)
    # the emulator's ground truth: from each create's arrival to its kill's end, never more than 3 at once
    edges = sorted([(s["t_received"] + ARRIVAL_STAMP_SLACK_S, 1) for s in profiled_emulator.sandboxes()]
                   + [(s["t_ended"], -1) for s in profiled_emulator.sandboxes()])
    assert len(edges) == 24 and all(t is not None for t, _ in edges)
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    first = min(t for t, _ in edges)
    timeline = sorted((int(s["metadata"]["sandbox_idx"]), round((s["t_received"] - first) * 1e3, 3),
                       round((s["t_ended"] - first) * 1e3, 3)) for s in profiled_emulator.sandboxes())
    # 3 are granted at t0 together; a busy machine may start one a little late
    assert 2 <= peak <= 3, (peak, "sandbox_idx, arrived ms, ended ms:", timeline,
                            [(r["sandbox_idx"], r["scheduled_start_at"], r["destroy_ended_at"])
                             for r in sorted(run.records, key=lambda r: r["sandbox_idx"])])
    meta = run.meta
    assert meta["schedule"]["concurrency"] == 3 and meta["barrier"]["reason"] == "sequential"
    assert "12 sandboxes 3 at a time" in run.output


def test_arrival_rate_across_two_workers_keeps_the_schedule_and_a_stalled_worker_shows_as_late(tmp_path,
                                                                                              profiled_emulator):
    """20 creates/s for 10 s; one worker is stopped (SIGSTOP) for 1.5 s in the middle."""
    master, workers, _ = start_locust("local.py", 200, tmp_path,
                                      ["--emulator-url", profiled_emulator.url, "--arrival-rate", "20"], workers=2)
    stall_from, stall_s = 4.25, 1.5
    try:
        def t0():
            beats = list(tmp_path.glob("*/heartbeat.json"))
            return beats and orjson.loads(beats[0].read_bytes())["schedule"]["t0"]
        start = parse_iso(wait_for(t0, 90, what="the schedule's t0 in heartbeat.json"))
        time.sleep(max(0.0, start + stall_from - time.time()))
        stalled = workers[1]
        os.kill(stalled.pid, signal.SIGSTOP)
        stalled_at = time.time()
        time.sleep(stall_s)
        os.kill(stalled.pid, signal.SIGCONT)
        resumed_at = time.time()
        run = finish(master, workers, tmp_path, timeout=180)
    finally:
        for w in workers:
            if w.poll() is None:
                os.kill(w.pid, signal.SIGCONT)
        kill_all([master, *workers])
    records = _exactly_once(run, 200)
    meta = run.meta
    t0 = parse_iso(meta["schedule"]["t0"])
    assert t0 == pytest.approx(start, abs=1e-6)
    assert meta["schedule"]["arrival_rate_per_s"] == 20 and meta["schedule"]["planned_span_s"] == pytest.approx(9.95)
    arrivals = _arrivals(profiled_emulator)
    for idx, r in records.items():
        assert parse_iso(r["scheduled_start_at"]) == pytest.approx(t0 + idx / 20, abs=1e-5)
    # the stalled worker is the one whose sandboxes due during the stall started after it resumed
    during = {idx: r for idx, r in records.items() if stalled_at - 0.05 <= t0 + idx / 20 <= resumed_at}
    by_worker = {}
    for idx, r in during.items():
        by_worker.setdefault(r["worker_id"], []).append(r)
    assert len(by_worker) == 2, "the stall spans both workers' ranges"
    stalled_id = max(by_worker, key=lambda w: max(r["start_lateness_ms"] for r in by_worker[w]))
    late = by_worker[stalled_id]
    for r in late:
        due = t0 + r["sandbox_idx"] / 20
        assert arrivals[r["sandbox_idx"]]["t_received"] >= resumed_at - ARRIVAL_TOLERANCE_S
        assert r["start_lateness_ms"] >= (resumed_at - due - ARRIVAL_TOLERANCE_S) * 1000
    # everything else reached the emulator on schedule
    _on_schedule([arrivals[idx]["t_received"] - (t0 + idx / 20) for idx, r in records.items() if r not in late])
    # the stall covers at least 0.75 s of either worker's range (idx 0-99 are due in 0-5 s, 100-199 in 5-10 s)
    assert max(r["start_lateness_ms"] for r in late) > 500
    assert meta["behind_schedule"] is True and meta["lateness_summary"]["over_limit"] >= len(late) // 2
    assert profiled_emulator.stats()["live"] == 0


def test_an_arrival_ramp_rises_linearly_to_the_rate(tmp_path, profiled_emulator):
    """--arrival-rate 10 --ramp 2: the rate rises from 0 to 10/s over 2 s (10 creates), then stays at 10/s;
    the emulator's arrivals follow that schedule within the stated tolerances."""
    run = run_locust("local.py", 30, tmp_path, ["--emulator-url", profiled_emulator.url, "--arrival-rate", "10",
                                                "--ramp", "2"])
    records = _exactly_once(run, 30)
    meta = run.meta
    t0 = parse_iso(meta["schedule"]["t0"])
    assert (meta["schedule"]["mode"], meta["schedule"]["arrival_rate_per_s"], meta["schedule"]["ramp_s"]) == (
        "arrival", 10, 2)

    def due(idx):  # the cumulative count of a linear ramp is R t² / 2S, so idx is due at sqrt(2 S idx / R)
        return (2 * 2 * idx / 10) ** 0.5 if idx <= 10 else 2 + (idx - 10) / 10

    assert meta["schedule"]["planned_span_s"] == pytest.approx(due(29))
    for idx, r in records.items():
        assert parse_iso(r["scheduled_start_at"]) == pytest.approx(t0 + due(idx), abs=1e-5)
    arrivals = _arrivals(profiled_emulator)
    _on_schedule([arrivals[idx]["t_received"] - (t0 + due(idx)) for idx in records])
    # the rate rises: 3 creates due in the first second (2.5 by the ramp's area), 7 in the second, then 10/s
    offsets = [parse_iso(r["scheduled_start_at"]) - t0 for r in records.values()]
    assert [sum(1 for o in offsets if k <= o + 1e-5 < k + 1) for k in range(4)] == [3, 7, 10, 10]
    assert profiled_emulator.stats()["live"] == 0
