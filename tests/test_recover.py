"""A master SIGKILLed mid-hold, on this machine: its worker notices (--master-heartbeat-timeout), ends its holds and
destroys what it holds by itself; `loadgen recover` then finishes the run from the worker's journal.
(Over SSH, with Postgres and stuck_runs: tests/test_host_loss_ssh.py.)"""

import json
import signal

import orjson

from loadgen.engine.recover import main
from tests.locust_harness import kill_all, start_locust, wait_for


def test_a_killed_masters_worker_destroys_what_it_holds_and_recover_finishes_the_run(tmp_path, emulator, monkeypatch,
                                                                                      capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    n = 40
    master, workers, _ = start_locust("local.py", n, tmp_path, ["--emulator-url", emulator.url, "--hold", "120",
                                                                "--master-heartbeat-timeout", "5"], workers=1)
    try:
        wait_for(lambda: emulator.stats()["live"] == n, 180, what=f"{n} sandboxes held")
        master.send_signal(signal.SIGKILL)
        master.communicate(timeout=30)
        out, _ = workers[0].communicate(timeout=120)  # it ends by itself, long before its hold of 120 s
    finally:
        kill_all([master, *workers])
    assert "the master has been silent" in out and "quitting" in out
    assert emulator.stats()["live"] == 0 and emulator.stats()["killed"] == n
    [run_path] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not (run_path / "meta.json").exists()
    [journal] = [p for p in (run_path / "journal").glob("*.jsonl") if not p.name.endswith(".created.jsonl")]
    journaled = journal.read_bytes().splitlines()
    assert len(journaled) == n
    # as if the master had received one record, and was killed writing the next
    (run_path / "raw.jsonl").write_bytes(journaled[0] + b"\n" + journaled[1][:20])
    assert main(["recover", str(run_path)]) == 0
    meta = json.loads((run_path / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["exit_code"] == 4 and meta["records_received"] == n
    assert meta["missing_count"] == 0 and meta["duplicate_deliveries"] == 0
    assert meta["recovered"]["from_master"] == 1 and meta["recovered"]["from_journals"] == n - 1
    assert meta["interrupted_reason"].startswith("the master was lost mid-run")
    records = [orjson.loads(line) for line in (run_path / "raw.jsonl").read_bytes().splitlines()]
    assert sorted(r["sandbox_idx"] for r in records) == list(range(n))  # the torn line is gone, nothing twice
    assert "recovered as interrupted" in capsys.readouterr().out
    assert main(["recover", str(run_path)]) == 2  # finished now: refused without --force
