"""The master's side of the results flow: every record lands in raw.jsonl once.

The collector keeps the first copy of each sandbox_idx (workers resend
batches the master has not acknowledged), appends it to raw.jsonl, keeps the
running counts that heartbeat.json and the progress lines show, and knows
when every dispatched sandbox has reported, which is when the run ends.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import orjson

from loadgen import rundir
from loadgen.result import STATUSES  # the summary's order
from loadgen.report.human import count, duration_s, number
from loadgen.report.percentiles import percentile

log = logging.getLogger("loadgen.collector")




class LiveFigures:
    """What the web UI charts while the run goes on: each sandbox's status by index, create and TTI so far.

    Compact on purpose (one byte per sandbox, two floats per success): the
    master keeps it for the whole run, 100,000 sandboxes included."""

    PENDING = 0

    def __init__(self):
        self.status_codes = bytearray()
        self.create_ms: list[float] = []
        self.tti_ms: list[float] = []

    def add(self, record: dict) -> None:
        idx = record["sandbox_idx"]
        if idx >= len(self.status_codes):
            self.status_codes.extend(bytes(idx + 1 - len(self.status_codes)))
        status = record.get("status")
        self.status_codes[idx] = STATUSES.index(status) + 1 if status in STATUSES else len(STATUSES) + 1
        created, first = record.get("latency_ms"), record.get("first_command_ms")
        if created is not None and status in STATUSES[:3]:  # a sandbox was made (as in report.stats)
            self.create_ms.append(created)
            if first is not None and status in ("success", "partial"):
                self.tti_ms.append(created + first)

    def statuses(self, expected: int) -> list[str]:
        """Every dispatched sandbox's status in submission order ("pending" until its record arrives)."""
        names = ("pending",) + STATUSES + ("other",)
        codes = self.status_codes[:expected] + bytes(max(0, expected - len(self.status_codes)))
        return [names[c] for c in codes]


class Collector:
    def __init__(self, run_path: Path, expected: Callable[[], int], dispatch_complete: Callable[[], bool]):
        self.path = run_path / rundir.RAW
        self._fh = open(self.path, "ab")
        self.expected = expected
        self.dispatch_complete = dispatch_complete
        self.seen: set[int] = set()
        self.by_status: collections.Counter = collections.Counter()
        self.by_failure_class: collections.Counter = collections.Counter()
        self.duplicates = 0
        self.live = LiveFigures()
        self.started_at = time.time()
        self._next_progress = 0.1
        self.on_complete: Optional[Callable[[], None]] = None
        self.waiting_for: Callable[[], Optional[str]] = lambda: None  # the coordinator says what the run waits for
        self.last_progress_at = time.time()
        self._completed_fired = False
        # create and TTI latency of every sandbox known so far (sandbox_idx -> (create_ms, tti_ms)), for
        # heartbeat.json: from the workers' phase-1 reports, replaced by the record when it arrives
        self._latency: dict[int, tuple] = {}
        self._latency_figures: Optional[dict] = None

    @property
    def received(self) -> int:
        return len(self.seen)

    def accept(self, records: list[dict]) -> int:
        """Append the new records; returns how many were new."""
        lines = []
        for record in records:
            if record["sandbox_idx"] in self.seen:
                self.duplicates += 1
                continue
            self._count(record)
            lines.append(orjson.dumps(record))
        if lines:
            self._fh.write(b"\n".join(lines) + b"\n")
            self._fh.flush()
            self._progress()
            if self.complete and not self._completed_fired and self.on_complete is not None:
                self._completed_fired = True
                self.on_complete()
        return len(lines)

    def _count(self, record: dict) -> None:
        self.seen.add(record["sandbox_idx"])
        self.by_status[record.get("status")] += 1
        if record.get("failure_class"):
            self.by_failure_class[record["failure_class"]] += 1
        self.live.add(record)
        self._note_latency(record)

    def adopt(self) -> int:
        """Count the records raw.jsonl holds already (a run being recovered), without writing them again.

        A torn last line (a master killed mid-write) is cut off: that record
        comes again from its worker's journal. Returns how many were adopted."""
        whole, records = 0, []
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                whole += len(line)
                if line.strip():
                    records.append(orjson.loads(line))
        if whole != self.path.stat().st_size:
            os.truncate(self.path, whole)
        adopted = 0
        for record in records:
            if record["sandbox_idx"] not in self.seen:
                self._count(record)
                adopted += 1
        return adopted

    def _note_latency(self, record: dict) -> None:
        status, lat, first = record.get("status"), record.get("latency_ms"), record.get("first_command_ms")
        self._latency_figures = None
        if status != "failed" and lat is not None:
            tti = lat + first if status in ("success", "partial") and first is not None else None
            self._latency[record["sandbox_idx"]] = (lat, tti)
        else:
            self._latency.pop(record["sandbox_idx"], None)

    def note_phase1(self, samples: list) -> None:
        """[idx, latency_ms, first_command_ms] of lives past readiness, reported before their records."""
        for idx, lat, first in samples:
            if idx not in self.seen and lat is not None:
                self._latency[idx] = (lat, lat + first if first is not None else None)
                self._latency_figures = None

    def latency_so_far(self) -> dict:
        """Create and TTI p50/p99 (nearest rank) over every sandbox past its create so far, as the final
        figures define them (loadgen.report.stats); the final figures are computed from the records."""
        if self._latency_figures is None:
            create = sorted(c for c, _ in self._latency.values())
            tti = sorted(t for _, t in self._latency.values() if t is not None)
            self._latency_figures = {
                "count": len(create),
                "create_p50_ms": percentile(create, 50), "create_p99_ms": percentile(create, 99),
                "tti_p50_ms": percentile(tti, 50), "tti_p99_ms": percentile(tti, 99)}
        return self._latency_figures

    def rate_and_eta(self) -> tuple[float, Optional[float]]:
        """Results per second since the collector started, and the seconds left at that rate."""
        elapsed = max(time.time() - self.started_at, 1e-6)
        rate = self.received / elapsed
        left = max(self.expected() - self.received, 0)
        return rate, (left / rate if rate > 0 else None) if left else 0.0

    @property
    def complete(self) -> bool:
        expected = self.expected()
        return self.dispatch_complete() and expected > 0 and self.received >= expected

    def missing(self) -> list[int]:
        return [i for i in range(self.expected()) if i not in self.seen]

    def _progress(self) -> None:
        expected = self.expected()
        if not expected:
            return
        fraction = self.received / expected
        if fraction + 1e-9 < self._next_progress and self.received != expected:
            return
        while self._next_progress <= fraction + 1e-9:
            self._next_progress += 0.1
        self.log_progress()

    def log_progress(self) -> None:
        """One [progress] line: how far, how fast, the statuses as the summary counts them, and
        what the run waits for when it knows (else an ETA from the rate so far)."""
        expected = self.expected()
        elapsed = max(time.time() - self.started_at, 1e-6)
        rate = self.received / elapsed
        waiting = self.waiting_for() if self.received < expected else None
        if self.received >= expected:
            tail = "all done"
        elif waiting:
            tail = waiting
        else:
            tail = f"ETA {duration_s((expected - self.received) / rate)}" if rate > 0 else "ETA unknown"
        self.last_progress_at = time.time()
        log.info("[progress] %s/%s sandboxes done (%.0f%%), %s/s; %s; %s", count(self.received), count(expected),
                 100.0 * self.received / expected if expected else 0.0, number(rate),
                 ", ".join(f"{k} {count(self.by_status.get(k, 0))}" for k in STATUSES), tail)

    def close(self) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        finally:
            self._fh.close()
