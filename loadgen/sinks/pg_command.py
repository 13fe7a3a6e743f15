"""`loadgen db`: apply the schema, or load finished run directories into Postgres.

Usage:
  loadgen db migrate [--database-url URL]
  loadgen db replay <run_dir>... [--database-url URL] [--batch-rows N] [--finish-timeout S]
  loadgen db (-h | --help)

Options:
  --database-url URL    Postgres URL, e.g. postgresql://user:password@host:5432/db.
                        Defaults to the DATABASE_URL environment variable.
  --batch-rows N        Records per transaction [default: 5000].
  --finish-timeout S    Seconds to keep retrying a database that is down [default: 60].
  -h --help             Show this help.

replay loads <run_dir> (run.json, raw.jsonl, meta.json) through the very
sink a live run uses, so loading it twice, or after a partial live copy,
leaves exactly one row per sandbox. The run's final status comes from
meta.json (`status`, default done); a directory without meta.json never
finished and is recorded as interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from docopt import docopt

from loadgen.rundir import META, RAW, RUN, read_json
from loadgen.sinks.base import RunContext
from loadgen.sinks.pg_conn import PostgresSinkError
from loadgen.sinks.pg_redact import redact, redact_url
from loadgen.sinks.pg_schema import FINAL_STATUSES, migrate
from loadgen.sinks.postgres import PostgresSink


def _say(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def main(argv: list[str]) -> int:
    args = docopt(__doc__, argv=argv)
    url = args["--database-url"] or os.environ.get("DATABASE_URL", "")
    if not url:
        _say("loadgen db: no database URL: pass --database-url or set DATABASE_URL", err=True)
        return 2
    if args["migrate"]:
        return _migrate(url)
    try:
        batch_rows = int(args["--batch-rows"])
        finish_timeout = float(args["--finish-timeout"])
    except ValueError:
        _say("loadgen db replay: --batch-rows and --finish-timeout take numbers", err=True)
        return 2
    code = 0
    for run_dir in args["<run_dir>"]:
        code = max(code, replay(run_dir, url, batch_rows=batch_rows, finish_timeout=finish_timeout))
    return code


def _migrate(url: str) -> int:
    try:
        warnings = migrate(url)
    except PostgresSinkError as exc:
        _say(f"loadgen db migrate: {exc}", err=True)
        return 1
    for warning in warnings:
        _say(f"loadgen db migrate: {redact(warning, url)}", err=True)
    _say(f"schema applied to {redact_url(url)}")
    return 0


def load_run_dir(run_dir: Path) -> tuple[dict, dict | None]:
    """(identity, meta or None) of a run directory; run.json, else meta.json, names the run."""
    meta = read_json(run_dir / META) if (run_dir / META).exists() else None
    if (run_dir / RUN).exists():
        identity = read_json(run_dir / RUN)
    elif meta is not None:
        identity = dict(meta)
    else:
        raise FileNotFoundError(f"{run_dir} has neither {RUN} nor {META}: is it a run directory?")
    identity.setdefault("run_id", run_dir.name)
    return identity, meta


class _Progress:
    """A line every few seconds with rows, rate and ETA (long replays take minutes)."""

    def __init__(self, run_id: str, total_bytes: int, every: float = 2.0):
        self.run_id = run_id
        self.total = max(1, total_bytes)
        self.every = every
        self.t0 = time.monotonic()
        self.last = self.t0

    def __call__(self, sink) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.t0
        rate = sink.rows_written / elapsed if elapsed > 0 else 0.0
        frac = min(1.0, sink.offset / self.total)
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        _say(f"replay {self.run_id}: {sink.rows_written:,} rows ({frac:.0%}), {rate:,.0f} rows/s, ETA {eta:.0f}s")


def replay(run_dir, database_url: str, *, batch_rows: int = 5000, finish_timeout: float = 60.0) -> int:
    """Load one finished run directory; returns 0 when the database copy is complete."""
    run_dir = Path(run_dir)
    try:
        identity, meta = load_run_dir(run_dir)
    except (OSError, ValueError) as exc:
        _say(f"loadgen db replay: {exc}", err=True)
        return 2
    run_id = str(identity["run_id"])
    if meta is None:
        status = "interrupted"
        _say(f"replay {run_id}: no {META} (the run never finished); recording it as interrupted", err=True)
    else:
        status = meta.get("status") or "done"
        if status not in FINAL_STATUSES:
            _say(f"loadgen db replay: {META} status {status!r} is not one of {', '.join(FINAL_STATUSES)}", err=True)
            return 2
    raw = run_dir / RAW
    total = raw.stat().st_size if raw.exists() else 0
    progress = _Progress(run_id, total)
    sink = PostgresSink(database_url, batch_rows=batch_rows, finish_timeout=finish_timeout, progress=progress)
    t0 = time.monotonic()
    sink.start(RunContext(run_id=run_id, run_path=run_dir, identity=identity))
    try:
        sink.sync()  # the live path: heartbeat and copy; finish() retries whatever this could not do
    except PostgresSinkError as exc:
        _say(f"replay {run_id}: {exc}; retrying for up to {finish_timeout:g}s", err=True)
    report = sink.finish(meta or {}, status)
    elapsed = time.monotonic() - t0
    rate = sink.rows_written / elapsed if elapsed > 0 else 0.0
    if report.complete:
        _say(f"replay {run_id}: {sink.rows_written:,} rows in {elapsed:.1f}s ({rate:,.0f} rows/s); {report.detail}")
        return 0
    _say(f"replay {run_id}: {report.detail}", err=True)
    return 1
