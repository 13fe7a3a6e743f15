"""The burst engine in one Locust process, against a real emulator through the real e2b SDK."""

import collections
from pathlib import Path

from loadgen.emulator import start_emulator
from tests.locust_harness import run_locust


def test_one_process_300_sandboxes_exactly_once(tmp_path, emulator):
    run = run_locust("local.py", 300, tmp_path, ["--emulator-url", emulator.url])
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 300
    assert sorted(r["sandbox_idx"] for r in records) == list(range(300))
    ids = [r["sandbox_id"] for r in records]
    assert len(set(ids)) == 300 and None not in ids
    assert all(r["status"] == "success" for r in records)
    stats = emulator.stats()
    assert stats["created"] == 300 and stats["killed"] == 300 and stats["live"] == 0
    # every create carried its run id and index, and the server saw exactly those
    seen = collections.Counter(s["metadata"]["sandbox_idx"] for s in emulator.sandboxes())
    assert seen == collections.Counter(str(i) for i in range(300))
    meta = run.meta
    assert meta["status"] == "done" and meta["complete"] is True
    assert meta["status_histogram"]["success"] == 300


EXPECTED_BY_FAULT = {
    "create_5xx": ("failed", "http_error"),
    "create_hang": ("failed", "timeout"),
    "reset": ("failed", "network_error"),
    "readiness_fail": ("readiness_failed", None),
    "died": ("partial", None),
}


def test_chaos_statuses_match_injected_faults(tmp_path):
    with start_emulator("chaos", seed=7) as emu:
        run = run_locust("local.py", 400, tmp_path, [
            "--emulator-url", emu.url, "--create-timeout", "3", "--late-create-window", "1",
            "--command-timeout", "5", "--hold", "2",
        ])
        assert run.returncode == 0, run.output[-4000:]
        truth = {int(s["metadata"]["sandbox_idx"]): s for s in emu.sandboxes()}
        stats = emu.stats()
    records = {r["sandbox_idx"]: r for r in run.records}
    assert len(records) == 400 and set(truth) == set(records)
    injected = collections.Counter()
    for idx, record in records.items():
        faults = truth[idx]["faults"]
        primary = next((f for f in faults if f in EXPECTED_BY_FAULT), None)
        injected[primary] += 1
        status, failure_class = EXPECTED_BY_FAULT.get(primary, ("success", None))
        assert record["status"] == status, (idx, faults, record)
        if failure_class:
            assert record["failure_class"] == failure_class, (idx, faults, record)
        if primary == "create_5xx":
            assert 500 <= int(record["http_status"]) <= 599
        if "kill_fail" in faults and record["sandbox_id"]:
            assert record["destroy_ok"] is False, (idx, faults, record)
    # the profile really injected each kind of fault
    assert all(injected[f] > 0 for f in EXPECTED_BY_FAULT), injected
    # nothing leaked except where the emulator refused the kill
    assert stats["live"] == sum(1 for r in records.values() if r["sandbox_id"] and r["destroy_ok"] is False)


def test_create_slower_than_its_timeout_is_failed_and_still_destroyed(tmp_path):
    with start_emulator("fast", create_latency={"kind": "constant", "ms": 2500}) as emu:
        run = run_locust("local.py", 20, tmp_path, [
            "--emulator-url", emu.url, "--create-timeout", "1", "--late-create-window", "10",
        ])
        stats = emu.stats()
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 20
    for r in records:
        assert (r["status"], r["failure_class"], r["failed_phase"]) == ("failed", "timeout", "create")
        assert r["late_create"] is True and r["sandbox_id"] and r["destroy_ok"] is True
    assert stats["created"] == 20 and stats["killed"] == 20 and stats["live"] == 0


def test_bad_option_fails_before_any_create(tmp_path, emulator):
    run = run_locust("local.py", 5, tmp_path, ["--emulator-url", emulator.url, "--create-timeout", "-1"])
    assert run.returncode != 0
    assert "--create-timeout must be > 0" in run.output
    assert emulator.stats()["requests"] == 0


def test_missing_credentials_name_the_variable_and_create_nothing(tmp_path, emulator):
    run = run_locust("e2b.py", 5, tmp_path, ["--emulator-url", emulator.url], env={"E2B_API_KEY": ""})
    assert run.returncode != 0
    assert "E2B_API_KEY" in run.output
    assert emulator.stats()["requests"] == 0


def test_the_e2b_locustfile_runs_despite_sharing_the_sdk_name(tmp_path, emulator):
    # Locust imports locustfiles/e2b.py as the module `e2b`; the SDK must still be found
    run = run_locust("e2b.py", 20, tmp_path, ["--emulator-url", emulator.url])
    assert run.returncode == 0, run.output[-4000:]
    assert len(run.records) == 20 and all(r["status"] == "success" for r in run.records)
    assert emulator.stats()["killed"] == 20


def test_an_adapter_that_cannot_start_ends_the_run_at_once(tmp_path, emulator):
    locustfile = str(Path(__file__).parent / "locustfiles" / "broken_setup.py")
    run = run_locust(locustfile, 5, tmp_path, ["--emulator-url", emulator.url], timeout=60)
    assert run.returncode == 3, run.output[-3000:]
    assert "could not start" in run.output
    assert run.meta["status"] == "failed" and "adapter setup failed" in run.meta["error_message"]
    assert emulator.stats()["requests"] == 0
