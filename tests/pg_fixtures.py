"""Real-Postgres fixtures shared by the sink tests and the end-to-end runs.

- ``fresh_database()``: a context manager yielding the URL of a brand-new
  database (``loadgen_test_<random>``), dropped afterwards even if the test
  fails or left connections open.
- ``synthetic_records(run_id, n)``: realistic SandboxResult dicts (every
  status and failure class, HTTP and gRPC statuses, quotes, newlines,
  backslashes and non-ASCII in messages).
- ``RunDirWriter``: writes a run directory the way the master does, including
  lines that are flushed in two halves, so a sink sees torn lines mid-run.

Point them at another server with LOADGEN_TEST_PG_ADMIN_URL (a URL whose user
may CREATE DATABASE); the default is this machine's trust-auth postgres.
"""

from __future__ import annotations

import math
import os
import random
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg2

from loadgen.result import FAILURE_CLASSES, PHASES, SandboxResult, iso
from loadgen.rundir import META, RAW, RUN, atomic_write_json

ADMIN_URL = os.environ.get("LOADGEN_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


def database_url(name: str, *, password: str | None = None, admin_url: str = ADMIN_URL) -> str:
    """``admin_url`` pointed at database ``name`` (optionally with a password in it)."""
    parts = urlsplit(admin_url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] or "postgres"
        netloc = f"{user}:{password}@{hostport}"
    return urlunsplit((parts.scheme, netloc, "/" + name, parts.query, ""))


def _admin():
    conn = psycopg2.connect(ADMIN_URL, connect_timeout=10)
    conn.autocommit = True
    return conn


def drop_database(name: str) -> None:
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        conn.close()


@contextmanager
def fresh_database(*, password: str | None = None) -> Iterator[str]:
    """Create ``loadgen_test_<random>``, yield its URL, drop it afterwards."""
    name = f"loadgen_test_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    try:
        yield database_url(name, password=password)
    finally:
        drop_database(name)


def query(url: str, sql: str, params=None) -> list[tuple]:
    """Run one statement on its own connection and return its rows (or [])."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- records

_MESSAGES = [
    'Sandbox "sbx-1" failed: it\'s gone',
    "line one\nline two\ttabbed \\ backslash",
    "Zeitüberschreitung — 超时 😀",
    "503: Service Unavailable {\"code\": 503}",
]


def synthetic_records(run_id: str, n: int, *, provider: str = "e2b", seed: int = 7) -> list[dict]:
    """``n`` plausible result records (as raw.jsonl dicts) for one run."""
    rng = random.Random(seed)
    t0 = 1_795_000_000.0
    out = []
    for idx in range(n):
        roll = rng.random()
        status = "success" if roll < 0.8 else "partial" if roll < 0.85 else "readiness_failed" if roll < 0.9 else "failed"
        start = t0 + rng.random() * 2
        create_ms = math.exp(rng.gauss(7.0, 0.6))  # ~1.1 s median
        rec = SandboxResult(run_id=run_id, sandbox_idx=idx, provider=provider, worker_id=f"w{idx % 4}")
        rec.status = status
        rec.started_at = iso(start)
        rec.create_started_at = iso(start)
        rec.create_ended_at = iso(start + create_ms / 1000)
        rec.latency_ms = round(create_ms, 3)
        rec.late_create = status == "failed" and rng.random() < 0.2
        if status != "failed":
            rec.sandbox_id = f"sbx-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
            rec.first_command_ms = round(rng.uniform(20, 400), 3)
            rec.readiness_started_at = iso(start + create_ms / 1000)
            rec.readiness_ended_at = iso(start + create_ms / 1000 + rec.first_command_ms / 1000)
            rec.readiness_output = "v22.11.0\n" if status != "readiness_failed" else None
            rec.hold_ms = round(rng.uniform(1000, 5000), 3)
            rec.provider_metadata = {"sandboxId": rec.sandbox_id, "templateId": "base", "cpu": 2, "ok": True}
        if status != "success":
            fc = rng.choice(FAILURE_CLASSES)
            rec.failure_class = fc
            rec.failed_phase = {"failed": "create", "readiness_failed": "readiness", "partial": "liveness"}[status]
            rec.error_type = {"timeout": "ReadTimeout", "http_error": "APIError", "network_error": "ConnectError"}.get(fc, "RuntimeError")
            rec.error_message = rng.choice(_MESSAGES)
            if fc == "http_error":
                rec.http_status = rng.choice([429, 500, 503, "UNAVAILABLE", "DEADLINE_EXCEEDED"])
                rec.error_code = str(rec.http_status)
            if rng.random() < 0.05:
                rec.failure_class = None  # an unclassified failure: counted as `other`
        rec.destroy_started_at = iso(start + 10)
        rec.destroy_ended_at = iso(start + 10.2)
        rec.destroy_ms = 200.0
        rec.destroy_ok = rng.random() > 0.02
        if not rec.destroy_ok:
            rec.destroy_failure_class = "http_error"
            rec.destroy_error_message = "404: not found"
        rec.completed_at = iso(start + 10.2)
        out.append(orjson.loads(rec.to_json()))
    assert set(r["failed_phase"] for r in out) <= set(PHASES) | {None}
    return out


def identity_for(run_id: str, *, provider: str = "e2b", **more) -> dict:
    ident = {
        "run_id": run_id,
        "provider": provider,
        "commit_sha": "0123456789abcdef",
        "host": "test-host",
        "started_at": iso(1_795_000_000.0),
        "group_id": None,
        "shard_index": None,
        "shard_count": None,
        "options": {"users": 1000, "hold_min_s": 0, "locust": {"spawn_rate": 1000}},
    }
    ident.update(more)
    return ident


class RunDirWriter:
    """Writes ``<root>/<run_id>/`` like the master: run.json first, raw.jsonl appended, meta.json last."""

    def __init__(self, root: Path, run_id: str, identity: dict | None = None):
        self.run_id = run_id
        self.path = Path(root) / run_id
        self.path.mkdir(parents=True, exist_ok=True)
        self.identity = identity or identity_for(run_id)
        atomic_write_json(self.path / RUN, self.identity)
        self.raw = self.path / RAW
        self.raw.touch()

    def append(self, records: list[dict], *, torn_last: bool = False) -> None:
        """Append records; with ``torn_last`` the last line stops half-way (call ``finish_torn``)."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        if torn_last and records:
            cut = len(data) - len(orjson.dumps(records[-1])) // 2
            data, self._torn = data[:cut], data[cut:]
        with open(self.raw, "ab") as fh:
            fh.write(data)
            fh.flush()

    def finish_torn(self) -> None:
        torn, self._torn = getattr(self, "_torn", b""), b""
        with open(self.raw, "ab") as fh:
            fh.write(torn)

    def write_meta(self, meta: dict) -> None:
        atomic_write_json(self.path / META, meta)


def nearest_rank(values: list[float], p: int) -> float | None:
    """The value at rank ceil(p/100 * n) of the sorted values (integer arithmetic)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (p * len(ordered) + 99) // 100
    return ordered[rank - 1]


def figures_of(records: list[dict]) -> dict:
    """The runs-row figures of a run, computed independently of the sink.

    Same definitions as loadgen.report.stats (docs/report.md): failure classes count
    non-success records, a missing class as `other`; latency is nearest rank
    over latency_ms of records whose create succeeded (status != failed).
    """
    by_idx = {r["sandbox_idx"]: r for r in records}
    recs = list(by_idx.values())
    count = lambda key, value: sum(1 for r in recs if r.get(key) == value)  # noqa: E731
    failed = [r for r in recs if r["status"] != "success"]
    klass = lambda value: sum(1 for r in failed if (r.get("failure_class") or "other") == value)  # noqa: E731
    lat = [r["latency_ms"] for r in recs if r["status"] != "failed" and r.get("latency_ms") is not None]
    return {
        "sandboxes_attempted": len(recs),
        "sandboxes_succeeded": count("status", "success"),
        "partials": count("status", "partial"),
        "readiness_failures": count("status", "readiness_failed"),
        "timeouts": klass("timeout"),
        "http_errors": klass("http_error"),
        "network_errors": klass("network_error"),
        "other_errors": klass("other"),
        "p50_latency_ms": nearest_rank(lat, 50),
        "p99_latency_ms": nearest_rank(lat, 99),
        "failures": count("status", "failed"),
        "leaks": sum(1 for r in recs if r.get("sandbox_id") is not None and r.get("destroy_ok") is not True),
    }
