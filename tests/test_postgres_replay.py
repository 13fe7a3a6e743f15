"""`loadgen db migrate` and `loadgen db replay`: the same sink, run over a finished directory."""

from loadgen.sinks.base import RunContext
from loadgen.sinks.pg_command import main
from loadgen.sinks.postgres import PostgresSink
from tests.pg_fixtures import RunDirWriter, figures_of, fresh_database, query, synthetic_records

PASSWORD = "Repl4ySecret-77"


def test_migrate_command(capsys):
    with fresh_database(password=PASSWORD) as url:
        assert main(["db", "migrate", "--database-url", url]) == 0
        out = capsys.readouterr()
        assert "schema applied to postgresql://postgres:***@" in out.out
        assert PASSWORD not in out.out + out.err


def test_migrate_without_url_names_the_fix(capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "migrate"]) == 2
    assert "--database-url or set DATABASE_URL" in capsys.readouterr().err


def test_replay_twice_leaves_exactly_n_rows(tmp_path, capsys, monkeypatch):
    with fresh_database(password=PASSWORD) as url:
        writer = RunDirWriter(tmp_path, "run-replayed")
        records = synthetic_records(writer.run_id, 700)
        # a live copy that died after 300 records (the master crashed): replay completes it
        writer.append(records[:300])
        sink = PostgresSink(url, batch_rows=100)
        sink.start(RunContext(writer.run_id, writer.path, writer.identity))
        sink.sync()
        sink.close()
        assert query(url, "SELECT count(*) FROM sandbox_results") == [(300,)]
        writer.append(records[300:])
        writer.write_meta({"run_id": writer.run_id, "status": "failed", "sandboxes_attempted": 700})

        monkeypatch.setenv("DATABASE_URL", url)  # the default for --database-url
        for _ in range(2):
            assert main(["db", "replay", str(writer.path), "--batch-rows", "150"]) == 0
            assert query(url, "SELECT count(*), count(DISTINCT sandbox_idx) FROM sandbox_results") == [(700, 700)]
        out = capsys.readouterr()
        assert "replay run-replayed: 700 rows" in out.out and "rows/s" in out.out
        assert PASSWORD not in out.out + out.err
        (row,) = query(url, "SELECT status, sandboxes_attempted, sandboxes_succeeded, p99_latency_ms FROM runs")
        expected = figures_of(records)
        assert row == ("failed", 700, expected["sandboxes_succeeded"], expected["p99_latency_ms"])


def test_replay_without_meta_is_interrupted(tmp_path, capsys):
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-crashed")
        writer.append(synthetic_records(writer.run_id, 10))
        assert main(["db", "replay", str(writer.path), "--database-url", url]) == 0
        assert query(url, "SELECT status, sandboxes_attempted FROM runs") == [("interrupted", 10)]
        assert "never finished" in capsys.readouterr().err


def test_replay_into_a_dead_database_fails_loudly(tmp_path, capsys):
    writer = RunDirWriter(tmp_path, "run-nowhere")
    writer.append(synthetic_records(writer.run_id, 5))
    writer.write_meta({"status": "done"})
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x"
    assert main(["db", "replay", str(writer.path), "--database-url", url, "--finish-timeout", "0"]) == 1
    err = capsys.readouterr().err
    assert "database copy incomplete: 5 of 5 records missing" in err
    assert PASSWORD not in err
