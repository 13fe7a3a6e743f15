"""`loadgen watch` against a live run (run directory and Postgres), its exit codes, and object storage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import orjson

from loadgen import rundir
from loadgen.result import iso
from tests.locust_harness import REPO, finish, kill_all, start_locust, wait_for
from tests.pg_fixtures import fresh_database

LOADGEN = [sys.executable, "-m", "loadgen.cli", "watch"]


def watch(*args, timeout=60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the sources are the arguments
    return subprocess.run([*LOADGEN, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def watch_json(*args) -> tuple[int, list]:
    out = watch(*args, "--once", "--json")
    assert out.returncode in (0, 1, 2), out.stderr
    return out.returncode, [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _same_as_heartbeat(status: dict, hb: dict) -> None:
    assert status["state"] == "running"
    for key in ("expected", "done", "in_flight", "held", "by_status", "rate_per_s"):
        assert status[key] == hb[key], key
    assert status["barrier"] == hb["barrier"]
    for key in ("create_p50_ms", "create_p99_ms", "tti_p50_ms", "tti_p99_ms"):
        assert status[key] == hb["latency_so_far"][key] is not None, key
    assert status["workers"] == len(hb["workers"]) == 1 and status["stale_workers"] == []


def test_watch_follows_a_live_run_from_its_directory_and_from_postgres(tmp_path, emulator):
    with fresh_database() as url:
        master, workers, _ = start_locust("local.py", 30, tmp_path, [
            "--emulator-url", emulator.url, "--hold", "10", "--database-url", url])
        try:
            def held():
                beats = list(tmp_path.glob("*/heartbeat.json"))
                hb = beats and orjson.loads(beats[0].read_bytes())
                return hb and hb["held"] == 30 and hb["latency_so_far"]["count"] == 30 and beats[0].parent
            run_path = wait_for(held, 90, what="30 sandboxes held")
            run_id = run_path.name

            code, (status,) = watch_json(str(run_path))
            _same_as_heartbeat(status, rundir.read_json(run_path / rundir.HEARTBEAT))
            assert code == 2 and status["done"] == 0 and status["held"] == 30

            # the Postgres copy of the heartbeat follows within a sink interval or two
            def from_postgres():
                code, (status,) = watch_json(run_id, "--database-url", url)
                return status.get("held") == 30 and (code, status)
            code, status = wait_for(from_postgres, 30, interval=0.5, what="the heartbeat in Postgres")
            _same_as_heartbeat(status, rundir.read_json(run_path / rundir.HEARTBEAT))
            assert code == 2 and status["source"] == "postgres"

            text = watch(str(run_path), "--once")
            assert text.returncode == 2 and f"{run_id} (e2b) running: done 0/30 (0%)" in text.stdout
            assert "held 30" in text.stdout and "barrier released by count" in text.stdout

            # without --once it refreshes until the run is over, then exits 0
            follow = watch(str(run_path), "--interval", "0.5", timeout=120)
            run = finish(master, workers, tmp_path, timeout=120)
        finally:
            kill_all([master, *workers])
        assert run.returncode == 0, run.output[-3000:]
        assert follow.returncode == 0, follow.stdout[-2000:]
        frames = follow.stdout.strip().split("\n\n")
        assert len(frames) >= 2 and "running" in frames[0]
        assert f"{run_id} (e2b) done, complete True: done 30/30 (100%); success 30" in frames[-1]
        code, (status,) = watch_json(run_id, "--database-url", url)
        assert code == 0 and status["state"] == "done" and status["complete"] is True and status["done"] == 30


def _run_dir(parent, name, age, *, hb_age=0.0, meta=None, worker_behind=0.0, beats=True):
    path = parent / name
    path.mkdir()
    now = time.time()
    rundir.atomic_write_json(path / rundir.RUN, {"run_id": name, "provider": "e2b", "started_at": iso(now - age)})
    if beats:
        ts = now - hb_age
        rundir.atomic_write_json(path / rundir.HEARTBEAT, {
            "ts": iso(ts), "run_id": name, "status": "running", "expected": 10, "done": 4, "in_flight": 2,
            "held": 3, "by_status": {"success": 4}, "barrier": {"released": False, "reason": None, "arrived": 7},
            "workers": {"w1": {"last_report_at": iso(ts - 0.5)}, "w2": {"last_report_at": iso(ts - worker_behind)}}})
    if meta is not None:
        rundir.atomic_write_json(path / rundir.META, {"run_id": name, "provider": "e2b", **meta})
    return str(path)


def test_watch_exit_codes_for_done_failed_stuck_and_running(tmp_path):
    done = _run_dir(tmp_path, "r1-done", 10, meta={"status": "done", "complete": True, "records_received": 10,
                                                   "sandboxes_dispatched": 10})
    failed = _run_dir(tmp_path, "r2-failed", 20, meta={"status": "failed", "complete": False})
    incomplete = _run_dir(tmp_path, "r3-incomplete", 30, meta={"status": "done", "complete": False})
    stuck = _run_dir(tmp_path, "r4-stuck", 200, hb_age=120.0)
    running = _run_dir(tmp_path, "r5-running", 40, worker_behind=30.0)
    never_beat = _run_dir(tmp_path, "r6-never-beat", 300, beats=False)

    assert watch(done, "--once").returncode == 0
    assert watch(running, "--once").returncode == 2
    for path in (failed, incomplete, stuck, never_beat):
        assert watch(path, "--once").returncode == 1, path
    assert watch(done, running, "--once").returncode == 2
    assert watch(done, running, failed, "--once").returncode == 1
    assert watch("no-such-run", "--run-dir", str(tmp_path), "--once").returncode == 1

    text = watch(stuck, running, "--once").stdout
    assert "r4-stuck (e2b) STUCK" in text and re.search(r"heartbeat 1[2-9]\d\.\d s ago", text)
    assert "r5-running (e2b) running: done 4/10 (40%); success 4" in text
    assert "in flight 2, held 3" in text and "barrier holding (7/10 arrived)" in text
    assert "STALE: w2" in text and "STALE: w1" not in text
    # --recent: the newest runs under --run-dir, by their start time
    code, statuses = watch_json("--recent", "2", "--run-dir", str(tmp_path))
    assert [s["run_id"] for s in statuses] == ["r1-done", "r2-failed"] and code == 1
    # a run that is over ends a watch without --once at once
    assert watch(done, "--interval", "5", timeout=30).returncode == 0


def test_watch_reads_a_run_from_object_storage(tmp_path):
    from tests.s3_fixtures import moto_server, new_bucket, s3_client

    with moto_server() as endpoint:
        client = s3_client(endpoint)
        bucket = new_bucket(endpoint, client)
        now = time.time()
        docs = {"run.json": {"run_id": "20261201T000000Z-abc-e2b", "provider": "e2b", "started_at": iso(now - 9)},
                "heartbeat.json": {"ts": iso(now - 1), "status": "running", "expected": 5, "done": 1,
                                   "in_flight": 4, "held": 0, "by_status": {"success": 1}, "barrier": {}}}
        for name, doc in docs.items():
            client.put_object(Bucket=bucket, Key=f"lg/20261201T000000Z-abc-e2b/{name}", Body=orjson.dumps(doc))
        code, (status,) = watch_json("--recent", "1", "--bucket", bucket, "--prefix", "lg")
        assert code == 2 and status["run_id"] == "20261201T000000Z-abc-e2b" and status["in_flight"] == 4
        assert status["source"] == f"s3://{bucket}/lg/20261201T000000Z-abc-e2b/"
        client.put_object(Bucket=bucket, Key="lg/20261201T000000Z-abc-e2b/meta.json",
                          Body=orjson.dumps({"status": "done", "complete": True}))
        assert watch("20261201T000000Z-abc-e2b", "--bucket", bucket, "--prefix", "lg", "--once").returncode == 0
