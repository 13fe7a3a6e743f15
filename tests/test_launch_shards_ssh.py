"""bin/launch-shards.sh over real SSH, onto test hosts (network namespaces with their own sshd):
preflight refusals, --install onto a host without the checkout, a whole run on two hosts with
Postgres and the object store on, and Ctrl-C, with the forwarded secret nowhere on the hosts.

One cluster serves the module: lg*h0 and lg*h1 see this checkout (at the same path, with its
virtualenv), lg*h2 does not; h0's sessions start with a soft descriptor limit of 1024, h1 has an
ephemeral port range of 1,000 ports.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from loadgen.launch.source import identity
from tests import reliability, testhosts
from tests.locust_harness import REPO, wait_for
from tests.pg_fixtures import fresh_database, query
from tests.s3_fixtures import assert_store_matches, moto_server, new_bucket, s3_client
from tests.ssh_launch import (PROBE_LOCUSTFILE, bridge_emulator_fixture, launch, launcher_argv, launcher_env,
                              loadgen_processes, records_of, run_path_of)

NARROW_PORTS = "40000 40999"

cluster = testhosts.fixture(3, checkout=[True, True, False], nofile={0: (1024, 4096)},
                            sysctls={1: {"net.ipv4.ip_local_port_range": NARROW_PORTS}})
bridge_emulator, emulator = bridge_emulator_fixture()


# -- preflight: refused before anything exists ------------------------------------------------------


def test_an_unreachable_host_is_refused_before_anything_is_created(cluster, emulator, tmp_path):
    h0 = cluster.hosts[0]
    out = launch(cluster, [h0.name, cluster.absent_host], 100, emulator=emulator, run_dir=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"host {cluster.absent_host}: does not answer over SSH" in out.stderr and "Fix:" in out.stderr
    assert "nothing was started" in out.stderr
    assert emulator.stats()["created"] == 0 and list(tmp_path.iterdir()) == []
    assert loadgen_processes(cluster, h0) == []
    reliability.row("a host unreachable at the start", f"{cluster.absent_host} (no answer) in the hosts file "
                    "beside a good host; 100 sandboxes asked for", expected=0, records=[],
                    leaked_before=emulator.stats()["live"], leaked_after=emulator.stats()["live"],
                    exit_code=out.returncode)


def test_a_host_without_loadgen_is_refused_without_install(cluster, emulator, tmp_path):
    h2 = cluster.hosts[2]
    out = launch(cluster, [h2.name], 100, emulator=emulator, run_dir=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"host {h2.name}: has no working loadgen in {REPO} (no virtualenv at {sys.prefix})" in out.stderr
    assert "rerun with --install" in out.stderr
    assert emulator.stats()["created"] == 0


def test_a_locustfile_missing_on_a_host_is_refused(cluster, emulator, tmp_path):
    outside = tmp_path / "elsewhere.py"  # outside the checkout: the hosts do not have it
    outside.write_text(PROBE_LOCUSTFILE.read_text())
    h0 = cluster.hosts[0]
    out = launch(cluster, [h0.name], 100, locustfile=outside, emulator=emulator, run_dir=tmp_path / "runs")
    assert out.returncode == 2, out.stderr
    assert f"host {h0.name}: has no locustfile {outside}" in out.stderr
    assert emulator.stats()["created"] == 0


def test_a_run_directory_the_workers_cannot_write_is_refused(cluster, emulator, tmp_path):
    h0 = cluster.hosts[0]
    out = launch(cluster, [h0.name], 100, emulator=emulator, run_dir="/etc/hostname/runs")  # under a file
    assert out.returncode == 2, out.stderr
    assert f"host {h0.name}: cannot write the run directory /etc/hostname/runs there" in out.stderr
    assert emulator.stats()["created"] == 0


def test_a_master_port_the_hosts_cannot_reach_is_refused(cluster, emulator, tmp_path):
    h0 = cluster.hosts[0]
    unreachable = f"{testhosts.subnet_prefix(cluster.slot)}.{testhosts.ABSENT_OCTET}"
    out = launch(cluster, [h0.name], 100, master_host=unreachable, emulator=emulator, run_dir=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"host {h0.name}: cannot reach the master at {unreachable}:" in out.stderr and "open TCP port" in out.stderr
    assert emulator.stats()["created"] == 0


# -- --install onto a host that lacks the checkout ---------------------------------------------------


def test_install_puts_this_checkout_on_a_host_without_it_and_runs_there(cluster, emulator, tmp_path):
    h2 = cluster.hosts[2]
    out = launch(cluster, [h2.name], 100, "--install", "-w", "1", emulator=emulator, run_dir=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-3000:]
    assert f"installing loadgen {identity()} into ~/loadgen/.venv on {h2.name}" in out.stderr
    marker = json.loads(h2.local_path("/root/loadgen/.loadgen-install.json").read_text())
    assert marker["source"] == identity()
    run_path = run_path_of(tmp_path)
    records = records_of(run_path)
    assert sorted(r["sandbox_idx"] for r in records) == list(range(100))
    assert {r["worker_id"].split("_")[0] for r in records} == {h2.name}
    host = json.loads((run_path / "hosts.json").read_text())["hosts"][0]
    assert host["installed"]["ok"] is True and host["source"] == identity()
    assert emulator.stats()["live"] == 0
    # the next launch finds it installed and installs nothing (--check: the preflight only)
    again = launch(cluster, [h2.name], 10, "--install", "--check", "-w", "1", emulator=emulator,
                   run_dir=tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "installing" not in again.stderr and "preflight passed: 1 hosts ready" in again.stderr


# -- a whole run over SSH ------------------------------------------------------------------------------


def test_two_hosts_two_workers_2000_sandboxes_with_postgres_and_object_store(cluster, emulator, tmp_path):
    h0, h1 = cluster.hosts[:2]
    with fresh_database() as url, moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        out = launch(cluster, [h0.name, h1.name], 2000, "-w", "2", emulator=emulator, run_dir=tmp_path,
                     env={"DATABASE_URL": url}, locust_args=["--bucket", bucket, "--prefix", "ssh"], timeout=600)
        assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-3000:]
        run_path = run_path_of(tmp_path)
        records = records_of(run_path)
        # every record exactly once
        assert sorted(r["sandbox_idx"] for r in records) == list(range(2000))
        assert len({r["sandbox_id"] for r in records}) == 2000
        assert all(r["status"] == "success" and r["destroy_ok"] for r in records)
        assert query(url, "SELECT count(*), count(DISTINCT sandbox_idx) FROM sandbox_results")[0] == (2000, 2000)
        assert_store_matches(s3_client(endpoint), bucket, f"ssh/{run_path.name}/", run_path, expect_records=2000)
    # worker ids name their hosts: two workers on each
    by_host = {}
    for worker in {r["worker_id"] for r in records}:
        by_host.setdefault(worker.split("_")[0], set()).add(worker)
    assert {h: len(w) for h, w in by_host.items()} == {h0.name: 2, h1.name: 2}
    # journals and logs came home; reap sees every sandbox created on any host
    journal = run_path / "journal"
    for worker in set().union(*by_host.values()):
        assert (journal / f"{worker}.jsonl").exists() and (journal / f"{worker}.created.jsonl").exists()
    created = sum(len(p.read_bytes().splitlines()) for p in journal.glob("*.created.jsonl"))
    assert created == 2000
    logs = sorted(p.name for p in (run_path / "logs").iterdir())
    assert logs == sorted([f"{h}.worker-{i}.log" for h in (h0.name, h1.name) for i in (1, 2)] + ["master.log"])
    reap = subprocess.run([sys.executable, "-m", "loadgen.cli", "reap", str(run_path), "--dry-run"],
                          capture_output=True, text=True, env=launcher_env(), timeout=120)
    assert reap.returncode == 0 and "0 sandbox(es) not known to be destroyed" in reap.stdout, reap.stdout + reap.stderr
    # each host's limits, as its workers had them
    hosts = {h["host"]: h for h in json.loads((run_path / "hosts.json").read_text())["hosts"]}
    assert hosts[h0.name]["limits"]["nofile_before"] == [1024, 4096] and hosts[h0.name]["limits"]["nofile"] == [4096, 4096]
    assert hosts[h1.name]["limits"]["port_range_before"] == [40000, 40999]
    assert hosts[h1.name]["limits"]["port_range"] == [1024, 65535]
    assert all(h["stop"] == {"terminated": [], "killed": [], "left": []} for h in hosts.values())
    assert emulator.stats()["created"] == 2000 and emulator.stats()["live"] == 0


# -- Ctrl-C, and the secret --------------------------------------------------------------------------------


def test_ctrl_c_interrupts_the_run_and_leaves_nothing_on_the_hosts_nor_the_secret(cluster, emulator, tmp_path):
    hosts = cluster.hosts[:2]
    secret = f"e2b_{uuid.uuid4().hex}"
    argv = launcher_argv(cluster, [h.name for h in hosts], 200, "-w", "1", "--env", "E2B_API_KEY",
                         emulator=emulator, run_dir=tmp_path, locust_args=["--hold", "120"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=launcher_env({"E2B_API_KEY": secret}), start_new_session=True)
    try:
        wait_for(lambda: emulator.stats()["live"] == 200, 180, interval=0.5, what="200 sandboxes held")
        # during the run: not on any host's command lines or in any process's environment there
        seen = []
        for host in hosts:
            for pid, _ in cluster.processes(host):
                for what in ("cmdline", "environ"):
                    try:
                        if secret.encode() in Path(f"/proc/{pid}/{what}").read_bytes():
                            seen.append((host.name, pid, what))
                    except OSError:
                        pass
        assert seen == []
        assert all(len(loadgen_processes(cluster, h)) == 1 for h in hosts)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the launcher
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 4, err[-4000:]
    assert time.monotonic() - started < 120  # the hold of 120 s was cut short
    stats = emulator.stats()
    assert stats["created"] == 200 and stats["killed"] == 200 and stats["live"] == 0
    assert all(loadgen_processes(cluster, h) == [] for h in hosts)
    run_path = run_path_of(tmp_path)
    meta = json.loads((run_path / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["records_received"] == 200
    assert len(list((run_path / "journal").glob("*.created.jsonl"))) == 2
    # the secret arrived (each worker logged its digest) and is in no file on any host or in the run
    digest = hashlib.sha256(secret.encode()).hexdigest()
    worker_logs = sorted((run_path / "logs").glob("*.worker-*.log"))
    assert len(worker_logs) == 2 and all(digest in p.read_text() for p in worker_logs)
    files = [p for p in run_path.rglob("*") if p.is_file()] + [p for h in hosts for p in h.own_files()]
    files += [p for h in hosts for p in h.dir.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in out and secret not in err
