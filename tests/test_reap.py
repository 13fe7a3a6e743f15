"""`loadgen reap`: a worker killed mid-hold leaves sandboxes alive; the journals find them all."""

import signal

from loadgen.engine.reap import candidates, main
from tests.locust_harness import finish, kill_all, start_locust, wait_for


def test_reap_destroys_what_a_killed_worker_left(tmp_path, emulator, capsys):
    master, workers, _ = start_locust("local.py", 40, tmp_path,
                                      ["--emulator-url", emulator.url, "--hold", "120"], workers=1)
    try:
        wait_for(lambda: emulator.stats()["live"] == 40, 60, what="40 sandboxes held")
        # the worker journals each id once its create's answer reaches it
        wait_for(lambda: sum(len(p.read_bytes().splitlines()) for p in tmp_path.glob("*/journal/*.created.jsonl")) == 40,
                 60, what="40 created sandboxes journaled")
        workers[0].send_signal(signal.SIGKILL)  # no destroy, no last results
        workers[0].wait(10)
        master.send_signal(signal.SIGTERM)
        run = finish(master, [], tmp_path, timeout=120)
    finally:
        kill_all([master, *workers])
    assert run.returncode != 0
    assert emulator.stats()["live"] == 40  # leaked, as far as the provider knows
    assert len(candidates(run.run_path)) == 40
    assert main(["reap", str(run.run_path), "--dry-run"]) == 0
    assert emulator.stats()["live"] == 40
    assert main(["reap", str(run.run_path)]) == 0
    assert emulator.stats()["live"] == 0 and emulator.stats()["killed"] == 40
    assert candidates(run.run_path) == []
    assert main(["reap", str(run.run_path)]) == 0  # nothing twice
    assert "0 sandbox(es) not known to be destroyed" in capsys.readouterr().out
