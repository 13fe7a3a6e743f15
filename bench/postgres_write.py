"""How fast does the Postgres sink copy a 100k-sandbox run, and at what cost to the gevent hub?

Run from the repository root:  python bench/postgres_write.py

Usage:
  postgres_write.py [--rows N] [--admin-url URL]

Options:
  --rows N         Records to write [default: 100000].
  --admin-url URL  A Postgres URL allowed to CREATE DATABASE.

Writes N synthetic result records (default 100,000, ~1 KB each, every status
and failure class) to a run directory, then, each in a fresh database:

  sink       PostgresSink start + sync + finish (the shipped defaults: 2 writers)
  sink-1w    the same with one writer (one connection)
  again      the same directory through a new sink once more (a replay: every row conflicts)
  baseline   a plain COPY of the same rows, encoded client-side into COPY text
             format, into an empty table shaped like sandbox_results (same
             keys and indexes), no conflict handling, one transaction

and prints seconds, rows/s, the ratio to the baseline, and the worst gevent
hub stall seen while the sink ran (a greenlet ticking every 5 ms measures it).
The admin URL must be allowed to CREATE DATABASE (default: local trust postgres).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

import gevent
from docopt import docopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

from loadgen.result import RECORD_FIELDS  # noqa: E402
from loadgen.sinks.base import RunContext  # noqa: E402
from loadgen.sinks.pg_schema import migrate  # noqa: E402
from loadgen.sinks.postgres import PostgresSink  # noqa: E402
from tests import pg_fixtures  # noqa: E402


class HubLag:
    """Worst lateness of a 5 ms ticker: how long the hub was blocked at once."""

    def __init__(self):
        self.worst = 0.0
        self._g = gevent.spawn(self._tick)

    def _tick(self):
        while True:
            t = time.perf_counter()
            gevent.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - t - 0.005)

    def stop(self) -> float:
        self._g.kill()
        return self.worst


def run_sink(url: str, run_path: Path, identity: dict, writers: int) -> tuple[float, float, int]:
    sink = PostgresSink(url, writers=writers)
    sink.start(RunContext(identity["run_id"], run_path, identity))  # schema + runs row: not timed below
    lag = HubLag()
    t0 = time.perf_counter()
    sink.sync()
    report = sink.finish({}, "done")
    elapsed = time.perf_counter() - t0
    worst = lag.stop()
    assert report.complete, report.detail
    return elapsed, worst, sink.rows_written


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict):
        import orjson

        value = orjson.dumps(value).decode()
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def run_baseline(url: str, records: list[dict]) -> float:
    """Plain COPY: psycopg2 refuses COPY in green mode, so lift the wait callback for it."""
    migrate(url)
    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(None)
    try:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE baseline (LIKE sandbox_results INCLUDING ALL)")
        conn.commit()
        t0 = time.perf_counter()
        buf = io.StringIO()
        for rec in records:
            buf.write("\t".join(_copy_text(rec.get(f)) for f in RECORD_FIELDS))
            buf.write("\n")
        buf.seek(0)
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY baseline ({', '.join(RECORD_FIELDS)}) FROM STDIN", buf)
        conn.commit()
        elapsed = time.perf_counter() - t0
        conn.close()
        return elapsed
    finally:
        psycopg2.extensions.set_wait_callback(callback)


def main(argv=None) -> int:
    args = docopt(__doc__, argv=argv)
    rows = int(args["--rows"])
    if args["--admin-url"]:
        pg_fixtures.ADMIN_URL = args["--admin-url"]
    print(f"generating {rows:,} records ...", flush=True)
    records = pg_fixtures.synthetic_records("bench-run", rows)
    with tempfile.TemporaryDirectory() as tmp:
        writer = pg_fixtures.RunDirWriter(Path(tmp), "bench-run")
        writer.append(records)
        size = writer.raw.stat().st_size
        print(f"raw.jsonl: {size / 1e6:.1f} MB, {size / rows:.0f} bytes/record; machine: {os.cpu_count()} CPUs", flush=True)
        results = {}
        with pg_fixtures.fresh_database() as url:
            results["sink"] = run_sink(url, writer.path, writer.identity, writers=2)
            results["again"] = run_sink(url, writer.path, writer.identity, writers=2)
        with pg_fixtures.fresh_database() as url:
            results["sink-1w"] = run_sink(url, writer.path, writer.identity, writers=1)
        with pg_fixtures.fresh_database() as url:
            base = run_baseline(url, records)
    print(f"{'case':<10} {'seconds':>8} {'rows/s':>9} {'x baseline':>10} {'worst hub stall':>16}")
    for name, (secs, worst, n) in results.items():
        print(f"{name:<10} {secs:8.2f} {n / secs:9,.0f} {secs / base:10.2f} {worst * 1000:13.1f} ms")
    print(f"{'baseline':<10} {base:8.2f} {rows / base:9,.0f} {1:10.2f} {'(blocking)':>16}")
    target = 3.0
    verdict = "OK" if results["sink"][0] < target else "SLOWER THAN"
    print(f"sink: {rows:,} records in {results['sink'][0]:.2f} s ({verdict} the {target:.0f} s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
