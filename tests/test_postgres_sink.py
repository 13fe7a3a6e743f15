"""PostgresSink against a real server: progressive copy, killed connections, outages, refused records."""

from __future__ import annotations

import logging
import traceback
from datetime import timezone

import gevent
import gevent.event
import orjson
import pytest

from loadgen.result import RECORD_FIELDS, SandboxResult
from loadgen.sinks.base import RunContext
from loadgen.sinks.postgres import PostgresSink, PostgresSinkError, write_group
from tests.pg_fixtures import (
    RunDirWriter,
    figures_of,
    free_port,
    fresh_database,
    query,
    synthetic_records,
)

PASSWORD = "Sup3rSecretPw-9f2c"  # the local server trusts everyone, so any password connects

FIGURES = (
    "sandboxes_attempted, sandboxes_succeeded, partials, readiness_failures, timeouts, "
    "http_errors, network_errors, other_errors, p50_latency_ms, p99_latency_ms, failures, leaks"
)


def _ctx(writer: RunDirWriter) -> RunContext:
    return RunContext(run_id=writer.run_id, run_path=writer.path, identity=writer.identity)


def _runs_figures(url, run_id) -> dict:
    (row,) = query(url, f"SELECT {FIGURES} FROM runs WHERE id = %s", (run_id,))
    return dict(zip([c.strip() for c in FIGURES.split(",")], row))


def _table_records(url, run_id) -> dict[int, dict]:
    cols = ", ".join(RECORD_FIELDS)
    rows = query(url, f"SELECT {cols} FROM sandbox_results WHERE run_id = %s", (run_id,))
    out = {}
    for row in rows:
        rec = dict(zip(RECORD_FIELDS, row))
        for key, value in rec.items():
            if hasattr(value, "astimezone"):
                rec[key] = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out[rec["sandbox_idx"]] = rec
    return out


def _normalise(record: dict) -> dict:
    rec = dict(record)
    if rec["http_status"] is not None:
        rec["http_status"] = str(rec["http_status"])
    return rec


def _kill_sink_connections(url) -> int:
    rows = query(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'loadgen' AND pid <> pg_backend_pid()",
    )
    return len(rows)


def _sync_until_ok(sink, attempts=6) -> int:
    """Sync like the master does (retry after an error); returns how many attempts failed."""
    failures = 0
    for _ in range(attempts):
        try:
            sink.sync()
            return failures
        except PostgresSinkError:
            failures += 1
    raise AssertionError(f"sync still failing after {attempts} attempts: {sink.last_error}")


def test_progressive_run_of_1000_records(tmp_path):
    """raw.jsonl grows (with torn lines) while sync() loops; the table ends equal to the file."""
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-progressive")
        records = synthetic_records(writer.run_id, 1000)
        sink = PostgresSink(url, batch_rows=97)
        sink.start(_ctx(writer))
        written = gevent.event.Event()
        synced = gevent.event.Event()
        seen = []

        def produce():
            for i in range(0, len(records), 37):
                writer.append(records[i : i + 37], torn_last=True)
                synced.clear()
                synced.wait(timeout=10)  # let the sink meet the torn line at least once
                writer.finish_torn()
                gevent.sleep(0.001)
            written.set()

        def follow():
            while not written.is_set():
                sink.sync()
                seen.append(sink.rows_written)
                synced.set()
                gevent.sleep(0.003)

        gevent.joinall([gevent.spawn(produce), gevent.spawn(follow)], raise_error=True)
        assert 0 < max(seen) and min(seen) < 1000, "the sink followed the file while it grew"
        report = sink.finish({}, "done")  # no figures in meta: computed from the table

        assert report.complete, report.detail
        assert sink.rows_written == 1000 and sink.backlog_bytes == 0
        in_table = _table_records(url, writer.run_id)
        assert len(in_table) == 1000
        assert in_table == {r["sandbox_idx"]: _normalise(r) for r in records}
        assert _runs_figures(url, writer.run_id) == figures_of(records)
        (row,) = query(url, "SELECT status, ended_at IS NOT NULL, provider, host, options FROM runs WHERE id = %s", (writer.run_id,))
        assert row == ("done", True, "e2b", "test-host", writer.identity["options"])


