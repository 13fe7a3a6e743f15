"""`loadgen watch` against a live run (run directory, Postgres and object storage), and its exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import orjson

from loadgen import rundir
from loadgen.report.human import duration_ms
from loadgen.result import iso
from tests.locust_harness import REPO, finish, kill_all, start_locust, wait_for
from tests.pg_fixtures import fresh_database

LOADGEN = [sys.executable, "-m", "loadgen.cli", "watch"]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the sources are the arguments


def watch(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADGEN, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_env())


def watch_json(*args) -> tuple[int, list]:
    out = watch(*args, "--once", "--json")
    assert out.returncode in (0, 1, 2), out.stderr
    return out.returncode, [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


# What `loadgen watch --json` shows of a running run, and where heartbeat.json has it.
FROM_HEARTBEAT = ("expected", "done", "in_flight", "held", "waiting", "by_status", "rate_per_s", "eta_s", "barrier")
LATENCY_SO_FAR = ("create_p50_ms", "create_p99_ms", "tti_p50_ms", "tti_p99_ms")


def _same_as_heartbeat(status: dict, hb: dict) -> None:
    assert status["state"] == "running" and status["heartbeat_ts"] == hb["ts"]
    for key in FROM_HEARTBEAT:
        assert status[key] == hb[key], (key, status[key], hb[key])
    for key in LATENCY_SO_FAR:
        assert status[key] == hb["latency_so_far"][key], key
    assert status["mode"] == hb["schedule"]["mode"]
    assert status["workers"] == len(hb["workers"]) <= 1 and status["stale_workers"] == []  # none before its first report


class HeartbeatLog:
    """Every heartbeat.json the master writes, by its timestamp (read every 50 ms in a thread), so that
    each of watch's answers can be checked against the very heartbeat it showed."""

    def __init__(self, run_dir):
        self.run_dir, self.beats, self.stop = run_dir, {}, threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self):
        while not self.stop.wait(0.05):
            for path in self.run_dir.glob("*/heartbeat.json"):
                try:
                    hb = orjson.loads(path.read_bytes())
                except (OSError, orjson.JSONDecodeError):
                    continue
                self.beats.setdefault(hb["ts"], hb)

    def close(self):
        self.stop.set()
        self.thread.join()


