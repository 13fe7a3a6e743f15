"""Applying db/schema.sql.

The SQL file is the single source of truth (a reader can apply it with psql,
and it serialises itself with an advisory lock); this module only finds it
and runs it as one simple-query round trip, so that its own BEGIN/COMMIT
frame the whole migration.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2

from loadgen.sinks.pg_conn import PostgresSinkError, close_quietly, connect, describe

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "db" / "schema.sql"

# runs.status; the CHECK constraint in db/schema.sql lists the same values.
RUN_STATUSES = ("running", "done", "failed", "interrupted")
FINAL_STATUSES = ("done", "failed", "interrupted")


def schema_sql() -> str:
    try:
        return SCHEMA_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise PostgresSinkError(f"cannot read the schema at {SCHEMA_PATH}: {exc.strerror}") from None


def apply_schema(conn, database_url: str = "") -> list[str]:
    """Apply the schema on ``conn``; returns the server's warnings (e.g. a constraint left NOT VALID).

    Leaves ``conn`` as it found it (autocommit off, no transaction open).
    """
    sql = schema_sql()
    err = None
    if conn.status != psycopg2.extensions.STATUS_READY:
        conn.rollback()
    before = len(conn.notices)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except psycopg2.Error as exc:
        err = describe(exc, database_url, "applying db/schema.sql failed")
        try:
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")  # the file's own transaction, if it is still open
        except psycopg2.Error:
            pass
    finally:
        try:
            conn.autocommit = False
        except psycopg2.Error:
            pass
    if err is not None:
        raise err
    return [n.strip() for n in conn.notices[before:] if "WARNING" in n]


def migrate(database_url: str, *, connect_timeout: float = 10.0) -> list[str]:
    """Connect, apply the schema, disconnect. Raises PostgresSinkError (redacted)."""
    conn = connect(database_url, connect_timeout=connect_timeout)
    try:
        return apply_schema(conn, database_url)
    finally:
        close_quietly(conn)
