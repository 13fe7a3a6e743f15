"""The Postgres sink: a copy of the run directory in the `runs` and `sandbox_results` tables.

Like every sink it follows raw.jsonl instead of being fed from the hot path:
``sync()`` sends the whole lines written since the last committed byte
offset, and the offset moves only after the transaction commits. So a
database that is down, restarts, or kills our connection costs a retry, not
a record: the backlog is sent when it is back, and a batch whose commit
acknowledgement was lost is sent again harmlessly, because rows are upserted
on (run_id, sandbox_idx). ``loadgen db replay`` runs this same code over a
finished directory.

Why a batch is one text parameter and not COPY: psycogreen's wait callback
(needed so psycopg2 never blocks the gevent hub) puts psycopg2 in green mode,
where it refuses COPY. A batch is a chunk of raw.jsonl (whole lines, <= 5,000
records, ~4 MB) sent as a single string literal that the server splits and
parses (``line::jsonb`` then ``jsonb_populate_record``) inside one
INSERT ... SELECT ... ON CONFLICT: one round trip per batch, like COPY into a
staging table followed by INSERT ... SELECT, without the staging table (which
a transaction-mode pooler would not keep between statements anyway). The
client does no per-record work at all, so building a batch costs the hub a
few milliseconds; the JSON parsing, the dominant cost, runs on the server, on
``writers`` connections at once (two by default) so it uses more than one core.

A record the database refuses (a value outside an enum's CHECK, a torn
line) must not hold up the others: the batch is retried one record at a
time, the refused ones are logged and counted, and ``finish()`` reports the
copy incomplete.

Length: one sink whose durability argument (byte offset moved only after a
commit, batches split on refusal, the runs row's life) runs through the whole
class; its SQL, schema, connection and command live in the pg_* modules.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import gevent
import gevent.lock
import orjson
import psycopg2

from loadgen.result import iso
from loadgen import rundir
from loadgen.rundir import RAW
from loadgen.sinks.base import RunContext, Sink, SinkReport
from loadgen.sinks.pg_conn import PostgresSinkError, close_quietly, connect, describe, make_green
from loadgen.sinks.pg_figures import figures_from_meta, figures_from_table, merge_figures
from loadgen.sinks.pg_groups import GROUP_COLUMNS, write_group
from loadgen.sinks.pg_redact import redact, redact_url
from loadgen.sinks.pg_schema import FINAL_STATUSES, RUN_STATUSES, apply_schema, migrate
from loadgen.sinks.pg_sql import (
    BATCH_TIMEOUT_SQL,
    COMPLETE_SQL,
    FINAL_META_SQL,
    HEARTBEAT_SQL,
    START_SQL,
    UPSERT_SQL,
    Literal,
    jsonb,
)

__all__ = [
    "PostgresSink",
    "PostgresSinkError",
    "write_group",
    "GROUP_COLUMNS",
    "redact_url",
    "redact",
    "migrate",
    "apply_schema",
    "RUN_STATUSES",
]

log = logging.getLogger("loadgen.sinks.postgres")

BATCH_ROWS = 5000  # rows per transaction: bounds server work and the client's string building
BATCH_BYTES = 4 * 1024 * 1024  # ~20 ms of hub time to build one batch's query string
WRITERS = 2  # batches in flight on separate connections: the server parses JSON on more than one core
REJECT_SAMPLES = 20  # refused records remembered for the report (all are logged)


def _timestamp(value):
    """ISO text as is; epoch seconds (a float in some JSON) converted; anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return iso(value)
    return value if isinstance(value, str) and value else None


