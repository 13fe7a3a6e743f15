"""Driving bin/launch-shards.sh onto test hosts (tests.testhosts), as a user would: its command
line, its environment, what it leaves on the hosts and in the run directory. Shared by the
launcher's SSH tests and the host-loss tests."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from loadgen.emulator import start_emulator
from tests.locust_harness import REPO, base_env

LAUNCHER = REPO / "bin" / "launch-shards.sh"
PROBE_LOCUSTFILE = REPO / "tests" / "locustfiles" / "forwarded_secret.py"
WHEELHOUSE = Path(tempfile.gettempdir()) / "loadgen-test-wheelhouse"  # built once, kept across runs


def bridge_emulator_fixture():
    """A module's emulator, listening on the cluster's bridge (every host reaches it), and a
    per-test fixture that resets it."""

    @pytest.fixture(scope="module")
    def bridge_emulator(cluster):
        with start_emulator("fast", host=cluster.root_address) as emu:
            yield emu

    @pytest.fixture
    def emulator(bridge_emulator):
        bridge_emulator.reset()
        return bridge_emulator

    return bridge_emulator, emulator


def launcher_argv(cluster, hosts, users, *args, locustfile=PROBE_LOCUSTFILE, master_host=None, run_dir=None,
                  emulator=None, locust_args=()):
    hosts_file = cluster.write_hosts_file(Path(tempfile.mkdtemp(prefix="loadgen-hosts-")) / "hosts", hosts)
    argv = [str(LAUNCHER), "-f", str(locustfile), "-u", str(users), "--hosts", str(hosts_file),
            "--ssh-config", str(cluster.ssh_config), "--master-host", master_host or cluster.root_address,
            "--master-bind-host", cluster.root_address, "--wheelhouse", str(WHEELHOUSE), *args]
    if "--install" not in args:  # hosts with the checkout run this virtualenv (.venv, or tox's)
        argv += ["--remote-venv", sys.prefix]
    argv.append("--")
    if emulator is not None:
        argv += ["--emulator-url", emulator.url]
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    return argv + ["--only-summary", *locust_args]


def launcher_env(extra=None):
    return base_env({"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(extra or {})})


def launch(cluster, hosts, users, *args, timeout=300, env=None, **kw):
    return subprocess.run(launcher_argv(cluster, hosts, users, *args, **kw), capture_output=True, text=True,
                          env=launcher_env(env), timeout=timeout)


def loadgen_processes(cluster, host):
    """What runs on a host besides its sshd listener."""
    return [(pid, cmd) for pid, cmd in cluster.processes(host) if "[listener]" not in cmd]


def worker_pids(cluster, host) -> list:
    """The loadgen worker processes running on a host."""
    return [pid for pid, cmd in cluster.processes(host) if "loadgen.launch.worker" in cmd]


def run_path_of(run_dir: Path) -> Path:
    runs = [p for p in run_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def records_of(run_path: Path) -> list:
    return [orjson.loads(line) for line in (run_path / "raw.jsonl").read_bytes().splitlines() if line.strip()]


def loadgen_command(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`loadgen ARGS...` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "loadgen.cli", *map(str, args)], capture_output=True, text=True,
                          env=launcher_env(env), timeout=timeout)
