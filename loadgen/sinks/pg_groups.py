"""run_groups: one row per group of shards, written by the aggregate command.

The aggregate is computed elsewhere (over every shard's records); this module
only stores it, beside the runs rows of its shards, so dashboards can put
per-shard and per-group figures side by side.
"""

from __future__ import annotations

import psycopg2

from loadgen.sinks.pg_conn import PostgresSinkError, close_quietly, connect, describe
from loadgen.sinks.pg_figures import FIGURE_COLUMNS
from loadgen.sinks.pg_schema import apply_schema
from loadgen.sinks.pg_sql import jsonb

GROUP_COLUMNS = FIGURE_COLUMNS + (
    "provider",
    "commit_sha",
    "status",
    "started_at",
    "ended_at",
    "shard_count",
    "error_message",
    "tigris_prefix",
)


def write_group(database_url: str, group_id: str, figures: dict, meta: dict) -> None:
    """Upsert one run_groups row (the aggregate command's output).

    ``figures`` holds any of GROUP_COLUMNS (the runs figure columns plus
    provider, commit_sha, status, started_at, ended_at, shard_count,
    error_message, tigris_prefix); a key not given keeps its stored value.
    Raises ValueError for an unknown key, PostgresSinkError (redacted) for a
    database error.
    """
    unknown = sorted(set(figures) - set(GROUP_COLUMNS))
    if unknown:
        raise ValueError(f"write_group: unknown figure(s) {unknown}; known: {', '.join(GROUP_COLUMNS)}")
    columns = [c for c in GROUP_COLUMNS if c in figures]
    values = {c: figures[c] for c in columns}
    values.update(group_id=group_id, meta=jsonb(meta or {}))
    sql = (
        f"INSERT INTO run_groups AS g (group_id, {''.join(c + ', ' for c in columns)}meta, updated_at) "
        f"VALUES (%(group_id)s, {''.join(f'%({c})s, ' for c in columns)}%(meta)s, now()) "
        f"ON CONFLICT (group_id) DO UPDATE SET {''.join(f'{c} = EXCLUDED.{c}, ' for c in columns)}"
        f"meta = EXCLUDED.meta, updated_at = now()"
    )
    conn = connect(database_url)
    err = None
    try:
        apply_schema(conn, database_url)
        with conn.cursor() as cur:
            cur.execute(sql, values)
        conn.commit()
    except PostgresSinkError as exc:
        err = exc
    except psycopg2.Error as exc:
        err = describe(exc, database_url, f"postgres: writing run_groups row {group_id}")
    finally:
        close_quietly(conn)
    if err is not None:
        raise err
