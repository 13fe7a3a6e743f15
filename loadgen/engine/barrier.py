"""The cluster-wide hold barrier.

Every sandbox is held until every user in the whole run has finished phase 1
(create and readiness, failed creates included), so that the liveness probe
measures the provider holding N sandboxes at once rather than churn.

The barrier is level-triggered so that no single lost message can deadlock
it: workers report absolute counts (not increments) every second and on
change, and the master re-broadcasts the release to every worker until that
worker reports that it has seen it. A deadline (``--barrier-timeout``)
releases it regardless, and the outcome (by count or by deadline, when, how
long) is recorded in meta.json.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import gevent
import gevent.event

from loadgen.engine.abort import Abort

GOLDEN = 0.6180339887498949


class BarrierCoordinator:
    """Master side (or the single process in local mode)."""

    def __init__(self, deadline_s: float, expected: Callable[[], int]):
        self.deadline_s = deadline_s
        self.expected = expected
        # sandboxes that will never arrive (those of workers the master lost): not waited for
        self.excused: Callable[[], int] = lambda: 0
        self.counts: dict[str, int] = {}
        self.acked: set[str] = set()
        self.started_at: Optional[float] = None
        self.dispatch_complete = False
        self.released_at: Optional[float] = None
        self.reason: Optional[str] = None

    def start(self) -> None:
        self.started_at = time.time()

    @property
    def arrived(self) -> int:
        return sum(self.counts.values())

    @property
    def released(self) -> bool:
        return self.released_at is not None

    def report(self, worker_id: str, phase1_done: int, seen_release: bool = False) -> None:
        self.counts[worker_id] = max(phase1_done, self.counts.get(worker_id, 0))
        if seen_release:
            self.acked.add(worker_id)
        self.evaluate()

    def evaluate(self, now: Optional[float] = None) -> bool:
        """Release if everyone arrived or the deadline passed. Returns True on the releasing call."""
        if self.released or self.started_at is None:
            return False
        now = time.time() if now is None else now
        expected = self.expected()
        if self.dispatch_complete and expected > 0 and self.arrived + self.excused() >= expected:
            self._release(now, "count")
            return True
        if now - self.started_at >= self.deadline_s:
            self._release(now, "deadline")
            return True
        return False

    def abort(self, reason: str = "interrupted") -> None:
        if not self.released:
            self._release(time.time(), reason)

    def _release(self, now: float, reason: str) -> None:
        self.released_at, self.reason = now, reason

    def message(self) -> dict:
        return {"released_at": self.released_at, "reason": self.reason}

    def outcome(self) -> dict:
        return {
            "released": self.released,
            "reason": self.reason,  # count | deadline | interrupted
            "released_at": self.released_at,
            "started_at": self.started_at,
            "waited_s": None if not self.released else round(self.released_at - self.started_at, 3),
            "deadline_s": self.deadline_s,
            "arrived": self.arrived,
            "excused": self.excused(),  # never arrived: their workers were lost
            "expected": self.expected(),
            "arrived_by_worker": dict(self.counts),
        }


class BarrierGate:
    """Worker side: counts arrivals and lets held sandboxes through on release."""

    def __init__(self, min_hold_s: float = 0.0, spread_s: float = 0.0):
        self.min_hold_s = min_hold_s
        self.spread_s = spread_s
        self.phase1_done = 0
        self._released_or_abort = gevent.event.Event()  # what holds wait on: one link each (engine/abort.py)
        self.release_info: dict = {}
        self.released_locally_at: Optional[float] = None
        self.on_change: Optional[Callable[[], None]] = None

    def arrive(self) -> None:
        self.phase1_done += 1
        if self.on_change is not None:
            self.on_change()

    def release(self, info: dict) -> None:
        if not self.released:
            self.release_info = dict(info)
            self.released_locally_at = time.time()
            self._released_or_abort.set()

    @property
    def released(self) -> bool:
        return self.released_locally_at is not None

    def spread_offset(self, sandbox_idx: int) -> float:
        """A fixed, evenly spread offset per sandbox, so probes do not all wake in one instant."""
        if self.spread_s <= 0:
            return 0.0
        return self.spread_s * ((sandbox_idx * GOLDEN) % 1.0)

    def hold(self, sandbox_idx: int, ready_at: float, abort: Abort) -> None:
        """Block (cooperatively) until release, the minimum hold, and this sandbox's spread offset.
        An abort (run interrupted) ends the hold at once."""
        abort.also_sets(self._released_or_abort)
        self._released_or_abort.wait()
        if abort.is_set():
            return
        wake_at = max(ready_at + self.min_hold_s, self.released_locally_at + self.spread_offset(sandbox_idx))
        delay = wake_at - time.time()
        if delay > 0:
            abort.sleep(delay)