def test_figures_come_from_meta_when_it_has_them(tmp_path):
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-meta")
        records = synthetic_records(writer.run_id, 50)
        writer.append(records)
        sink = PostgresSink(url)
        sink.start(_ctx(writer))
        meta = {
            "sandboxes_attempted": 60,  # e.g. ten sandboxes the master knows were attempted
            "status_histogram": {"success": 41, "partial": 2, "readiness_failed": 3, "failed": 14},
            "failure_class_histogram": {"timeout": 5, "http_error": 4, "network_error": 3},  # no "other"
            "latency_distribution": {"p50": 1000.5, "p99": None},
            "tigris_prefix": "s3://bucket/runs/run-meta/",
        }
        report = sink.finish(meta, "failed")
        assert report.complete, report.detail
        expected = figures_of(records)
        expected.update(
            sandboxes_attempted=60, sandboxes_succeeded=41, partials=2, readiness_failures=3,
            timeouts=5, http_errors=4, network_errors=3, p50_latency_ms=1000.5, failures=14,
        )
        assert _runs_figures(url, writer.run_id) == expected
        assert query(url, "SELECT status, meta, tigris_prefix FROM runs") == [("failed", meta, meta["tigris_prefix"])]


def test_connection_killed_between_and_during_syncs(tmp_path):
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-killed")
        records = synthetic_records(writer.run_id, 1000)
        kill_at = {"batch": -1}  # armed later

        def progress(sink):  # called after each committed batch: kill in the middle of a sync
            kill_at["batch"] -= 1
            if kill_at["batch"] == 0:
                assert _kill_sink_connections(url) >= 1

        sink = PostgresSink(url, batch_rows=40, progress=progress)
        sink.start(_ctx(writer))

        # 1. between syncs
        writer.append(records[:250])
        sink.sync()
        offset_before = sink.offset
        assert _kill_sink_connections(url) >= 1
        writer.append(records[250:400])
        assert _sync_until_ok(sink) >= 1
        assert sink.offset > offset_before

        # 2. during a sync, between two batches (the progress hook kills)
        kill_at["batch"] = 2
        writer.append(records[400:700])
        assert _sync_until_ok(sink) >= 1

        # 3. during a statement: a slow trigger holds the INSERT open while we kill it
        query(
            url,
            """
            CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
            CREATE TRIGGER slow_down AFTER INSERT ON sandbox_results
              FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
            """,
        )
        killed = []

        def killer():
            for _ in range(500):
                rows = query(
                    url,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'loadgen' AND state = 'active' AND query LIKE '%%INSERT INTO sandbox_results%%'",
                )
                if rows:
                    killed.append(len(rows))
                    return
                gevent.sleep(0.01)

        writer.append(records[700:])
        hunter = gevent.spawn(killer)
        with pytest.raises(PostgresSinkError):
            sink.sync()
        hunter.join(timeout=10)
        assert killed, "the killer never saw an INSERT in flight"
        query(url, "DROP TRIGGER slow_down ON sandbox_results")

        report = sink.finish({}, "done")
        assert report.complete, report.detail
        assert query(url, "SELECT count(*), count(DISTINCT sandbox_idx) FROM sandbox_results") == [(1000, 1000)]
        assert _table_records(url, writer.run_id) == {r["sandbox_idx"]: _normalise(r) for r in records}
        assert _runs_figures(url, writer.run_id) == figures_of(records)


