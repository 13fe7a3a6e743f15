"""The runs row tells the truth about a run: its target, label, failure and leak counts, and meta.json.

A dashboard groups runs by provider; without the target, emulator runs (provider
e2b) would mix with real ones. runs.meta must be the final meta.json, whose last
keys (exit_code, complete, sinks) are only known after the sinks finished.
"""

from __future__ import annotations

import orjson

from tests.locust_harness import run_locust
from tests.pg_fixtures import fresh_database, query


def test_the_runs_row_has_target_label_counts_and_the_final_meta(tmp_path):
    with fresh_database() as url:
        # the chaos profile fails some creates and readiness probes: non-zero counts to check
        run = run_locust("local.py", 60, tmp_path, ["--database-url", url, "--label", "chaos check",
                                                     "--emulator-profile", "chaos", "--create-timeout", "3",
                                                     "--late-create-window", "3", "--command-timeout", "3"],
                         timeout=180)
        assert run.returncode == 0, run.output[-3000:]
        ((target, profile, label, failures, leaks, stored),) = query(
            url, "SELECT target, emulator_profile, label, failures, leaks, meta FROM runs")
    meta = orjson.loads((run.run_path / "meta.json").read_bytes())
    assert (target, profile, label) == ("emulator", "chaos", "chaos check")
    assert failures == meta["status_histogram"]["failed"] and leaks == meta["leak_count"]
    assert stored == meta  # the final meta.json, exit_code, complete and sinks included
    assert stored["exit_code"] == 0 and stored["complete"] is True and stored["sinks"]["postgres"]["complete"]
