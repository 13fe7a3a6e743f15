"""The burst engine in one Locust process, against a real emulator through the real e2b SDK."""

import collections

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