def test_unreachable_database(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    writer = RunDirWriter(tmp_path, "run-down")
    writer.append(synthetic_records(writer.run_id, 20))
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    sink = PostgresSink(url, finish_timeout=0.5, connect_timeout=2)
    sink.start(_ctx(writer))  # logs, does not raise: the run goes on
    with pytest.raises(PostgresSinkError) as caught:
        sink.sync()
    text = "".join(traceback.format_exception(caught.value))
    assert "cannot connect" in text and PASSWORD not in text
    assert sink.offset == 0 and sink.backlog_bytes > 0

    report = sink.finish({}, "done")
    assert not report.complete
    assert "database copy incomplete: 20 of 20 records missing" in report.detail
    assert report.extra["missing"] == 20
    for text in (report.detail, repr(report), caplog.text, repr(sink), str(sink.last_error)):
        assert PASSWORD not in text


def test_bad_dsn_error_does_not_echo_the_password(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    writer = RunDirWriter(tmp_path, "run-bad-dsn")
    url = f"postgresql://postgres:{PASSWORD}%zz@127.0.0.1:5432/x"  # libpq quotes the bad token back
    sink = PostgresSink(url, finish_timeout=0)
    sink.start(_ctx(writer))
    with pytest.raises(PostgresSinkError) as caught:
        sink.sync()
    assert "percent-encoded" in str(caught.value)
    report = sink.finish({}, "done")
    for text in (str(caught.value), report.detail, caplog.text):
        assert PASSWORD not in text


def test_credentials_never_logged_through_a_run_with_failures(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with fresh_database(password=PASSWORD) as url:
        assert PASSWORD in url
        writer = RunDirWriter(tmp_path, "run-secret")
        records = synthetic_records(writer.run_id, 200)
        records[5]["status"] = "exploded"  # refused by the CHECK: logged with its error
        writer.append(records)
        sink = PostgresSink(url, batch_rows=50)
        sink.start(RunContext(writer.run_id, writer.path, writer.identity, log=logging.getLogger("master")))
        sink.sync()
        _kill_sink_connections(url)
        writer.append(synthetic_records(writer.run_id, 210)[200:])
        errors = []
        for _ in range(4):
            try:
                sink.sync()
                break
            except PostgresSinkError as exc:
                errors.append("".join(traceback.format_exception(exc)))
        report = sink.finish({}, "done")
        assert errors
        for text in errors + [report.detail, caplog.text, repr(sink)]:
            assert PASSWORD not in text


def test_refused_record_does_not_hold_up_the_others(tmp_path, caplog):
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-refused")
        records = synthetic_records(writer.run_id, 120)
        records[17]["status"] = "exploded"
        records[60]["readiness_output"] = "v22\x00garbage"  # NUL: jsonb refuses it as is
        writer.append(records)
        with open(writer.raw, "ab") as fh:
            fh.write(b"{not json}\n")
        sink = PostgresSink(url, batch_rows=50)
        sink.start(_ctx(writer))
        sink.sync()
        report = sink.finish({}, "done")
        assert not report.complete
        assert "2 of 121 records missing" in report.detail and "2 refused" in report.detail
        assert {r["sandbox_idx"] for r in report.extra["rejected"]} == {17, None}
        assert query(url, "SELECT count(*) FROM sandbox_results") == [(119,)]
        assert query(url, "SELECT readiness_output FROM sandbox_results WHERE sandbox_idx = 60") == [("v22\ufffdgarbage",)]
        assert "sandbox_idx=17" in caplog.text
        (row,) = query(url, "SELECT status, error_message FROM runs")
        assert row[0] == "done" and "2 records refused" in row[1]


def test_duplicate_lines_last_one_wins(tmp_path):
    """Like loadgen.rundir.read_records: a sandbox_idx written twice keeps its last record."""
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-dupes")
        records = synthetic_records(writer.run_id, 30)
        again = dict(records[3], status="failed", latency_ms=1.5)
        writer.append(records + [again] + records[10:12])
        sink = PostgresSink(url, batch_rows=7)
        sink.start(_ctx(writer))
        sink.sync()
        assert sink.finish({}, "done").complete
        assert query(url, "SELECT count(*) FROM sandbox_results") == [(30,)]
        assert query(url, "SELECT status, latency_ms FROM sandbox_results WHERE sandbox_idx = 3") == [("failed", 1.5)]


def test_write_group_upserts(tmp_path):
    with fresh_database() as url:
        write_group(url, "grp-1", {"provider": "e2b", "shard_count": 4, "sandboxes_attempted": 400}, {"a": 1})
        write_group(url, "grp-1", {"sandboxes_attempted": 401, "p50_latency_ms": 12.5}, {"a": 2})
        assert query(url, "SELECT provider, shard_count, sandboxes_attempted, p50_latency_ms, meta FROM run_groups") == [
            ("e2b", 4, 401, 12.5, {"a": 2})
        ]
        with pytest.raises(ValueError, match="unknown figure"):
            write_group(url, "grp-1", {"sandboxes": 1}, {})


def test_sandbox_result_record_round_trips(tmp_path):
    """A record straight from the dataclass (all defaults) is accepted."""
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-defaults")
        writer.append([orjson.loads(SandboxResult(run_id=writer.run_id, sandbox_idx=0, provider="modal").to_json())])
        sink = PostgresSink(url)
        sink.start(_ctx(writer))
        assert sink.finish({}, "interrupted").complete
        assert query(url, "SELECT status, late_create, provider_metadata FROM sandbox_results") == [("failed", False, {})]
        assert query(url, "SELECT status FROM runs") == [("interrupted",)]


def test_a_failed_batch_is_resent_alone_while_later_ones_stay_committed(tmp_path):
    """Two writers: batch 1 fails after batch 2 committed; the offset waits, the retry sends only batch 1."""
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-gap")
        writer.append(synthetic_records(writer.run_id, 100))
        sink = PostgresSink(url, batch_rows=10, writers=2)
        sink.start(_ctx(writer))
        sent = []
        real_send = sink._send_batch

        def flaky_send(chunk, start, slot):
            sent.append(start)
            if start == 0 and sent.count(0) == 1:
                gevent.sleep(0.05)  # let the other writer commit its batches first
                raise PostgresSinkError("injected failure")
            return real_send(chunk, start, slot)

        sink._send_batch = flaky_send
        with pytest.raises(PostgresSinkError, match="injected"):
            sink.sync()
        assert sink.offset == 0 and sink._committed, "later batches committed, the offset waits for batch 1"
        committed_before = set(sink._committed)
        first_round = len(sent)
        sink.sync()
        assert sent[first_round] == 0
        assert not set(sent[first_round:]) & committed_before, "a committed batch was sent again"
        assert sink.rows_written == 100 and sink.backlog_bytes == 0 and not sink._committed
        assert sink.finish({}, "done").complete
        assert query(url, "SELECT count(*) FROM sandbox_results") == [(100,)]


def test_finish_does_not_hang_on_a_blocked_database(tmp_path):
    """A table locked by someone else: finish gives up after finish_timeout without progress."""
    import time

    import psycopg2

    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-blocked")
        writer.append(synthetic_records(writer.run_id, 30))
        sink = PostgresSink(url, finish_timeout=1.0)
        sink.start(_ctx(writer))
        blocker = psycopg2.connect(url)
        try:
            with blocker.cursor() as cur:
                cur.execute("LOCK TABLE sandbox_results IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            report = sink.finish({}, "done")
            elapsed = time.monotonic() - t0
        finally:
            blocker.rollback()
            blocker.close()
        assert not report.complete
        assert "no progress for 1s" in report.detail and "30 of 30 records missing" in report.detail
        assert elapsed < 10
        # raw.jsonl is intact: a replay later completes the copy
        sink = PostgresSink(url)
        sink.start(_ctx(writer))
        assert sink.finish({}, "done").complete


def test_a_record_longer_than_a_batch_is_still_sent(tmp_path):
    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-long")
        records = synthetic_records(writer.run_id, 5)
        records[2]["provider_metadata"] = {"blob": "x" * 5000}
        writer.append(records)
        sink = PostgresSink(url, batch_bytes=1024)
        sink.start(_ctx(writer))
        assert sink.finish({}, "done").complete
        assert query(url, "SELECT count(*) FROM sandbox_results") == [(5,)]


def test_table_figures_agree_with_the_master_statistics(tmp_path):
    """The fallback (figures counted in the table) equals what meta.json would have said."""
    stats = pytest.importorskip("loadgen.report.stats")
    from loadgen.sinks.pg_figures import figures_from_meta

    with fresh_database() as url:
        writer = RunDirWriter(tmp_path, "run-agree")
        records = synthetic_records(writer.run_id, 400, seed=11)
        writer.append(records)
        sink = PostgresSink(url)
        sink.start(_ctx(writer))
        assert sink.finish({}, "done").complete
        # the figures the table can count (time to N live and cost come from meta.json only)
        from_meta = {k: v for k, v in figures_from_meta(stats.compute(records)).items() if k in figures_of(records)}
        assert _runs_figures(url, writer.run_id) == from_meta == figures_of(records)
