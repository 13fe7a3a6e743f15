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


def _shard(tmp_path, name, **tags):
    """A finished run directory of two records, tagged as given (no tags: not a shard)."""
    path = tmp_path / name
    path.mkdir()
    (path / "run.json").write_bytes(orjson.dumps({"run_id": name, "provider": "e2b", **tags}))
    records = [{"run_id": name, "sandbox_idx": i, "provider": "e2b", "status": "success", "latency_ms": 5.0 + i}
               for i in range(2)]
    (path / "raw.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return str(path)


def test_aggregate_refuses_a_shard_of_another_group_and_the_same_shard_twice(tmp_path, capsys):
    a = _shard(tmp_path, "a", group_id="g1", shard_index=0, shard_count=2)
    b = _shard(tmp_path, "b", group_id="g2", shard_index=1, shard_count=2)
    assert main(["aggregate", a, b, "--group-id", "g1"]) == 1
    assert "is a shard of group 'g2', not 'g1'" in capsys.readouterr().err
    c = _shard(tmp_path, "c", group_id="g1", shard_index=0, shard_count=2)
    assert main(["aggregate", a, c]) == 1
    assert "are both shard 0 of group 'g1'" in capsys.readouterr().err


def test_aggregate_says_so_when_it_counts_a_run_that_is_not_a_shard(tmp_path, capsys):
    a = _shard(tmp_path, "a", group_id="g1", shard_index=0, shard_count=2)
    plain = _shard(tmp_path, "plain")
    assert main(["aggregate", a, plain, "--group-id", "g1", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "carries no shard tags" in err and str(tmp_path / "plain") in err
    assert (tmp_path / "out" / "group-g1-meta.json").exists()
