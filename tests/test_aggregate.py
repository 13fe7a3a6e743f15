"""`loadgen aggregate`: two shards of one group, figures recomputed over both, and the run_groups row."""

import orjson

from loadgen.report.aggregate import main
from tests.locust_harness import run_locust
from tests.pg_fixtures import fresh_database, query


def test_two_shards_aggregate_into_one_group(tmp_path, emulator):
    paths = []
    for shard, users in ((0, 40), (1, 60)):
        run_dir = tmp_path / f"shard{shard}"
        run = run_locust("local.py", users, run_dir, [
            "--emulator-url", emulator.url, "--group-id", "g-test", "--shard-index", str(shard),
            "--shard-count", "2"])
        assert run.returncode == 0, run.output[-3000:]
        paths.append(run.run_path)
    with fresh_database() as url:
        assert main(["aggregate", *map(str, paths), "--out", str(tmp_path), "--database-url", url]) == 0
        row = query(url, "SELECT group_id, sandboxes_attempted, sandboxes_succeeded, shard_count, status "
                         "FROM run_groups")
    assert row == [("g-test", 100, 100, 2, "done")]
    meta = orjson.loads((tmp_path / "group-g-test-meta.json").read_bytes())
    latencies = sorted(r["latency_ms"] for p in paths for r in map(orjson.loads, (p / "raw.jsonl").read_bytes().splitlines()))
    assert meta["latency_distribution"]["p50"] == latencies[49]  # nearest rank over all 100
    assert [s["shard_index"] for s in meta["shards"]] == [0, 1]


def test_aggregate_refuses_a_directory_without_results(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path)]) == 1
    assert "no raw.jsonl" in capsys.readouterr().err
