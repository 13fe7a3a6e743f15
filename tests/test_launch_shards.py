"""bin/launch-shards.sh: a master and workers from one command; here, every worker on this machine."""

import os
import subprocess
from pathlib import Path

import orjson

from tests.locust_harness import REPO, base_env


def test_launch_shards_runs_a_whole_burst_on_local_workers(tmp_path, emulator):
    env = base_env({"PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"})
    result = subprocess.run(
        [str(REPO / "bin" / "launch-shards.sh"), "-f", str(REPO / "locustfiles" / "local.py"), "-u", "200", "-w", "2",
         "--", "--emulator-url", emulator.url, "--run-dir", str(tmp_path), "--only-summary"],
        capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    run_path = next(p for p in tmp_path.iterdir() if p.is_dir())
    records = [orjson.loads(line) for line in (run_path / "raw.jsonl").read_bytes().splitlines()]
    assert len(records) == 200 and len({r["worker_id"] for r in records}) == 2
    assert emulator.stats()["created"] == 200 and emulator.stats()["live"] == 0


def test_launch_shards_rejects_bad_input_clearly():
    env = base_env({"PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"})
    launcher = str(REPO / "bin" / "launch-shards.sh")
    result = subprocess.run([launcher, "-u", "many"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "-u must be a positive integer" in result.stderr
    result = subprocess.run([launcher, "-u", "10", "--env", "LOADGEN_SURELY_UNSET"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2 and "--env LOADGEN_SURELY_UNSET: the variable is not set here" in result.stderr


def test_launch_shards_help_is_usage_text():
    env = base_env({"PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"})
    result = subprocess.run([str(REPO / "bin" / "launch-shards.sh"), "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: bin/launch-shards.sh -u N [options] [-- LOCUST_OPTIONS...]")
    for option in ("--hosts FILE", "--install", "--ssh-config FILE", "--env NAME", "--master-host ADDR"):
        assert option in result.stdout
    assert "set -euo pipefail" not in result.stdout  # the text, not lines of the script
