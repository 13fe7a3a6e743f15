"""Limits raised and checked before anything is created; the generator's own failures never blamed on the provider."""

from __future__ import annotations

import resource
import subprocess

from loadgen.emulator import start_emulator
from tests.locust_harness import LOCUST, LOCUSTFILES, REPO, base_env, run_locust


def _with_nofile(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return set_limit


def test_a_process_whose_sandboxes_cannot_fit_its_descriptor_limit_is_refused(tmp_path, emulator):
    """ulimit -n 256 and 400 users: exit 2, a message naming the fix, no run directory, zero creates."""
    run_dir = tmp_path / "runs"
    out = subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILES / "local.py"), "--headless", "-u", "400", "-r", "400",
         "--run-dir", str(run_dir), "--emulator-url", emulator.url, "--only-summary"],
        capture_output=True, text=True, env=base_env(), timeout=120, preexec_fn=_with_nofile(256))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "file descriptors" in out.stderr and "ulimit -n" in out.stderr and "worker processes" in out.stderr
    assert emulator.stats()["ops"]["create"]["requests"] == 0
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path, emulator):
    def soft_below_hard():
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 4096))

    run = subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILES / "local.py"), "--headless", "-u", "5", "-r", "5",
         "--run-dir", str(tmp_path), "--emulator-url", emulator.url, "--only-summary"],
        capture_output=True, text=True, env=base_env(), timeout=120, preexec_fn=soft_below_hard)
    assert run.returncode == 0, run.stderr[-3000:]
    import orjson

    (run_path,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    identity = orjson.loads((run_path / "run.json").read_bytes())
    local = identity["limits"]["processes"]["local"]
    assert (local["nofile_soft"], local["nofile_hard"]) == (4096, 4096)
    assert local["ephemeral_ports"] and identity["limits"]["sandboxes_per_process"] == {"local": 5}


def test_descriptors_exhausted_mid_run_are_the_generators_failure(tmp_path):
    """The process runs out of descriptors for 1.5 s mid-burst: the sandboxes it could not
    connect for carry failure class generator_error, the provider is blamed for none, the
    success rate leaves them out, and the run says its measurement was compromised (exit 5)."""
    # Creates answered over 3 s and commands that take 2 s: the hog begins at the 10th create, and every
    # command that starts in its window needs a connection of its own (the earlier ones are all busy), so
    # some sandboxes surely meet the exhausted descriptors
    with start_emulator("fast", create_latency="uniform:200,3000", exec_latency="constant:2000") as emu:
        run = run_locust(str(REPO / "tests" / "locustfiles" / "fd_hog.py"), 60, tmp_path / "runs",
                         ["--emulator-url", emu.url, "-r", "60"],
                         env={"TEST_HOG_AFTER": "10", "TEST_HOG_S": "1.5"})
        stats = emu.stats()
    records = run.records
    assert len(records) == 60, run.output[-3000:]
    generator = [r for r in records if r["failure_class"] == "generator_error"]
    assert generator, "no sandbox hit the exhausted descriptors: the test proves nothing"
    assert all(r["error_code"] == "EMFILE" for r in generator), generator[:3]
    assert {r["failure_class"] for r in records} <= {None, "generator_error"}, \
        [(r["sandbox_idx"], r["failure_class"], r["error_message"]) for r in records if r["failure_class"]]
    meta = run.meta
    assert meta["generator_failures"] == len(generator) and meta["measurement_compromised"] is True
    assert meta["success_rate"] == 1.0  # every sandbox the provider was asked for succeeded
    assert run.returncode == 5, run.output[-3000:]
    assert "MEASUREMENT COMPROMISED" in run.output
    assert stats["live"] == 0


small_port_range_host = __import__("tests.testhosts", fromlist=["fixture"]).fixture(
    1, sysctls={0: {"net.ipv4.ip_local_port_range": "60000 60099"}})


def test_a_host_whose_port_range_cannot_hold_the_connections_is_refused(small_port_range_host, tmp_path):
    """A host with 100 ephemeral ports, 200 sandboxes against one emulator address (two
    connections each): refused before any create, naming the sysctl."""
    cluster = small_port_range_host
    host = cluster.hosts[0]
    run_dir = tmp_path / "runs"
    out = cluster.enter(host, ["env", "E2B_API_KEY=e2b_test_key", LOCUST, "-f", str(LOCUSTFILES / "local.py"),
                               "--headless", "-u", "200", "-r", "200", "--run-dir", str(run_dir), "--only-summary"],
                        check=False, timeout=120)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-2000:])
    assert "ephemeral port range has only 100 ports" in out.stderr and "ip_local_port_range" in out.stderr
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_open_descriptors_counts_this_process_exactly():
    """The health sample's count (O(1) from /proc/self/fd's size) moves with every descriptor opened and closed."""
    import os

    from loadgen.host import open_descriptors

    before = open_descriptors()
    assert before == len(os.listdir("/proc/self/fd")) - 1  # (less the listing's own descriptor)
    pipes = [os.pipe() for _ in range(50)]
    try:
        assert open_descriptors() == before + 100
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
    assert open_descriptors() == before
