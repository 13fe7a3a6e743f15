"""Leaks a retry can prevent: destroy retries against the emulator's transient and permanent kill failures."""

from loadgen.emulator import start_emulator
from loadgen.result import parse_iso
from tests.locust_harness import run_locust

SLACK_S = 0.05  # timestamps of one greenlet's clock, rounded to the microsecond, and the wire's stamps before them


def test_transient_kill_failures_are_retried_and_nothing_is_left_alive(tmp_path):
    # every sandbox's first two kills fail; the third succeeds
    with start_emulator("fast", fault_kill=1.0, kill_fail_mode="transient", kill_fail_count=2) as emu:
        run = run_locust("local.py", 10, tmp_path, ["--emulator-url", emu.url], timeout=120)
        stats = emu.stats()
        truth = emu.sandboxes()
    assert run.returncode == 0, run.output[-4000:]
    assert stats["created"] == 10 and stats["live"] == 0 and stats["killed"] == 10
    assert all(s["faults"].count("kill_fail") == 2 for s in truth)
    for r in run.records:
        # the record measures the first attempt; the retries are beside it
        assert r["destroy_ok"] is False and r["destroy_failure_class"] == "http_error"
        assert [a["ok"] for a in r["destroy_retries"]] == [False, True], r["destroy_retries"]
        assert all(a["started_at"] and a["ended_at"] and a["ms"] is not None for a in r["destroy_retries"])
        assert r["destroy_retries"][0]["failure_class"] == "http_error"
        # a bounded backoff: 1 s before the first retry, 2 s before the second (the greenlet sleeps at least that)
        first, second = r["destroy_retries"]
        assert parse_iso(first["started_at"]) - parse_iso(r["destroy_ended_at"]) >= 1.0 - SLACK_S
        assert parse_iso(second["started_at"]) - parse_iso(first["ended_at"]) >= 2.0 - SLACK_S
    meta = run.meta
    assert meta["leak_count"] == 0 and meta["leaks"] == []
    assert meta["destroy_retried"] == {"sandboxes": 10, "destroyed_by_retry": 10}
    assert meta["destroy_distribution"]["count"] == 0  # no first attempt succeeded
    assert "LEAKED" not in run.output


def test_permanent_kill_failures_are_listed_by_id_with_reap_suggested(tmp_path):
    with start_emulator("fast", fault_kill=1.0) as emu:
        run = run_locust("local.py", 4, tmp_path, ["--emulator-url", emu.url, "--destroy-retries", "1"], timeout=120)
        stats = emu.stats()
    assert run.returncode == 0, run.output[-4000:]
    assert stats["live"] == 4
    meta = run.meta
    ids = sorted(r["sandbox_id"] for r in run.records)
    assert meta["leak_count"] == 4 and sorted(leak["sandbox_id"] for leak in meta["leaks"]) == ids
    assert all(leak["destroy_retries"] == 1 for leak in meta["leaks"])
    assert all(len(r["destroy_retries"]) == 1 and r["destroy_retries"][0]["ok"] is False for r in run.records)
    leaked_line = next(line for line in run.output.splitlines() if "[summary] LEAKED: 4 sandboxes" in line)
    assert all(sandbox_id in leaked_line for sandbox_id in ids)
    assert f"loadgen reap {run.run_path}" in run.output
    # each leak costs its whole lifetime: it lives until the provider expires it
    cost = meta["cost"]
    lifetime = cost["estimate"]["lifetime_s"]
    assert cost["leaked"] == 4 and cost["leaked_sandbox_seconds"] == cost["sandbox_seconds"] == 4 * lifetime
    assert "4 leaked counted at their lifetime" in run.output
