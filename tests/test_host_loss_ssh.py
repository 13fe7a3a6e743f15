"""Losing a host mid-run, over real SSH onto test hosts (network namespaces with their own sshd),
against the emulator: a host's workers SIGKILLed during the hold, a host's link cut for 10 s during
the hold, the master SIGKILLed during the hold. (A host unreachable at the start is refused by the
preflight: tests/test_launch_shards_ssh.py.) Each test records its row of docs/reliability.md
(tests/reliability.py), printed at the end of the session.

One cluster of two hosts (both with this checkout) serves the module; each test runs one worker
per host and a few hundred sandboxes, so the whole module takes a few minutes.
"""

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import orjson

from tests import reliability, testhosts
from tests.locust_harness import wait_for
from tests.pg_fixtures import fresh_database, query
from tests.ssh_launch import (bridge_emulator_fixture, launcher_argv, launcher_env, loadgen_command,
                              loadgen_processes, records_of, run_path_of, worker_pids)

cluster = testhosts.fixture(2)
bridge_emulator, emulator = bridge_emulator_fixture()

LOST_AFTER_S = 15.0  # --worker- and --master-heartbeat-timeout in these tests (the defaults are 30 s)
# How much later than that a loss may be noticed on this shared 2-core machine (the master
# checks twice a second; its event loop, and the workers' reports, can lag under load).
NOTICE_SLACK_S = 10.0
# Generous bounds for a machine shared by several engineers' tests (load averages of 20 and more):
START_S = 420.0  # from the launch to every sandbox alive (preflight, master, workers, creates)
END_S = 600.0  # from the loss to the launcher's end


def start(cluster, hosts, users, emulator, run_dir, locust_args, env=None, launcher_args=()) -> subprocess.Popen:
    argv = launcher_argv(cluster, [h.name for h in hosts], users, "-w", "1", *launcher_args, emulator=emulator,
                         run_dir=run_dir, locust_args=locust_args)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=launcher_env(env), start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float):
    """The launcher's output once it has ended by itself (within `timeout`), else it is killed."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.output or b"").decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        raise AssertionError(f"the launcher did not end within {timeout:g} s; its output ends:\n{out[-6000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def created_on(host, run_dir: Path) -> int:
    """Sandboxes a host's workers have journaled as created so far (read inside the host's own /tmp)."""
    return sum(len(p.read_bytes().splitlines())
               for p in host.local_path(str(run_dir)).glob("*/journal/*.created.jsonl"))


def holding(cluster, emulator, run_dir: Path, n: int) -> bool:
    """Every sandbox alive, journaled as created on its host, and the barrier released: the hold."""
    if emulator.stats()["live"] != n or sum(created_on(h, run_dir) for h in cluster.hosts) != n:
        return False
    beats = list(run_dir.glob("*/heartbeat.json"))
    return bool(beats) and json.loads(beats[0].read_text())["barrier"]["released"]


def wait_running(proc: subprocess.Popen, predicate, what: str):
    """Wait (up to START_S) until `predicate()` is true while the launcher runs; a launcher that ends
    first (a refusal) fails the test at once, with its output."""

    def check():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the launcher ended ({proc.returncode}) before {what}:\n{err[-4000:]}\n{out[-3000:]}")
        return predicate()

    return wait_for(check, START_S, interval=0.1, what=what)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def created_by_host(run_path: Path) -> dict:
    """host -> the sandbox_idx its workers' journals say they created."""
    out = {}
    for path in (run_path / "journal").glob("*.created.jsonl"):
        host = path.name.split("_")[0]
        out.setdefault(host, set()).update(e["sandbox_idx"] for e in map(orjson.loads, path.read_bytes().splitlines()))
    return out


def journal_records(run_path: Path) -> list:
    return [orjson.loads(line) for path in (run_path / "journal").glob("*.jsonl")
            if not path.name.endswith(".created.jsonl") for line in path.read_bytes().splitlines() if line.strip()]


def children(pid: int) -> list:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def master_pid(launcher: subprocess.Popen) -> int:
    for pid in children(launcher.pid):
        try:
            if b"--master" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    raise AssertionError("the launcher has no master process")


# -- a host's workers SIGKILLed during the hold ---------------------------------------------------------


