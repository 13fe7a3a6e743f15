"""The worker's side of the results flow: journal first, then ship.

A result is appended to the worker's own journal on its local disk before
anyone else hears of it, so a lost master, a broken connection or a killed
worker costs no data that reached the journal. Results then travel to the
master in batches, each numbered; the master acknowledges each batch and a
batch not acknowledged in time is sent again (the master keeps the first copy
of each sandbox_idx, so a repeat is harmless).

Created sandboxes are journaled separately the moment their id is known, so
that `loadgen reap` can find every sandbox a crashed worker left behind.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import gevent
import orjson

log = logging.getLogger("loadgen.journal")


class Outbox:
    def __init__(
        self,
        journal_dir: Path,
        worker_id: str,
        send: Callable[[dict], None],
        batch_size: int = 500,
        interval_s: float = 0.25,
        resend_after_s: float = 5.0,
    ):
        journal_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker_id)
        self.results_path = journal_dir / f"{safe}.jsonl"
        self.created_path = journal_dir / f"{safe}.created.jsonl"
        self._results = open(self.results_path, "ab")
        self._created = open(self.created_path, "ab")
        self.worker_id = worker_id
        self.send = send
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.resend_after_s = resend_after_s
        self.pending: list[dict] = []
        self.unacked: dict[int, tuple[float, list[dict]]] = {}
        self.seq = 0
        self.shipped = 0
        self.journaled = 0
        self._greenlet: Optional[gevent.Greenlet] = None
        self._wake = gevent.event.Event()

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def put(self, record: dict, ship_now: bool = False) -> None:
        self._results.write(orjson.dumps(record) + b"\n")
        self._results.flush()  # in the OS's hands: survives a crash of this process
        self.journaled += 1
        self.pending.append(record)
        if ship_now or len(self.pending) >= self.batch_size:
            self._wake.set()

    def created(self, sandbox_idx: int, sandbox_id: Optional[str]) -> None:
        self._created.write(orjson.dumps({"sandbox_idx": sandbox_idx, "sandbox_id": sandbox_id, "t": time.time()}) + b"\n")
        self._created.flush()

    def ack(self, seq: int) -> None:
        self.unacked.pop(seq, None)

    def _ship(self, records: list[dict], final: bool = False) -> None:
        self.seq += 1
        self.unacked[self.seq] = (time.monotonic(), records)
        self.send({"worker_id": self.worker_id, "seq": self.seq, "records": records, "final": final})
        self.shipped += len(records)

    def flush(self, final: bool = False) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size:]
            self._ship(batch)
        if final:
            # everything not yet acknowledged goes again, then the end marker
            for seq, (_, records) in sorted(self.unacked.items()):
                self.send({"worker_id": self.worker_id, "seq": seq, "records": records, "final": False})
            self._ship([], final=True)
            os.fsync(self._results.fileno())

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
                now = time.monotonic()
                for seq, (sent_at, records) in list(self.unacked.items()):
                    if records and now - sent_at > self.resend_after_s:
                        log.warning("results batch %s not acknowledged after %.0f s; sending again", seq, now - sent_at)
                        self.unacked[seq] = (now, records)
                        self.send({"worker_id": self.worker_id, "seq": seq, "records": records, "final": False})
            except Exception:  # noqa: BLE001 - keep shipping; the journal has everything
                log.exception("shipping results to the master failed; will retry")

    def close(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        for fh in (self._results, self._created):
            try:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            except Exception:  # noqa: BLE001
                pass