def test_watch_follows_a_live_run_from_its_directory_postgres_and_object_storage(tmp_path, emulator):
    """30 sandboxes at 3 creates/s, each held 25 s (so all 30 are held at once for the last 15 s of the
    first one's hold): watch's figures from each source are those of the heartbeat they were read from,
    while the creates arrive, while all are held, and once the run is over. The run is that long so that
    every source is read several times even when each watch takes seconds to start on a busy machine."""
    from tests.s3_fixtures import moto_server, new_bucket

    runs = tmp_path / "runs"
    with fresh_database() as url, moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        remote = {"postgres": ["--database-url", url], "bucket": ["--bucket", bucket, "--prefix", "lg"]}
        master, workers, _ = start_locust("local.py", 30, runs, [
            "--emulator-url", emulator.url, "--arrival-rate", "3", "--hold", "25",
            "--database-url", url, "--bucket", bucket, "--prefix", "lg"])
        log = HeartbeatLog(runs)
        follow = None
        seen = {"dir": [], "postgres": [], "bucket": []}
        try:
            run_path = wait_for(lambda: next(iter(runs.glob("*/heartbeat.json")), None), 90,
                                what="the run's heartbeat.json").parent
            run_id = run_path.name
            # without --once it refreshes until the run is over
            follow = subprocess.Popen([*LOADGEN, str(run_path), "--interval", "0.5"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env(),
                                      start_new_session=True)
            text = None
            deadline = time.time() + 120
            while not (run_path / rundir.META).exists() and master.poll() is None and time.time() < deadline:
                hb = rundir.read_json(run_path / rundir.HEARTBEAT)
                if text is None and hb["held"] == 30 and hb["barrier"]["released"]:
                    # the text lines, while the held sandboxes keep every figure still (checked after)
                    out = watch(str(run_path), "--once")
                    after = rundir.read_json(run_path / rundir.HEARTBEAT)
                    if all(after[k] == hb[k] for k in ("latency_so_far", "held", "done", "in_flight")):
                        text = (out, hb)
                for source, args in (("dir", [str(run_path)]), ("postgres", [run_id, *remote["postgres"]]),
                                     ("dir", [str(run_path)]), ("bucket", [run_id, *remote["bucket"]])):
                    code, statuses = watch_json(*args)
                    if statuses and statuses[0]["state"] == "running" and statuses[0]["heartbeat_ts"]:
                        assert code == 2 and statuses[0]["run_id"] == run_id
                        seen[source].append(statuses[0])
            run = finish(master, workers, runs, timeout=120)
            followed = follow.communicate(timeout=120)[0]
        finally:
            log.close()
            kill_all([master, *workers, *([follow] if follow else [])])
        assert run.returncode == 0, run.output[-3000:]
        for source, statuses in seen.items():
            for status in statuses:
                assert status["heartbeat_ts"] in log.beats, (source, status["heartbeat_ts"])
                _same_as_heartbeat(status, log.beats[status["heartbeat_ts"]])
            assert len({s["heartbeat_ts"] for s in statuses}) >= 2, (source, statuses)
        # the directory's view went through the arrivals and the hold
        assert any(s["held"] < 30 and s["waiting"] > 0 for s in seen["dir"]), seen["dir"]
        assert any(s["held"] == 30 for s in seen["dir"]), seen["dir"]
        assert {s["source"] for s in seen["postgres"]} == {"postgres"}
        assert {s["source"] for s in seen["bucket"]} == {f"s3://{bucket}/lg/{run_id}/"}

        assert text is not None, "no heartbeat with all 30 held was seen"
        out, hb = text
        assert out.returncode == 2
        assert f"{run_id} (e2b) running: done 0/30 (0%); success 0, partial 0, readiness_failed 0, failed 0" \
            in out.stdout
        lat = hb["latency_so_far"]
        assert (f"in flight 0, held 30; create p50 {duration_ms(lat['create_p50_ms'])} "
                f"p99 {duration_ms(lat['create_p99_ms'])}; TTI p50 {duration_ms(lat['tti_p50_ms'])} "
                f"p99 {duration_ms(lat['tti_p99_ms'])}") in out.stdout
        assert "barrier released by count" in out.stdout and "workers 1" in out.stdout

        assert follow.returncode == 0, followed[-2000:]
        frames = followed.strip().split("\n\n")
        assert len(frames) >= 2 and "running" in frames[0]
        assert f"{run_id} (e2b) done, complete True: done 30/30 (100%); success 30" in frames[-1]
        for source, args in remote.items():
            code, (status,) = watch_json(run_id, *args)
            assert code == 0 and status["state"] == "done" and status["complete"] is True, (source, status)
            assert status["done"] == 30 and status["by_status"]["success"] == 30
            # --recent: the source's newest run
            code, (status,) = watch_json("--recent", "1", *args)
            assert code == 0 and status["run_id"] == run_id, source


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
    assert "r4-stuck (e2b) STUCK" in text and re.search(r"heartbeat 2 min( \d+ s)? ago", text)
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


def test_watch_exit_codes_from_postgres_for_done_failed_stuck_and_running(tmp_path):
    """The runs table as the sink leaves it: a stuck run is one still 'running' whose last heartbeat is old."""
    from tests.pg_fixtures import query

    with fresh_database() as url:
        migrate = subprocess.run([sys.executable, "-m", "loadgen.cli", "db", "migrate", "--database-url", url],
                                 capture_output=True, text=True, cwd=REPO, timeout=120)
        assert migrate.returncode == 0, migrate.stderr
        now = time.time()

        def beat(age):
            return orjson.dumps({"ts": iso(now - age), "status": "running", "expected": 10, "done": 3,
                                 "in_flight": 1, "held": 6, "by_status": {"success": 3}, "barrier": {},
                                 "workers": {}}).decode()

        rows = [  # id, started (s ago), status, last heartbeat (s ago), heartbeat, meta
            ("p1-done", 40, "done", 30, None, orjson.dumps({"status": "done", "complete": True}).decode()),
            ("p2-failed", 30, "failed", 20, None, None),
            ("p3-stuck", 400, "running", 300, beat(300), None),
            ("p4-running", 10, "running", 0.5, beat(0.5), None),
        ]
        for run_id, started, status, last, hb, meta in rows:
            query(url, "INSERT INTO runs (id, provider, started_at, status, last_heartbeat, heartbeat, meta) "
                       "VALUES (%s, 'e2b', now() - make_interval(secs => %s), %s, "
                       "now() - make_interval(secs => %s), %s::jsonb, %s::jsonb)",
                  (run_id, started, status, last, hb, meta))
        expected = {"p1-done": (0, "done"), "p2-failed": (1, "failed"), "p3-stuck": (1, "stuck"),
                    "p4-running": (2, "running")}
        for run_id, (code, state) in expected.items():
            got, (status,) = watch_json(run_id, "--database-url", url)
            assert (got, status["state"]) == (code, state), (run_id, status)
        got, statuses = watch_json("--recent", "4", "--database-url", url)
        assert [s["run_id"] for s in statuses] == ["p4-running", "p2-failed", "p1-done", "p3-stuck"] and got == 1
        assert watch("p1-done", "p4-running", "--database-url", url, "--once").returncode == 2