def test_a_host_whose_workers_are_killed_mid_hold_ends_the_run_with_exit_3_and_reap_destroys_its_sandboxes(
        cluster, emulator, tmp_path):
    h0, h1 = cluster.hosts
    n, hold = 200, 25
    proc = start(cluster, [h0, h1], n, emulator, tmp_path,
                 ["--hold", str(hold), "--worker-heartbeat-timeout", str(LOST_AFTER_S), "--run-time", "900"])
    try:
        wait_running(proc, lambda: holding(cluster, emulator, tmp_path, n), what=f"{n} sandboxes held")
        victims = worker_pids(cluster, h1)
        assert len(victims) == 1
        killed_at = time.time()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        out, err = finish(proc, END_S)
    finally:
        finish(proc, 1)
    ended_at = time.time()
    assert proc.returncode == 3, err[-4000:]
    assert ended_at - killed_at < END_S  # ended by itself, before --run-time 900 s
    run_path = run_path_of(tmp_path)
    meta = json.loads((run_path / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["complete"] is False and meta["exit_code"] == 3
    # the master noticed within --worker-heartbeat-timeout (plus the stated slack) and named the host
    [lost] = meta["lost_workers"]
    assert lost["host"] == h1.name and lost["worker_id"].startswith(f"{h1.name}_")
    assert LOST_AFTER_S <= lost["noticed_after_s"] <= LOST_AFTER_S + NOTICE_SLACK_S
    assert epoch(lost["noticed_at"]) - killed_at <= LOST_AFTER_S + NOTICE_SLACK_S
    # meta.json lists exactly the killed host's sandboxes as missing, by host
    created = created_by_host(run_path)
    assert set(created) == {h0.name, h1.name} and len(created[h0.name]) + len(created[h1.name]) == n
    assert sorted(meta["missing_by_host"]) == [h1.name]
    assert meta["missing_by_host"][h1.name]["sandbox_idx"] == sorted(created[h1.name])
    assert meta["missing_sandbox_idx"] == sorted(created[h1.name]) == lost["missing_sandbox_idx"]
    records = records_of(run_path)
    assert sorted(r["sandbox_idx"] for r in records) == sorted(created[h0.name])
    assert all(r["status"] == "success" and r["destroy_ok"] for r in records)
    assert f"LOST: worker {lost['worker_id']} on host {h1.name}" in out
    # what the killed worker held is still alive; reap destroys it from its journal (copied home)
    leaked = emulator.stats()["live"]
    assert leaked == len(created[h1.name])
    reap = loadgen_command("reap", run_path)
    assert reap.returncode == 0 and f"destroyed {leaked}, failed 0" in reap.stdout, reap.stdout + reap.stderr
    assert emulator.stats()["live"] == 0 and emulator.stats()["created"] == n
    assert loadgen_processes(cluster, h0) == [] and loadgen_processes(cluster, h1) == []
    reliability.row("a host's workers SIGKILLed during the hold",
                    f"2 hosts x 1 worker, {n} sandboxes, --hold {hold}; once all were live, {h1.name}'s worker "
                    f"SIGKILLed; --worker-heartbeat-timeout {LOST_AFTER_S:g} (noticed after {lost['noticed_after_s']:.1f} s)",
                    expected=n, records=records, leaked_before=leaked, leaked_after=emulator.stats()["live"],
                    exit_code=proc.returncode)


# -- a host's link cut for 10 s during the hold ------------------------------------------------------------


def test_a_link_cut_for_10_s_during_the_hold_loses_and_duplicates_nothing(cluster, emulator, tmp_path):
    """Staggered starts give one host sandboxes 0-149 and the other 150-299, 50 ms apart: the early
    host's link is cut once all of its sandboxes exist (they wait at the barrier, held), while the
    other host still creates; the barrier releases by count during or just after the cut, and its
    release reaches the cut host when the link is back."""
    n, stagger_ms, hold, cut = 300, 50, 20, 10.0
    proc = start(cluster, cluster.hosts, n, emulator, tmp_path,  # heartbeat timeouts: their defaults, 30 s
                 ["--mode", "staggered", "--stagger-ms", str(stagger_ms), "--hold", str(hold)])
    try:
        early = wait_running(proc, lambda: next((h for h in cluster.hosts if created_on(h, tmp_path) == n // 2), None),
                             what="one host's sandboxes all created")
        cut_at = time.time()
        cluster.set_link(early, up=False)
        try:
            time.sleep(cut)  # the outage itself
        finally:
            cluster.set_link(early, up=True)
        restored_at = time.time()
        out, err = finish(proc, END_S)
    finally:
        for host in cluster.hosts:
            cluster.set_link(host, up=True)
        finish(proc, 1)
    assert proc.returncode == 0, err[-4000:] + out[-3000:]
    run_path = run_path_of(tmp_path)
    meta = json.loads((run_path / "meta.json").read_text())
    records = records_of(run_path)
    # every result exactly once, no sandbox created twice
    assert sorted(r["sandbox_idx"] for r in records) == list(range(n))
    assert len({r["sandbox_id"] for r in records}) == n
    assert all(r["status"] == "success" and r["destroy_ok"] for r in records)
    created = created_by_host(run_path)
    assert len(created[early.name]) == n // 2 and len(created) == 2 and sum(map(len, created.values())) == n
    assert emulator.stats()["created"] == n
    # the barrier released by count (not by its deadline), nobody was lost, nothing leaks
    assert meta["barrier"]["reason"] == "count" and meta["lost_workers"] == [] and meta["missing_count"] == 0
    assert emulator.stats()["live"] == 0
    assert "0 sandbox(es) not known to be destroyed" in loadgen_command("reap", run_path, "--dry-run").stdout
    released = meta["barrier"]["released_at"] - cut_at
    reliability.row("a host's link cut for 10 s during the hold",
                    f"2 hosts x 1 worker, {n} sandboxes {stagger_ms} ms apart, --hold {hold}; {early.name}'s veth "
                    f"down for {cut:g} s once its {n // 2} sandboxes existed (held at the barrier), then up; the "
                    f"barrier released by count {released:.1f} s after the cut began "
                    f"({restored_at - cut_at:.1f} s outage); {meta['duplicate_deliveries']} records delivered "
                    "twice, kept once", expected=n, records=records, leaked_before=emulator.stats()["live"],
                    leaked_after=emulator.stats()["live"], exit_code=proc.returncode)


# -- the master SIGKILLed during the hold ------------------------------------------------------------------


def test_a_killed_master_leaves_nothing_alive_and_recover_finishes_the_run_in_postgres(cluster, emulator, tmp_path):
    h0, h1 = cluster.hosts
    n, hold = 200, 120
    with fresh_database() as url:
        # (--grace 60: the launcher waits that long for the workers to end by themselves before it signals them)
        proc = start(cluster, [h0, h1], n, emulator, tmp_path, ["--hold", str(hold), "--master-heartbeat-timeout", str(LOST_AFTER_S)],
                     env={"DATABASE_URL": url}, launcher_args=("--grace", "60"))
        try:
            wait_running(proc, lambda: holding(cluster, emulator, tmp_path, n), what=f"{n} sandboxes held")
            wait_for(lambda: query(url, "SELECT count(*) FROM runs WHERE status = 'running'") == [(1,)], 60,
                     what="the run's row in Postgres")
            os.kill(master_pid(proc), signal.SIGKILL)
            out, err = finish(proc, END_S)
        finally:
            finish(proc, 1)
        assert proc.returncode == 4, err[-4000:]
        # the workers noticed by themselves, ended their holds and destroyed what they held
        assert emulator.stats()["live"] == 0 and emulator.stats()["killed"] == n
        run_path = run_path_of(tmp_path)
        hosts = json.loads((run_path / "hosts.json").read_text())["hosts"]
        assert [h["stop"] for h in hosts] == [{"terminated": [], "killed": [], "left": []}] * 2  # no signal needed
        for log in sorted((run_path / "logs").glob("*.worker-*.log")):
            assert "the master has been silent" in log.read_text(), log
        assert not (run_path / "meta.json").exists()
        assert f"loadgen recover {run_path}" in err
        journaled = journal_records(run_path)
        assert sorted(r["sandbox_idx"] for r in journaled) == list(range(n))
        assert all(r["hold_ms"] < hold * 1000 and r["destroy_ok"] for r in journaled)  # holds cut short, destroyed
        before = len(records_of(run_path))  # what the master had received before it was killed
        assert before < n
        # until recovered, the run is running in Postgres; silent for 5 minutes, stuck_runs lists it
        [(run_id, status)] = query(url, "SELECT id, status FROM runs")
        assert status == "running" and run_id == run_path.name
        query(url, "UPDATE runs SET last_heartbeat = now() - interval '6 minutes'")  # as 6 minutes of silence
        assert query(url, "SELECT id FROM stuck_runs") == [(run_id,)]
        recover = loadgen_command("recover", run_path, env={"DATABASE_URL": url})
        assert recover.returncode == 0, recover.stdout[-3000:] + recover.stderr[-3000:]
        meta = json.loads((run_path / "meta.json").read_text())
        assert meta["status"] == "interrupted" and meta["exit_code"] == 4 and meta["records_received"] == n
        assert meta["missing_count"] == 0 and meta["recovered"]["from_journals"] == n - before
        records = records_of(run_path)
        assert sorted(r["sandbox_idx"] for r in records) == list(range(n))
        assert all(r["destroy_ok"] for r in records)
        assert query(url, "SELECT status FROM runs") == [("interrupted",)]
        assert query(url, "SELECT count(*), count(DISTINCT sandbox_idx) FROM sandbox_results") == [(n, n)]
        assert query(url, "SELECT id FROM stuck_runs") == []
        assert "0 sandbox(es) not known to be destroyed" in loadgen_command("reap", run_path, "--dry-run").stdout
        # a second recover refuses: the run is finished
        assert loadgen_command("recover", run_path, env={"DATABASE_URL": url}).returncode == 2
    reliability.row("the master SIGKILLed during the hold",
                    f"2 hosts x 1 worker, {n} sandboxes, --hold {hold}, Postgres on; once all were live, the "
                    f"master SIGKILLed; the workers ended their holds after --master-heartbeat-timeout "
                    f"{LOST_AFTER_S:g}; "
                    f"loadgen recover ({before} records from the master, {n - before} from the journals)",
                    expected=n, records=records, leaked_before=emulator.stats()["live"],
                    leaked_after=emulator.stats()["live"], exit_code=proc.returncode)
