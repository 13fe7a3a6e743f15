"""Where `loadgen watch` reads runs from: run directories, Postgres, object storage.

Each source gives a ``RunView`` (identity, heartbeat, meta.json) per run and
the ids of its most recent runs. All three hold the same documents: the run
directory is written by the master; the object-store sink copies run.json,
heartbeat.json (whenever it changes) and meta.json; the Postgres sink keeps
the heartbeat in ``runs.heartbeat`` and meta.json in ``runs.meta``. A
Postgres row without a heartbeat yet (a sink that has not synced) is counted
from ``sandbox_results`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import orjson

from loadgen import rundir
from loadgen.watch.status import RunView


class RunDirSource:
    """Run directories: a given directory, or ``<run_dir>/<run_id>``."""

    def __init__(self, run_dir: str = "./runs"):
        self.run_dir = Path(run_dir)

    def path_of(self, run: str) -> Path:
        path = Path(run)
        return path if is_run_dir(path) else self.run_dir / run

    def view(self, run: str) -> RunView:
        path = self.path_of(run)
        if not path.is_dir():
            return RunView(run, f"dir {path}", error=f"no run directory {path}")
        docs = {}
        for name in (rundir.RUN, rundir.HEARTBEAT, rundir.META):
            try:
                docs[name] = rundir.read_json(path / name) if (path / name).is_file() else None
            except (OSError, orjson.JSONDecodeError):
                docs[name] = None  # being rewritten this instant: the next refresh reads it
        identity = docs[rundir.RUN]
        run_id = (identity or {}).get("run_id") or path.name
        error = None if any(docs.values()) else f"{path} holds no run.json, heartbeat.json or meta.json"
        return RunView(run_id, f"dir {path}", identity, docs[rundir.HEARTBEAT], docs[rundir.META], error=error)

    def recent(self, n: int) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        runs = [p for p in self.run_dir.iterdir() if is_run_dir(p)]

        def started(p: Path) -> str:
            try:
                return rundir.read_json(p / rundir.RUN).get("started_at") or ""
            except (OSError, orjson.JSONDecodeError, AttributeError):
                return ""

        runs.sort(key=lambda p: (started(p), p.name), reverse=True)
        return [str(p) for p in runs[:n]]


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in (rundir.RUN, rundir.HEARTBEAT, rundir.META))


COUNT_SQL = """
WITH r AS (SELECT status, latency_ms, first_command_ms FROM sandbox_results WHERE run_id = %(id)s)
SELECT (SELECT count(*) FROM r),
       (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM r GROUP BY status) s),
       (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM r
         WHERE status <> 'failed' AND latency_ms IS NOT NULL),
       (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) FROM r
         WHERE status <> 'failed' AND latency_ms IS NOT NULL),
       (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms + first_command_ms) FROM r
         WHERE status IN ('success', 'partial') AND first_command_ms IS NOT NULL),
       (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms + first_command_ms) FROM r
         WHERE status IN ('success', 'partial') AND first_command_ms IS NOT NULL)
"""


class PostgresSource:
    """The runs table (and sandbox_results for a run whose row has no heartbeat yet)."""

    def __init__(self, database_url: str):
        from loadgen.sinks.pg_conn import connect

        self.url = database_url
        self.conn = connect(database_url)
        self.conn.autocommit = True

    def close(self) -> None:
        from loadgen.sinks.pg_conn import close_quietly

        close_quietly(self.conn)

    def view(self, run_id: str) -> RunView:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT provider, status, started_at, options, heartbeat, meta, "
                "EXTRACT(EPOCH FROM now() - COALESCE(last_heartbeat, started_at)) "
                "FROM runs WHERE id = %(id)s", {"id": run_id})
            row = cur.fetchone()
            if row is None:
                return RunView(run_id, "postgres", error="no such run in the runs table")
            provider, status, started_at, options, heartbeat, meta, age = row
            identity = {"run_id": run_id, "provider": provider, "options": options or {},
                        "started_at": started_at.isoformat() if started_at else None}
            if meta is None and status != "running":
                meta = {"status": status, "provider": provider, "complete": False}
            if heartbeat is None:
                heartbeat = self._counted(cur, run_id, options or {})
            age = None if age is None else float(age)
            return RunView(run_id, "postgres", identity, heartbeat, meta, heartbeat_age_s=age)

    def _counted(self, cur, run_id: str, options: dict) -> dict:
        cur.execute(COUNT_SQL, {"id": run_id})
        done, by_status, c50, c99, t50, t99 = cur.fetchone()
        return {"done": done, "expected": options.get("num_users"), "by_status": by_status or {},
                "latency_so_far": {"create_p50_ms": c50, "create_p99_ms": c99, "tti_p50_ms": t50, "tti_p99_ms": t99}}

    def recent(self, n: int) -> list[str]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT id FROM runs ORDER BY started_at DESC NULLS LAST, id DESC LIMIT %(n)s", {"n": n})
            return [r[0] for r in cur.fetchall()]


class ObjectStoreSource:
    """``<prefix>/<run_id>/`` in a bucket, as the object-store sink writes it."""

    def __init__(self, bucket: str, prefix: str = ""):
        from loadgen.sinks.s3_config import Redactor, make_client, settings_from_env

        settings = settings_from_env()
        self.client, secrets = make_client(settings)
        self.redactor = Redactor(settings.secrets() + secrets)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _get(self, key: str) -> Optional[dict]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return orjson.loads(body)

    def view(self, run_id: str) -> RunView:
        from loadgen.sinks.objectstore import describe_error, key_root

        root = key_root(self.prefix, run_id)
        where = f"s3://{self.bucket}/{root}"
        try:
            docs = {name: self._get(f"{root}{name}") for name in (rundir.RUN, rundir.HEARTBEAT, rundir.META)}
        except Exception as exc:  # noqa: BLE001 - said without secrets, and the next refresh tries again
            message, _ = describe_error(exc, self.redactor)
            return RunView(run_id, where, error=message)
        if not any(docs.values()):
            return RunView(run_id, where, error=f"nothing stored under {where}")
        return RunView(run_id, where, docs[rundir.RUN], docs[rundir.HEARTBEAT], docs[rundir.META])

    def recent(self, n: int) -> list[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        runs = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            runs += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        # run ids begin with their UTC start time, so their order is their age
        return sorted(runs, reverse=True)[:n]
