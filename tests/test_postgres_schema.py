"""db/schema.sql: idempotent, safe under concurrent applies, and in step with loadgen.result."""

import re
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from loadgen.result import FAILURE_CLASSES, PHASES, RECORD_FIELDS, STATUSES
from loadgen.sinks.pg_schema import RUN_STATUSES, migrate
from tests.pg_fixtures import fresh_database, query

REPO = Path(__file__).resolve().parents[1]


def _catalog_versions(url):
    """xmin of every catalog row the schema owns: unchanged iff no DDL ran."""
    return query(
        url,
        """
        SELECT 'class:' || relname, xmin::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'con:' || conname, xmin::text FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1
        """,
    )


def test_apply_twice_is_harmless_and_runs_no_ddl_the_second_time():
    with fresh_database() as url:
        assert migrate(url) == []
        before = _catalog_versions(url)
        assert migrate(url) == []
        assert _catalog_versions(url) == before


def test_concurrent_applies_from_several_processes():
    with fresh_database() as url:
        code = "import sys; from loadgen.sinks.pg_schema import migrate; migrate(sys.argv[1])"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        for p in procs:
            p.stderr.close()
        assert results == [(0, "")] * 4
        assert query(url, "SELECT count(*) FROM pg_class WHERE relname IN ('runs', 'sandbox_results', 'run_groups', 'stuck_runs')") == [(4,)]


def _check_values(url, table, name):
    rows = query(
        url,
        "SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
        (table, name),
    )
    assert rows, f"{table}.{name} missing"
    definition, validated = rows[0]
    assert validated, f"{name} is NOT VALID"
    return tuple(re.findall(r"'([^']*)'::text", definition))


def test_check_constraints_equal_the_code_enums():
    with fresh_database() as url:
        migrate(url)
        assert _check_values(url, "sandbox_results", "sandbox_results_status_check") == STATUSES
        assert _check_values(url, "sandbox_results", "sandbox_results_failure_class_check") == FAILURE_CLASSES
        assert _check_values(url, "sandbox_results", "sandbox_results_destroy_failure_class_check") == FAILURE_CLASSES
        assert _check_values(url, "sandbox_results", "sandbox_results_failed_phase_check") == PHASES
        assert _check_values(url, "runs", "runs_status_check") == RUN_STATUSES
        with pytest.raises(psycopg2.errors.CheckViolation):
            query(url, "INSERT INTO sandbox_results (run_id, sandbox_idx, provider, status) VALUES ('r', 1, 'p', 'ok')")


def test_sandbox_results_has_every_record_field_in_order():
    with fresh_database() as url:
        migrate(url)
        cols = query(
            url,
            "SELECT attname FROM pg_attribute WHERE attrelid = 'sandbox_results'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
        )
        assert tuple(c for (c,) in cols) == RECORD_FIELDS


def test_a_legacy_table_is_upgraded_in_place():
    """A seed-era database: fewer columns, an integer http_status, an old CHECK of the same name."""
    with fresh_database() as url:
        query(
            url,
            """
            CREATE TABLE runs (id text PRIMARY KEY, provider text, status text, r2_prefix text);
            CREATE TABLE sandbox_results (run_id text, sandbox_idx int, provider text, status text,
                                          http_status int, latency_ms double precision,
                                          PRIMARY KEY (run_id, sandbox_idx),
                                          CONSTRAINT sandbox_results_status_check
                                              CHECK (status IN ('ok', 'timeout', 'success', 'failed')) NOT VALID);
            INSERT INTO sandbox_results VALUES ('old', 1, 'e2b', 'success', 503, 12.5);
            """,
        )
        migrate(url)
        assert _check_values(url, "sandbox_results", "sandbox_results_status_check") == STATUSES
        assert query(url, "SELECT http_status, provider_metadata, late_create FROM sandbox_results") == [("503", {}, False)]
        query(url, "INSERT INTO sandbox_results (run_id, sandbox_idx, provider, status, http_status) VALUES ('new', 1, 'e2b', 'failed', 'UNAVAILABLE')")


def test_stuck_runs_view():
    with fresh_database() as url:
        migrate(url)
        query(
            url,
            """
            INSERT INTO runs (id, status, started_at, last_heartbeat) VALUES
              ('never-beat', 'running', now() - interval '10 minutes', NULL),
              ('went-quiet', 'running', now() - interval '1 hour', now() - interval '6 minutes'),
              ('alive',      'running', now() - interval '1 hour', now() - interval '5 seconds'),
              ('just-began', 'running', now() - interval '1 minute', NULL),
              ('finished',   'done',    now() - interval '1 hour', now() - interval '30 minutes')
            """,
        )
        stuck = query(url, "SELECT id FROM stuck_runs ORDER BY id")
        assert stuck == [("never-beat",), ("went-quiet",)]
