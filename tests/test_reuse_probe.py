"""The identity/reuse probe: a reused container fails its iteration, a fresh one is never flagged.

The probe's one shell command is checked three ways: in a real Linux shell
inside fresh namespaces (the kernel's own answers), in the emulator's
pretend shell, and end to end through the real e2b SDK against an emulator
that hands out used containers (``fault_reuse``), where the emulator's ground
truth says which sandboxes shared one.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from loadgen.emulator import shell, start_emulator
from loadgen.engine import reuse_probe
from loadgen.report.reuse import reuse_summary
from loadgen.result import CONTAINER_REUSED, FINGERPRINT_SIGNALS
from tests.locust_harness import run_locust


PRIVATE_TMP = "mount -t tmpfs none /tmp && mount -t tmpfs none /var/tmp && "
NEW_NAMESPACES = ["unshare", "--mount", "--pid", "--uts", "--fork", "--mount-proc"]


def _in_new_namespaces(script: str, *commands: str) -> subprocess.CompletedProcess:
    """Run `sh -c script _ commands...` in new mount, pid and uts namespaces with private /tmp and /var/tmp."""
    return subprocess.run([*NEW_NAMESPACES, "sh", "-c", PRIVATE_TMP + script, "_", *commands],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare (and root)")
def test_the_probe_on_a_real_kernel_finds_an_earlier_marker_and_not_its_own():
    first, second = reuse_probe.marker_token("run-a", 0), reuse_probe.marker_token("run-a", 1)
    # two sandboxes probe the same container; a third, a fresh container while the first still exists
    # (the kernel reuses a freed namespace's number)
    fresh_inside = " ".join(NEW_NAMESPACES) + f" sh -c '{PRIVATE_TMP}sh -c \"$1\"' _ \"$2\""
    same = _in_new_namespaces(f'bash -lc "$1"; echo "#MARK#"; bash -lc "$2"; echo "#MARK#"; {fresh_inside}',
                              reuse_probe.command(first), reuse_probe.command(second))
    if same.returncode != 0 and "Operation not permitted" in same.stderr:
        pytest.skip("no permission to make namespaces here")
    assert same.returncode == 0, same.stderr
    out_first, out_second, out_fresh = same.stdout.split("#MARK#")
    fp_first = reuse_probe.parse(out_first, first)
    fp_second = reuse_probe.parse(out_second, second)
    fresh = reuse_probe.parse(out_fresh, second)

    for fp in (fp_first, fp_second, fresh):
        assert fp["complete"] and all(fp[s] for s in FINGERPRINT_SIGNALS), fp
        assert fp["mnt_ns"].startswith("mnt:[") and fp["pid1"].split("@")[1].isdigit()
    reuse_probe.verdict(0, fp_first)  # its own marker is not an earlier sandbox's
    reuse_probe.verdict(0, fresh)
    assert fp_second["earlier_markers"] == [first]
    with pytest.raises(reuse_probe.ContainerReused) as caught:
        reuse_probe.verdict(0, fp_second)
    assert caught.value.info.error_code == CONTAINER_REUSED
    assert {s: fp_first[s] for s in ("mnt_ns", "pid_ns", "uts_ns")} == \
        {s: fp_second[s] for s in ("mnt_ns", "pid_ns", "uts_ns")}
    assert all(fresh[s] != fp_first[s] for s in ("mnt_ns", "pid_ns", "uts_ns"))


def test_the_pretend_shell_answers_the_probe_per_container():
    a, b = shell.Container("sb-a", "seed-a"), shell.Container("sb-b", "seed-b")
    t1, t2 = reuse_probe.marker_token("r", 1), reuse_probe.marker_token("r", 2)
    fp_a = reuse_probe.parse(shell.run(reuse_probe.command(t1), container=lambda: a).stdout.decode(), t1)
    fp_b = reuse_probe.parse(shell.run(reuse_probe.command(t2), container=lambda: b).stdout.decode(), t2)
    assert fp_a["complete"] and all(fp_a[s] for s in FINGERPRINT_SIGNALS)
    assert all(fp_a[s] != fp_b[s] for s in FINGERPRINT_SIGNALS)
    assert not fp_a["earlier_markers"] and not fp_b["earlier_markers"]
    again = reuse_probe.parse(shell.run(reuse_probe.command(t2), container=lambda: a).stdout.decode(), t2)
    assert again["earlier_markers"] == [t1] and {s: again[s] for s in FINGERPRINT_SIGNALS} == \
        {s: fp_a[s] for s in FINGERPRINT_SIGNALS}
    assert a.files == {path: f"{t1}\n{t2}\n" for path in reuse_probe.MARKER_FILES}
    # a command that touched a container is never served from the shell's cache
    assert b"loadgen-marker" not in shell.run("cat /tmp/.loadgen-reuse-marker").stdout


def test_repeated_signals_warn_at_three():
    base = dict(zip(FINGERPRINT_SIGNALS, ("m1", "p1", "u1", "c1", "b1", "i1")))
    records = [
        {"sandbox_idx": 0, "sandbox_fingerprint": base},
        {"sandbox_idx": 1, "sandbox_fingerprint": {**base, "mnt_ns": "m2", "pid_ns": "p2", "uts_ns": "u2"}},  # 3 repeat
        {"sandbox_idx": 2, "sandbox_fingerprint": dict(zip(FINGERPRINT_SIGNALS, ("m3", "p3", "u3", "c3", "b1", "i1")))},
        {"sandbox_idx": 3, "sandbox_fingerprint": {**base, "cgroup_hash": None, "boot_id": None, "pid1": None,
                                                   "uts_ns": "u4"}},  # only 2 repeat, 3 unreadable
        {"sandbox_idx": 4, "sandbox_fingerprint": None},
    ]
    summary = reuse_summary(records)
    assert summary["probed"] == 4 and summary["warning_count"] == 1
    assert summary["warnings"] == [{"sandbox_idx": 1, "same_as": 0, "signals": ["cgroup_hash", "boot_id", "pid1"]}]
    assert summary["signals"]["boot_id"] == {"present": 3, "distinct": 1, "repeated": 3}
    assert reuse_summary([{"sandbox_idx": 0}]) is None


def _probe_run(tmp_path, users: int, **emulator_settings):
    # a fixed run id fixes the emulator's draws (seeded by seed, run_id and sandbox_idx): with seed 3 and
    # this id, four of the eight sandboxes draw a used container, whatever order they arrive in
    with start_emulator("fast", seed=3, **emulator_settings) as emu:
        run = run_locust("local.py", users, tmp_path / "runs",
                         ["--emulator-url", emu.url, "--reuse-probe", "--run-id", "reuse-probe-test"])
        truth = emu.sandboxes()
        assert emu.stats()["live"] == 0
    assert run.returncode == 0, run.output[-3000:]
    return run, truth


def test_a_fresh_container_is_not_flagged(tmp_path):
    run, truth = _probe_run(tmp_path, 4)
    records = run.records
    assert [r["status"] for r in records] == ["success"] * 4
    for r in records:
        fp = r["sandbox_fingerprint"]
        assert fp["complete"] and not fp["earlier_markers"] and all(fp[s] for s in FINGERPRINT_SIGNALS)
        # inside the timed readiness window: the probe ran, then node -v
        assert 0 <= r["reuse_probe_ms"] <= r["first_command_ms"]
    assert len({r["sandbox_fingerprint"]["boot_id"] for r in records}) == 4
    meta = run.meta["reuse_probe"]
    assert meta["probed"] == 4 and meta["reused"] == 0 and meta["warning_count"] == 0
    assert len({t["container"] for t in truth}) == 4
    # the probe and node -v, each once, in that order
    assert all([e["command"].startswith("sh -c") for e in t["execs"]][:2] == [True, False] for t in truth)


def test_a_reused_container_is_detected(tmp_path):
    run, truth = _probe_run(tmp_path, 8, fault_reuse=0.5)
    by_id = {t["sandbox_id"]: t for t in truth}
    # ground truth: a sandbox ran in a used container when another sandbox probed that container before it
    first_probe = {}
    for t in sorted(truth, key=lambda t: t["execs"][0]["order"]):
        first_probe.setdefault(t["container"], t["sandbox_id"])
    expected = {sid for sid, t in by_id.items() if first_probe[t["container"]] != sid}
    assert expected and len(expected) < 8, "the seed should give a mix of fresh and reused containers"

    records = run.records
    flagged = {r["sandbox_id"] for r in records if r["error_code"] == CONTAINER_REUSED}
    assert flagged == expected
    for r in records:
        if r["sandbox_id"] in flagged:
            assert (r["status"], r["failed_phase"], r["failure_class"]) == ("readiness_failed", "readiness", "other")
            assert r["sandbox_fingerprint"]["earlier_markers"] and r["destroy_ok"] is True
            assert len(by_id[r["sandbox_id"]]["execs"]) == 1  # no node -v after a failed probe
        else:
            assert r["status"] == "success" and not r["sandbox_fingerprint"]["earlier_markers"]
    meta = run.meta["reuse_probe"]
    assert meta["reused"] == len(flagged) and sorted(meta["reused_sandbox_idx"]) == \
        sorted(r["sandbox_idx"] for r in records if r["sandbox_id"] in flagged)
    # every sandbox in a shared container repeats all six signals of the one that was there first
    assert meta["warning_count"] == len(flagged)
    assert all(len(w["signals"]) == len(FINGERPRINT_SIGNALS) for w in meta["warnings"])
