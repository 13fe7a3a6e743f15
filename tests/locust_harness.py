"""Run real Locust processes (one, or a master and workers) the way a user does.

Tests drive loadgen through the `locust` command itself, so that Locust's own
dispatch, messaging and shutdown are what is tested, not a stand-in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import orjson

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILES = REPO / "locustfiles"
LOCUST = str(Path(sys.executable).with_name("locust"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env.setdefault("E2B_API_KEY", "e2b_test_key")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass
class LocustRun:
    returncode: int
    output: str
    run_dir: Path
    worker_outputs: list = field(default_factory=list)

    @property
    def run_path(self) -> Path:
        runs = [p for p in self.run_dir.iterdir() if p.is_dir()]
        assert len(runs) == 1, f"expected one run directory, found {runs}\n{self.output[-3000:]}"
        return runs[0]

    @property
    def meta(self) -> dict:
        return orjson.loads((self.run_path / "meta.json").read_bytes())

    @property
    def records(self) -> list[dict]:
        lines = (self.run_path / "raw.jsonl").read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line.strip()]


def _cmd(locustfile: str, users: int, run_dir: Path, args: list[str]) -> list[str]:
    return [LOCUST, "-f", str(LOCUSTFILES / locustfile), "--headless", "-u", str(users), "-r", str(users),
            "--run-dir", str(run_dir), "--only-summary", *args]


def start_locust(locustfile: str, users: int, run_dir: Path, args=(), env=None, workers: int = 0,
                 expect_workers: Optional[int] = None, worker_args=()) -> tuple[subprocess.Popen, list, int]:
    """Start a single process, or a master plus `workers` workers. Returns (master, workers, port)."""
    args = list(args)
    port = free_port()
    if workers or expect_workers:
        args += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                 "--expect-workers", str(expect_workers or workers)]
    master = subprocess.Popen(_cmd(locustfile, users, run_dir, args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=base_env(env), text=True, start_new_session=True)
    procs = [start_worker(locustfile, port, env, worker_args) for _ in range(workers)]
    return master, procs, port


def start_worker(locustfile: str, port: int, env=None, args=()) -> subprocess.Popen:
    return subprocess.Popen(
        [LOCUST, "-f", str(LOCUSTFILES / locustfile), "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=base_env(env), text=True, start_new_session=True)


def finish(master: subprocess.Popen, workers: list, run_dir: Path, timeout: float = 240) -> LocustRun:
    try:
        out, _ = master.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all([master, *workers])
        out, _ = master.communicate()
        raise AssertionError(f"locust did not end within {timeout} s:\n{out[-5000:]}")
    worker_outputs = []
    for w in workers:
        try:
            wout, _ = w.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_all([w])
            wout, _ = w.communicate()
        worker_outputs.append(wout)
    return LocustRun(master.returncode, out, run_dir, worker_outputs)


def run_locust(locustfile: str, users: int, run_dir: Path, args=(), env=None, workers: int = 0,
               timeout: float = 240) -> LocustRun:
    master, procs, _ = start_locust(locustfile, users, run_dir, args, env, workers)
    return finish(master, procs, run_dir, timeout)


def kill_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
