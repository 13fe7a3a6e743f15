"""The SQL the Postgres sink sends, and how a batch travels.

Kept apart from the sink's control flow (offsets, retries, writers) because
it changes for a different reason: the schema. Every column list is derived
from loadgen.result.RECORD_FIELDS, so a new record field needs a new column
in db/schema.sql and nothing here.

A batch is a chunk of raw.jsonl sent as one string literal: the server splits
it into lines, parses each (``line::jsonb``, ``jsonb_populate_record``) and
upserts the lot in one statement. psycopg2 in green mode refuses COPY, and a
single literal costs the client almost nothing: see ``Literal``.
"""

from __future__ import annotations

import orjson
import psycopg2.extras

from loadgen.result import RECORD_FIELDS
from loadgen.sinks.pg_figures import FIGURE_COLUMNS

STATEMENT_TIMEOUT_MS = 60_000  # a batch stuck behind a lock fails (and is retried) instead of hanging the sync


def jsonb(obj) -> psycopg2.extras.Json:
    return psycopg2.extras.Json(
        obj, dumps=lambda o: orjson.dumps(o, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    )


class Literal:
    """A chunk of raw.jsonl as an SQL string literal, quoted without a per-line pass.

    psycopg2's own quoting of a multi-megabyte string costs the hub ~15 ms per
    batch; JSON text only needs its quotes doubled (and backslashes, where the
    server does not use standard-conforming strings). The server checks UTF-8.
    """

    def __init__(self, data: bytes, conn):
        self.data = data
        self.standard = conn.get_parameter_status("standard_conforming_strings") == "on"

    def __conform__(self, protocol):  # psycopg2's adaptation protocol
        return self

    def getquoted(self) -> bytes:
        if self.standard:
            return b"'" + self.data.replace(b"'", b"''") + b"'"
        return b"E'" + self.data.replace(b"\\", b"\\\\").replace(b"'", b"''") + b"'"


DATA_COLUMNS = tuple(c for c in RECORD_FIELDS if c not in ("run_id", "sandbox_idx"))


def _select_expr(column: str) -> str:
    if column == "provider":
        return "COALESCE(r.provider, %(provider)s)"
    if column in ("late_create", "wire_timed"):
        return f"COALESCE(r.{column}, false)"
    if column == "provider_metadata":
        return "COALESCE(r.provider_metadata, '{}'::jsonb)"
    return f"r.{column}"


# %(lines)s: a chunk of raw.jsonl, whole lines. Within a batch the
# last line for a sandbox_idx wins, as in loadgen.rundir.read_records; a row
# that is already identical is left alone so that a replay writes nothing.
UPSERT_SQL = f"""
INSERT INTO sandbox_results AS t (run_id, sandbox_idx, {", ".join(DATA_COLUMNS)})
SELECT %(run_id)s, r.sandbox_idx, {", ".join(_select_expr(c) for c in DATA_COLUMNS)}
  FROM (
    SELECT DISTINCT ON (r.sandbox_idx) r.*
      FROM unnest(string_to_array(%(lines)s, E'\\n')) WITH ORDINALITY AS s(line, n)
     CROSS JOIN LATERAL jsonb_populate_record(NULL::sandbox_results, s.line::jsonb) AS r
     WHERE s.line <> ''
     ORDER BY r.sandbox_idx, s.n DESC
  ) AS r
ON CONFLICT (run_id, sandbox_idx) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in DATA_COLUMNS)}
 WHERE ({", ".join(f"t.{c}" for c in DATA_COLUMNS)})
       IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in DATA_COLUMNS)})
"""

BATCH_TIMEOUT_SQL = f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS};\n"

START_SQL = """
INSERT INTO runs AS r (id, provider, commit_sha, host, started_at, last_heartbeat, status,
                       tigris_prefix, group_id, shard_index, shard_count, options, target, emulator_profile, label)
VALUES (%(id)s, %(provider)s, %(commit_sha)s, %(host)s, COALESCE(%(started_at)s::timestamptz, now()), now(),
        'running', %(tigris_prefix)s, %(group_id)s, %(shard_index)s, %(shard_count)s, %(options)s,
        %(target)s, %(emulator_profile)s, %(label)s)
ON CONFLICT (id) DO UPDATE SET
    target = COALESCE(r.target, EXCLUDED.target),
    emulator_profile = COALESCE(r.emulator_profile, EXCLUDED.emulator_profile),
    label = COALESCE(r.label, EXCLUDED.label),
    provider = COALESCE(r.provider, EXCLUDED.provider),
    commit_sha = COALESCE(r.commit_sha, EXCLUDED.commit_sha),
    host = COALESCE(r.host, EXCLUDED.host),
    started_at = COALESCE(r.started_at, EXCLUDED.started_at),
    last_heartbeat = CASE WHEN r.status = 'running' THEN now() ELSE r.last_heartbeat END,
    tigris_prefix = COALESCE(r.tigris_prefix, EXCLUDED.tigris_prefix),
    group_id = COALESCE(r.group_id, EXCLUDED.group_id),
    shard_index = COALESCE(r.shard_index, EXCLUDED.shard_index),
    shard_count = COALESCE(r.shard_count, EXCLUDED.shard_count),
    options = COALESCE(r.options, EXCLUDED.options)
"""

# The final meta.json, once its last keys (exit_code, complete, sinks) exist: they are written after the
# sinks finished, so COMPLETE_SQL's copy lacks them.
FINAL_META_SQL = "UPDATE runs SET meta = %(meta)s WHERE id = %(id)s"

HEARTBEAT_SQL = "UPDATE runs SET last_heartbeat = now() WHERE id = %(id)s AND status = 'running'"
HEARTBEAT_SQL = """
UPDATE runs SET last_heartbeat = now(), heartbeat = COALESCE(%(heartbeat)s, heartbeat)
 WHERE id = %(id)s AND status = 'running'
"""

COMPLETE_SQL = f"""
UPDATE runs SET
    status = %(status)s,
    ended_at = COALESCE(%(ended_at)s::timestamptz, now()),
    last_heartbeat = now(),
    {", ".join(f"{c} = %({c})s" for c in FIGURE_COLUMNS)},
    error_message = %(error_message)s,
    tigris_prefix = COALESCE(%(tigris_prefix)s, tigris_prefix),
    meta = %(meta)s
 WHERE id = %(id)s
"""
