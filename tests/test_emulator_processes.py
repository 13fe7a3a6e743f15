"""The emulator in several processes: the workers spread over them, and the ground truth reads as one."""

from __future__ import annotations

import subprocess
import sys

from loadgen.emulator import EmulatorCluster, start_emulators
from loadgen.emulator.handle import EmulatorProcess
from tests.locust_harness import REPO, run_locust


def test_three_workers_over_three_emulator_processes_one_ground_truth(tmp_path):
    """300 sandboxes, a master and 3 workers, --emulator-url naming 3 emulator processes:
    each process serves one worker's sandboxes, and their merged ground truth counts exactly
    300 creates, 300 kills and 0 live."""
    with start_emulators(3, "fast") as cluster:
        run = run_locust("local.py", 300, tmp_path, ["--emulator-url", cluster.url], workers=3)
        stats = cluster.stats()
        per_process = [m.stats() for m in cluster.members]
        rows = cluster.sandboxes()
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    assert sorted(r["sandbox_idx"] for r in records) == list(range(300))
    assert all(r["status"] == "success" for r in records)
    assert stats["created"] == 300 and stats["killed"] == 300 and stats["live"] == 0
    assert stats["ops"]["create"]["requests"] == 300 and stats["server"]["processes"] == 3
    assert sorted(s["created"] for s in per_process) == [100, 100, 100]  # each worker has its own
    assert sorted(int(r["metadata"]["sandbox_idx"]) for r in rows) == list(range(300))
    workers_of = {}
    for r in records:
        workers_of.setdefault(r["worker_id"], set()).add(r["sandbox_id"])
    assert len(workers_of) == 3
    assert stats["server"]["overload"]["listen_drops"] >= 0 and "loop_lag_ms" in stats["server"]["overload"]


def test_emulate_with_processes_prints_every_url_and_serves_from_each():
    proc = subprocess.Popen([sys.executable, "-m", "loadgen.emulator", "--processes", "2", "--profile", "fast"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline().strip()
        urls = line.split(",")
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls), line
        cluster = EmulatorCluster([EmulatorProcess(proc, url) for url in urls])
        assert cluster.stats()["server"]["processes"] == 2
        assert len({m.stats()["server"]["pid"] for m in cluster.members}) == 2
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_local_py_starts_one_emulator_per_worker(tmp_path):
    """locustfiles/local.py with a master and 2 workers starts 2 emulator processes by itself,
    each worker gets its own, and the master reads both into meta.json."""
    run = run_locust("local.py", 200, tmp_path, workers=2)
    assert run.returncode == 0, run.output[-3000:]
    urls = run.meta["options"]["emulator_url"].split(",")
    assert len(urls) == 2 and len(set(urls)) == 2
    emulator = run.meta["emulator"]
    assert (emulator["processes"], emulator["created"], emulator["killed"], emulator["live"]) == (2, 200, 200, 0)
    assert emulator["overloaded"] in (True, False) and not emulator["unreachable"]
