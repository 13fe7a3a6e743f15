"""A master and worker processes: exactly-once dispatch and the cluster-wide barrier."""

import collections

from loadgen.result import parse_iso
from tests.locust_harness import run_locust


def test_master_and_two_workers_1000_sandboxes(tmp_path, emulator):
    run = run_locust("local.py", 1000, tmp_path, ["--emulator-url", emulator.url], workers=2, timeout=300)
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 1000
    assert sorted(r["sandbox_idx"] for r in records) == list(range(1000))
    assert len({r["sandbox_id"] for r in records}) == 1000
    assert all(r["status"] == "success" for r in records), collections.Counter(r["status"] for r in records)
    # both workers created sandboxes
    assert len({r["worker_id"] for r in records}) == 2
    stats = emulator.stats()
    assert stats["created"] == 1000 and stats["killed"] == 1000 and stats["live"] == 0
    # the barrier held across workers: no liveness probe began before the last readiness ended
    last_ready = max(parse_iso(r["readiness_ended_at"]) for r in records)
    first_live = min(parse_iso(r["liveness_started_at"]) for r in records)
    assert first_live >= last_ready
    meta = run.meta
    assert meta["barrier"]["reason"] == "count"
    assert meta["status"] == "done" and meta["complete"] is True
    assert set(meta["clock_offsets"]) == {r["worker_id"] for r in records}


import signal
import time

from tests.locust_harness import finish, kill_all, start_locust, start_worker, wait_for


def test_late_worker_creates_nothing_and_kills_nothing(tmp_path, emulator):
    master, workers, port = start_locust("local.py", 200, tmp_path,
                                         ["--emulator-url", emulator.url, "--hold", "4"], workers=1)
    late = []
    try:
        wait_for(lambda: emulator.stats()["live"] == 200, 60, what="200 sandboxes held")
        late.append(start_worker("local.py", port))
        run = finish(master, workers + late, tmp_path, timeout=120)
    finally:
        kill_all([master, *workers, *late])
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 200 and all(r["status"] == "success" for r in records)
    assert len({r["worker_id"] for r in records}) == 1
    stats = emulator.stats()
    assert stats["created"] == 200 and stats["killed"] == 200 and stats["live"] == 0


def test_sigterm_to_master_during_hold_destroys_everything(tmp_path, emulator):
    master, workers, _ = start_locust("local.py", 300, tmp_path,
                                      ["--emulator-url", emulator.url, "--hold", "120"], workers=2)
    try:
        wait_for(lambda: emulator.stats()["live"] == 300, 60, what="300 sandboxes held")
        master.send_signal(signal.SIGTERM)
        run = finish(master, workers, tmp_path, timeout=120)
    finally:
        kill_all([master, *workers])
    assert run.returncode == 4, run.output[-4000:]
    stats = emulator.stats()
    assert stats["created"] == 300 and stats["live"] == 0
    meta = run.meta
    assert meta["status"] == "interrupted"
    assert meta["records_received"] == 300 and meta["missing_count"] == 0
    assert all(r["destroy_ok"] for r in run.records)
    for name in ("raw.jsonl", "meta.json", "heartbeat.json", "metrics.jsonl", "coordinator.log", "run.json"):
        assert (run.run_path / name).exists(), name


def test_a_worker_silent_for_6_s_is_not_counted_lost(tmp_path, emulator):
    """Locust's master counts a worker lost after 3 missed heartbeats and, with every worker lost, stops the
    run (with --worker-heartbeat-timeout 3 this run ends with 0 records). A worker that starts thousands
    of sandboxes on a busy host is silent that long; with --worker-heartbeat-timeout (30 s by default)
    the frozen worker is still the master's when it wakes."""
    master, workers, _ = start_locust("local.py", 100, tmp_path,
                                      ["--emulator-url", emulator.url, "--hold", "10"], workers=1)
    try:
        wait_for(lambda: emulator.stats()["live"] == 100, 60, what="100 sandboxes held")
        workers[0].send_signal(signal.SIGSTOP)
        time.sleep(6)
        workers[0].send_signal(signal.SIGCONT)
        run = finish(master, workers, tmp_path, timeout=120)
    finally:
        for w in workers:
            w.send_signal(signal.SIGCONT)
        kill_all([master, *workers])
    assert run.returncode == 0, run.output[-4000:]
    assert run.meta["status"] == "done" and run.meta["complete"] is True
    assert len(run.records) == 100 and all(r["status"] == "success" for r in run.records)
    assert emulator.stats()["live"] == 0