class PostgresSink(Sink):
    """Follows ``<run>/raw.jsonl`` into Postgres.

    Attributes the master reads while logging: ``backlog_bytes`` (bytes of
    raw.jsonl not yet committed), ``rows_written`` (records committed),
    ``rows_rejected`` (records the database refused), ``last_error``.
    """

    name = "postgres"

    def __init__(
        self,
        database_url: Optional[str] = None,
        *,
        batch_rows: int = BATCH_ROWS,
        batch_bytes: int = BATCH_BYTES,
        writers: int = WRITERS,
        connect_timeout: float = 10.0,
        finish_timeout: float = 120.0,
        apply_schema: bool = True,
        progress: Optional[Callable[["PostgresSink"], None]] = None,
    ):
        self.database_url = database_url or os.environ.get("DATABASE_URL", "")
        self.batch_rows = max(1, int(batch_rows))
        self.batch_bytes = max(1024, int(batch_bytes))
        self.writers = max(1, int(writers))
        self.connect_timeout = connect_timeout
        self.finish_timeout = finish_timeout
        self.apply_schema = apply_schema
        self.progress = progress
        self.offset = 0  # raw.jsonl bytes before which every line is committed (or rejected)
        self.rows_written = 0
        self.rows_rejected = 0
        self.rejected: list[dict] = []  # the first REJECT_SAMPLES: sandbox_idx, offset, error
        self.last_error: Optional[str] = None
        self.ctx: Optional[RunContext] = None
        self._log = log
        self._conns: list = [None] * self.writers  # one per writer; [0] also does start/heartbeat/finish
        self._committed: dict[int, int] = {}  # start -> end of committed byte ranges beyond self.offset
        self._next = 0  # where the next batch is read from, during a drain
        self._last_progress = time.monotonic()  # of the last commit; finish() gives up when it is too old
        self._started = False
        self._lock = gevent.lock.RLock()
        make_green()

    def __repr__(self) -> str:
        return f"PostgresSink({redact_url(self.database_url)!r}, offset={self.offset}, rows_written={self.rows_written})"

    # ------------------------------------------------------------------ contract

    def start(self, ctx: RunContext) -> None:
        """Apply the schema and insert the runs row. A database that is down is
        logged and does not stop the run: the next sync() tries again (and
        raises), and nothing is lost meanwhile because raw.jsonl is on disk."""
        self.ctx = ctx
        if ctx.log is not None:
            self._log = ctx.log
        with self._lock:
            try:
                self._ensure_started()
            except PostgresSinkError as exc:
                self.last_error = str(exc)
                self._log.error(
                    "postgres: could not record the run at start (%s); will retry on every sync, "
                    "raw.jsonl keeps every result meanwhile",
                    exc,
                )

    def check(self) -> Optional[str]:
        """Before the run: a problem with the database that no retry cures (malformed URL, unknown or
        refused host, missing database, failed login), as one line naming the fix, else None.
        A database that is merely slow to answer is left to the retries of the run itself."""
        try:
            close_quietly(connect(self.database_url, connect_timeout=min(self.connect_timeout, 5.0)))
        except PostgresSinkError as exc:
            if exc.fix:
                return f"{exc.fix} ({exc})"
            self._log.warning("postgres: %s; the run starts anyway and the sink retries", exc)
        return None

    def sync(self) -> None:
        """Heartbeat, then send every whole line that is new. Raises PostgresSinkError
        (redacted) on failure, leaving the offset at the last commit."""
        if self.ctx is None:
            raise PostgresSinkError("PostgresSink.sync() called before start()")
        with self._lock:
            try:
                self._ensure_started()
                self._heartbeat()
                self._drain()
                self.last_error = None
            except PostgresSinkError as exc:
                self.last_error = str(exc)
                raise

    def finish(self, meta: dict, status: str) -> SinkReport:
        """Send the rest (retrying until ``finish_timeout``), then complete the runs row. Never raises."""
        try:
            return self._finish(meta or {}, status)
        except Exception as exc:  # the contract: report, never raise
            detail = redact(f"postgres sink failed unexpectedly: {type(exc).__name__}: {exc}", self.database_url)
            self._log.error("%s", detail)
            return SinkReport(self.name, False, detail=detail, extra=self._extra())
        finally:
            self.close()

    def store_final_meta(self, meta: dict, attempts: int = 3) -> bool:
        """Make runs.meta the final meta.json, whose last keys (exit_code, complete, sinks) only exist
        after finish(). Retried briefly; on failure says so (``loadgen db replay`` rewrites it)."""
        if self.ctx is None or not self._started:
            return False
        for attempt in range(attempts):
            try:
                conn = self._connection()
                with conn.cursor() as cur:
                    cur.execute(FINAL_META_SQL, {"id": self.ctx.run_id, "meta": jsonb(meta)})
                conn.commit()
                return True
            except (psycopg2.Error, PostgresSinkError) as exc:
                self._close_slot(0)
                if attempt == attempts - 1:
                    self._log.error("postgres: could not store the final meta.json in runs.meta (%s); "
                                    "`loadgen db replay %s` writes it", redact(str(exc), self.database_url),
                                    self.ctx.run_path)
                else:
                    gevent.sleep(1.0 + attempt)
            finally:
                if attempt == attempts - 1:
                    self.close()
        return False

    # ------------------------------------------------------------------ public helpers

    @property
    def raw_path(self) -> Optional[Path]:
        return Path(self.ctx.run_path) / RAW if self.ctx is not None else None

    @property
    def backlog_bytes(self) -> int:
        """Bytes of raw.jsonl that are not in Postgres yet (0 before start)."""
        path = self.raw_path
        if path is None:
            return 0
        try:
            done = sum(end - start for start, end in self._committed.items())
            return max(0, path.stat().st_size - self.offset - done)
        except OSError:
            return 0

    def close(self) -> None:
        for slot in range(len(self._conns)):
            self._close_slot(slot)

    @property
    def _conn(self):
        return self._conns[0]

    # ------------------------------------------------------------------ internals

    def _connection(self, slot: int = 0):
        conn = self._conns[slot]
        if conn is None or conn.closed:
            self._conns[slot] = None
            self._conns[slot] = conn = connect(self.database_url, connect_timeout=self.connect_timeout)
        return conn

    def _close_slot(self, slot: int) -> None:
        conn, self._conns[slot] = self._conns[slot], None
        close_quietly(conn)

    def _fail(self, exc: BaseException, doing: str, slot: int = 0) -> PostgresSinkError:
        """Drop the connection (it may be broken; the next call reconnects) and describe the error."""
        self._close_slot(slot)
        return describe(exc, self.database_url, f"postgres: {doing}")

    def _ensure_started(self) -> None:
        if self._started:
            return
        conn = self._connection()
        err = None
        try:
            if self.apply_schema:
                for warning in apply_schema(conn, self.database_url):
                    self._log.warning("postgres: %s", redact(warning, self.database_url))
            identity = self.ctx.identity or {}
            options = identity.get("options")
            with conn.cursor() as cur:
                cur.execute(
                    START_SQL,
                    {
                        "id": self.ctx.run_id,
                        "provider": identity.get("provider"),
                        "commit_sha": identity.get("commit_sha"),
                        "host": identity.get("host"),
                        "started_at": _timestamp(identity.get("started_at")),
                        "tigris_prefix": identity.get("tigris_prefix")
                        or (options.get("tigris_prefix") if isinstance(options, dict) else None),
                        "group_id": identity.get("group_id"),
                        "shard_index": identity.get("shard_index"),
                        "shard_count": identity.get("shard_count"),
                        "options": jsonb(options) if options is not None else None,
                        "target": identity.get("target")
                        or (("emulator" if options.get("emulator_url") else "provider") if isinstance(options, dict)
                            else None),
                        "emulator_profile": identity.get("emulator_profile"),
                        "label": identity.get("label"),
                    },
                )
            conn.commit()
            self._started = True
        except PostgresSinkError as exc:
            self._close_slot(0)
            err = exc
        except psycopg2.Error as exc:
            err = self._fail(exc, f"inserting the runs row for {self.ctx.run_id}")
        if err is not None:
            raise err

    def _heartbeat(self) -> None:
        err = None
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                cur.execute(HEARTBEAT_SQL, {"id": self.ctx.run_id, "heartbeat": self._heartbeat_doc()})
            conn.commit()
        except psycopg2.Error as exc:
            err = self._fail(exc, "heartbeat")
        if err is not None:
            raise err

    def _heartbeat_doc(self):
        """heartbeat.json as the master last wrote it (for `loadgen watch`), or None."""
        try:
            return jsonb(rundir.read_json(Path(self.ctx.run_path) / rundir.HEARTBEAT))
        except (OSError, ValueError):
            return None

    def _take_batch(self) -> Optional[tuple[int, bytes]]:
        """The next (start, chunk) to send: whole lines, at most batch_rows of them and
        about batch_bytes, from the read position; ranges already committed are skipped
        and never overlapped (so one sink never sends a line twice after a commit).
        None when nothing is left. Runs without yielding, so concurrent writers never
        take the same lines; bytes.count/find keep it in C (no per-line Python)."""
        pos = max(self._next, self.offset)  # committed ranges the offset swallowed are gone from the map
        while pos in self._committed:
            pos = self._committed[pos]
        limit = min((s for s in self._committed if s > pos), default=None)
        want = self.batch_bytes if limit is None else min(self.batch_bytes, limit - pos)
        try:
            fh = open(self.raw_path, "rb")
        except FileNotFoundError:
            return None
        with fh:
            fh.seek(pos)
            chunk = fh.read(want)
            end = chunk.rfind(b"\n")
            if end < 0 and len(chunk) == want:
                chunk += fh.readline()  # one record longer than batch_bytes (ranges are line-aligned)
                end = chunk.rfind(b"\n")
        if end < 0:
            return None  # nothing, or only a line still being written
        chunk = chunk[: end + 1]
        if chunk.count(b"\n") > self.batch_rows:
            cut = -1
            for _ in range(self.batch_rows):
                cut = chunk.find(b"\n", cut + 1)
            chunk = chunk[: cut + 1]
        self._next = pos + len(chunk)
        return pos, chunk

    def _mark_committed(self, start: int, end: int) -> None:
        self._last_progress = time.monotonic()
        self._committed[start] = end
        while self.offset in self._committed:
            self.offset = self._committed.pop(self.offset)

    def _drain(self) -> None:
        """Send batches until no whole line is left, ``writers`` at a time.

        The offset advances only over a contiguous run of committed batches: if
        batch 1 fails after batch 2 committed, the next drain re-sends batch 1
        and skips batch 2.
        """
        self._next = self.offset
        if self.writers == 1:
            self._writer(0, [])
            return
        errors: list[BaseException] = []
        workers = [gevent.spawn(self._writer, slot, errors) for slot in range(self.writers)]
        try:
            gevent.joinall(workers)
        finally:
            gevent.killall(workers)
        if errors:
            raise errors[0]

    def _writer(self, slot: int, errors: list) -> None:
        while not errors:
            batch = self._take_batch()
            if batch is None:
                return
            start, chunk = batch
            try:
                self._send_batch(chunk, start, slot)
            except Exception as exc:
                if self.writers == 1:
                    raise
                errors.append(exc)
                return
            except BaseException:  # killed (GreenletExit) mid-statement: the connection's state is unknown
                self._close_slot(slot)
                raise
            self._mark_committed(start, start + len(chunk))
            if self.progress is not None:
                self.progress(self)
            gevent.sleep(0)

    def _send_batch(self, chunk: bytes, start: int, slot: int) -> None:
        """One statement for the whole chunk; on a refused record, fall back to one by one."""
        err = None
        params = {"run_id": self.ctx.run_id, "provider": (self.ctx.identity or {}).get("provider")}
        if b"\x00" not in chunk:  # a NUL byte would cut the query short: let the slow path name the line
            try:
                conn = self._connection(slot)
                with conn.cursor() as cur:
                    cur.execute(BATCH_TIMEOUT_SQL + UPSERT_SQL, dict(params, lines=Literal(chunk, conn)))
                conn.commit()
                self.rows_written += chunk.count(b"\n") - chunk.count(b"\n\n") - chunk.startswith(b"\n")
                return
            except (psycopg2.DataError, psycopg2.IntegrityError):
                try:
                    if self._conns[slot] is not None:
                        self._conns[slot].rollback()
                except Exception:
                    self._close_slot(slot)
            except PostgresSinkError as exc:
                err = exc
            except psycopg2.Error as exc:
                err = self._fail(exc, f"writing records of {self.ctx.run_id}", slot)
            if err is not None:
                raise err
        self._send_one_by_one(chunk, params, start, slot)

    def _send_one_by_one(self, chunk: bytes, params: dict, start: int, slot: int) -> None:
        """One transaction, one savepoint per record; refused records are counted once it commits."""
        err = None
        refused = []
        written = 0
        try:
            conn = self._connection(slot)
            with conn.cursor() as cur:
                offset = start
                for raw in chunk.split(b"\n")[:-1]:
                    at, offset = offset, offset + len(raw) + 1
                    line = raw.strip()
                    if not line:
                        continue
                    cur.execute("SAVEPOINT one_record")
                    try:
                        text = line.decode("utf-8")
                        if "\\u0000" in text:  # jsonb refuses NUL; text columns cannot hold it
                            text = text.replace("\\u0000", "\\ufffd")
                        cur.execute(UPSERT_SQL, dict(params, lines=text))
                        cur.execute("RELEASE SAVEPOINT one_record")
                        written += 1
                    except (psycopg2.DataError, psycopg2.IntegrityError, UnicodeDecodeError, ValueError) as exc:
                        cur.execute("ROLLBACK TO SAVEPOINT one_record")
                        refused.append((at, line, exc))
            conn.commit()
        except PostgresSinkError as exc:
            err = exc
        except psycopg2.Error as exc:
            err = self._fail(exc, f"writing records of {self.ctx.run_id} one by one", slot)
        if err is not None:
            raise err
        self.rows_written += written
        for at, line, exc in refused:
            self.rows_rejected += 1
            try:
                idx = orjson.loads(line).get("sandbox_idx")
            except Exception:
                idx = None
            reason = redact(" ".join(str(exc).split()) or type(exc).__name__, self.database_url)
            if len(self.rejected) < REJECT_SAMPLES:
                self.rejected.append({"sandbox_idx": idx, "offset": at, "error": reason})
            self._log.error(
                "postgres: record sandbox_idx=%s (raw.jsonl byte %d) refused by the database, not copied: %s",
                idx,
                at,
                reason,
            )

    def _remaining_records(self) -> int:
        """Whole lines not yet in Postgres: after the offset, outside committed ranges."""
        count = 0
        try:
            with open(self.raw_path, "rb") as fh:
                fh.seek(self.offset)
                while True:
                    block = fh.read(1 << 20)
                    if not block:
                        break
                    count += block.count(b"\n")
                for start, end in self._committed.items():
                    fh.seek(start)
                    count -= fh.read(end - start).count(b"\n")
        except OSError:
            pass
        return max(0, count)

    def _complete(self, meta: dict, status: str) -> int:
        """Write the final status, figures and meta to the runs row; returns the rows in the table."""
        err = None
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                table = figures_from_table(cur, self.ctx.run_id)
                figures = merge_figures(figures_from_meta(meta), table)
                error_message = meta.get("error_message") or meta.get("error")
                if self.rows_rejected:
                    note = f"database copy incomplete: {self.rows_rejected} records refused by Postgres"
                    error_message = f"{error_message}; {note}" if error_message else note
                cur.execute(
                    COMPLETE_SQL,
                    dict(
                        figures,
                        id=self.ctx.run_id,
                        status=status,
                        ended_at=_timestamp(meta.get("ended_at")),
                        error_message=error_message,
                        tigris_prefix=meta.get("tigris_prefix"),
                        meta=jsonb(meta),
                    ),
                )
            conn.commit()
            return int(table["sandboxes_attempted"] or 0)
        except PostgresSinkError as exc:
            err = exc
        except psycopg2.Error as exc:
            err = self._fail(exc, f"completing the runs row of {self.ctx.run_id}")
        raise err

    def _finish_attempt(self, meta: dict, status: str) -> int:
        """Drain and complete, or raise. A watchdog aborts the attempt when no batch has
        committed for finish_timeout: a hung statement, or a sync() stuck holding the
        lock, must not hang the end of the run, while a slow copy that keeps moving
        (a big backlog, a far database) is left to finish."""
        current = gevent.getcurrent()
        state = {"done": False}
        stalled = PostgresSinkError(f"postgres: no progress for {self.finish_timeout:g}s")

        def interrupt():
            if not state["done"]:
                current.throw(stalled)

        def watch():
            while True:
                wait = self._last_progress + max(self.finish_timeout, 1.0) - time.monotonic()
                if wait <= 0:
                    gevent.get_hub().loop.run_callback(interrupt)
                    return
                gevent.sleep(wait)

        dog = gevent.spawn(watch)
        try:
            with self._lock:
                self._ensure_started()
                self._drain()
                return self._complete(meta, status)
        except PostgresSinkError as exc:
            if exc is stalled:
                self.close()  # interrupted mid-statement: the connections' state is unknown
            raise
        finally:
            state["done"] = True
            dog.kill(block=False)

    def _finish(self, meta: dict, status: str) -> SinkReport:
        if self.ctx is None:
            return SinkReport(self.name, False, detail="postgres: finish() called before start(); nothing copied")
        note = ""
        if status not in FINAL_STATUSES:
            note = f" (status {status!r} is not one of {', '.join(FINAL_STATUSES)}; recorded as failed)"
            status = "failed"
        self._last_progress = time.monotonic()
        delay = 0.5
        table_rows = None
        while True:
            try:
                table_rows = self._finish_attempt(meta, status)
                self.last_error = None
                break
            except PostgresSinkError as exc:
                self.last_error = str(exc)
                left = self._last_progress + self.finish_timeout - time.monotonic()
                if left <= 0:
                    break
                self._log.warning(
                    "postgres: finishing %s failed (%s); %d bytes of raw.jsonl not yet copied; retrying for %.0fs more",
                    self.ctx.run_id,
                    exc,
                    self.backlog_bytes,
                    left,
                )
                gevent.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)

        missing = self._remaining_records()
        lost = missing + self.rows_rejected
        total = self.rows_written + lost
        if table_rows is not None and not lost:
            detail = f"{self.rows_written} records copied to Postgres; runs row {self.ctx.run_id} is {status}{note}"
            return SinkReport(self.name, True, detail=detail, extra=self._extra(table_rows=table_rows))
        parts = [f"database copy incomplete: {lost} of {total} records missing from Postgres"]
        if self.rows_rejected:
            parts.append(f"{self.rows_rejected} refused by the database (first: {self.rejected[0]['error']})")
        if missing:
            parts.append(f"{missing} not sent")
        if table_rows is None:
            parts.append("runs row not completed")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        parts.append(f"raw.jsonl is intact: load it later with `loadgen db replay {self.ctx.run_path}`")
        detail = redact("; ".join(parts) + note, self.database_url)
        self._log.error("postgres: %s", detail)
        return SinkReport(self.name, False, detail=detail, extra=self._extra(missing=lost, table_rows=table_rows))

    def _extra(self, **more) -> dict:
        out = {
            "rows_written": self.rows_written,
            "rows_rejected": self.rows_rejected,
            "backlog_bytes": self.backlog_bytes,
            "rejected": list(self.rejected),
        }
        out.update(more)
        return out
