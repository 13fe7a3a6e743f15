"""When each sandbox starts: one scheduled start per sandbox_idx, for every run mode.

The master fixes the schedule; every process that runs sandbox lives follows it.

burst (the default)
    Every sandbox is due at t0, the moment the master dispatches the run.
staggered (``--mode staggered --stagger-ms MS``)
    Sandbox ``idx`` is due at ``t0 + idx × MS``.
arrival (``--arrival-rate R [--ramp S]``)
    An open model: R creates per second across the whole run, fixed in
    advance and independent of answers, so a slow provider never slows the
    arrivals. With a ramp the rate rises linearly from 0 to R over S seconds,
    then stays at R: the cumulative count is ``R t² / 2S`` during the ramp,
    so sandbox ``idx`` is due at ``sqrt(2 S idx / R)`` while
    ``idx <= R S / 2`` and at ``S + (idx - R S / 2) / R`` after.
sequential (``--mode sequential``)
    One sandbox at a time across the whole cluster: sandbox ``idx`` may start
    once the master holds the record of every earlier sandbox (so the earlier
    one's life, destroy included, is over; a sandbox of a lost worker is
    skipped). Its scheduled start is the moment the master granted its turn.
    There is no hold barrier: nothing else could ever arrive.
    ``--concurrency K`` makes it K at a time (a closed model): sandbox ``idx``
    may start once ``idx - K + 1`` earlier lives are over, so exactly K lives
    run at once until the last ones (the storage benchmark's weekly run is
    ``--mode sequential --concurrency 16``).

t0 is the moment every worker has built its process's run and spawned its
users (Locust's ``spawning_complete`` on the master): the master then sends
it to every worker, so that no create waits for a slow worker's start-up and
no worker's start-up counts as lateness. Every time is on the master's clock
(workers correct theirs by the measured offset). Each record carries its ``scheduled_start_at`` and
``start_lateness_ms`` (its create's start minus its scheduled start), so a
generator that falls behind its schedule shows in the figures instead of
silently stretching the schedule (coordinated omission). Dispatch is
unchanged: the master still hands out every index at once, exactly once; a
life only waits for its time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import gevent
import gevent.event

from loadgen.engine.abort import Abort
from loadgen.result import iso

MODES = ("burst", "staggered", "sequential")
ARRIVAL = "arrival"  # the schedule of --arrival-rate (an open model); --mode stays burst

# The run's size travels to the workers inside the spawn message's options,
# like the run id and the index ranges (their own command line has no -u).
SANDBOXES_OPTION = "loadgen_sandboxes"


@dataclass(frozen=True)
class Schedule:
    """The run's schedule: ``offset_s(idx)`` after t0 for the timed kinds (pure; no clock)."""

    kind: str = "burst"  # burst | staggered | arrival | sequential
    stagger_s: float = 0.2
    rate_per_s: Optional[float] = None
    ramp_s: float = 0.0
    concurrency: int = 1  # sequential: lives at once

    @property
    def sequential(self) -> bool:
        return self.kind == "sequential"

    def offset_s(self, idx: int) -> float:
        """Seconds after t0 at which sandbox ``idx`` is due (0 for burst and sequential)."""
        if self.kind == "staggered":
            return idx * self.stagger_s
        if self.kind == ARRIVAL:
            rate, ramp = float(self.rate_per_s), self.ramp_s
            if ramp <= 0:
                return idx / rate
            during_ramp = rate * ramp / 2.0
            if idx <= during_ramp:
                return math.sqrt(2.0 * ramp * idx / rate)
            return ramp + (idx - during_ramp) / rate
        return 0.0

    def span_s(self, sandboxes: int) -> float:
        """When the last of ``sandboxes`` is due, after t0 (0 when none, and for sequential runs)."""
        if sandboxes <= 0 or self.sequential:
            return 0.0
        return self.offset_s(sandboxes - 1)

    def describe(self, sandboxes: int, t0: Optional[float]) -> dict:
        """The schedule as meta.json and heartbeat.json state it."""
        return {
            "mode": self.kind,
            "stagger_ms": round(self.stagger_s * 1000.0, 3) if self.kind == "staggered" else None,
            "arrival_rate_per_s": self.rate_per_s if self.kind == ARRIVAL else None,
            "ramp_s": self.ramp_s if self.kind == ARRIVAL else None,
            "concurrency": self.concurrency if self.sequential else None,
            "t0": iso(t0),
            "sandboxes": sandboxes,
            "planned_span_s": None if self.sequential else round(self.span_s(sandboxes), 6),
        }


def optional_float(options, name: str, errors: list) -> Optional[float]:
    """A float option that may be unset (None, or an empty field of the web UI's form, which sends text)."""
    value = getattr(options, name, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        errors.append(f"--{name.replace('_', '-')} takes a number (got {value!r})")
        return None


def schedule_from_options(options, errors: list) -> Schedule:
    """--mode, --stagger-ms, --arrival-rate, --ramp, --concurrency: checked, appending to ``errors``."""
    mode = getattr(options, "mode", None) or "burst"
    concurrency = getattr(options, "concurrency", None)
    concurrency = 1 if concurrency in (None, "") else concurrency
    stagger_ms = getattr(options, "stagger_ms", 200.0)
    rate = optional_float(options, "arrival_rate", errors)
    ramp = optional_float(options, "ramp", errors) or 0.0
    if mode not in MODES:
        errors.append(f"--mode must be one of {', '.join(MODES)} (got {mode!r})")
        mode = "burst"
    if stagger_ms is None or not stagger_ms > 0:
        errors.append(f"--stagger-ms must be > 0 (got {stagger_ms})")
        stagger_ms = 200.0
    if ramp < 0:
        errors.append(f"--ramp must be >= 0 (got {ramp})")
    if rate is not None:
        if not rate > 0:
            errors.append(f"--arrival-rate must be > 0 creates per second (got {rate})")
        elif mode != "burst":
            errors.append(f"--arrival-rate is a schedule of its own; it cannot be combined with --mode {mode}")
        else:
            return Schedule(ARRIVAL, stagger_ms / 1000.0, float(rate), max(float(ramp), 0.0))
    elif ramp > 0:
        errors.append("--ramp needs --arrival-rate (the rate the ramp rises to)")
    if not isinstance(concurrency, int) or concurrency < 1:
        errors.append(f"--concurrency must be a whole number >= 1 (got {concurrency!r})")
        concurrency = 1
    elif concurrency > 1 and mode != "sequential":
        errors.append(f"--concurrency is for --mode sequential (K lives at a time); --mode {mode} has its own "
                      "schedule")
    return Schedule(mode, stagger_ms / 1000.0, concurrency=concurrency if mode == "sequential" else 1)


class StartGate:
    """Worker side: holds each life until its scheduled start.

    ``wait`` returns the scheduled start (master clock) once it is due, or
    None if the run is aborted first. Every life first waits for t0
    (``set_origin``, from the master). Timed kinds then sleep until ``t0 +
    offset``; a sequential run waits for the master's turn grants
    (``grant``). Both messages are level-triggered: the master repeats them,
    a repeated t0 is ignored and a grant never moves the turn back.
    """

    def __init__(self, schedule: Schedule, clock_offset: Callable[[], float]):
        self.schedule = schedule
        self.t0: Optional[float] = None
        self._origin_or_abort = gevent.event.Event()  # what the waiters wait on: one link each (engine/abort.py)
        self.clock_offset = clock_offset  # worker clock minus master clock, read at each wait
        self.turn = 0  # sequential: every idx below or at the turn may start
        self.granted_at: dict[int, float] = {}
        self._turn_events: dict[int, gevent.event.Event] = {}
        self.waiting = 0

    def _master_now(self) -> float:
        return time.time() - self.clock_offset()

    def set_origin(self, t0: float) -> None:
        if self.t0 is None:
            self.t0 = t0
            self.granted_at.setdefault(0, t0)
            self._origin_or_abort.set()

    def wait(self, idx: int, abort: Abort) -> Optional[float]:
        self.waiting += 1
        try:
            abort.also_sets(self._origin_or_abort)
            self._origin_or_abort.wait()
            if abort.is_set():
                return None
            if self.schedule.sequential:
                return self._wait_turn(idx, abort)
            due = self.t0 + self.schedule.offset_s(idx)
            while True:
                delay = due - self._master_now()
                if abort.is_set():
                    return None
                if delay <= 0.0005:
                    return due
                abort.sleep(delay)
        finally:
            self.waiting -= 1

    def _wait_turn(self, idx: int, abort: Abort) -> Optional[float]:
        while self.turn < idx:
            if abort.is_set():
                return None
            abort.wait_for(self._turn_events.setdefault(idx, gevent.event.Event()))
        self._turn_events.pop(idx, None)
        if abort.is_set():
            return None
        return self.granted_at.get(idx, self.t0)

    def grant(self, turn: int, granted_at: float) -> None:
        """The master's grant: sandboxes up to ``turn`` may start (granted at ``granted_at``, master clock)."""
        if turn <= self.turn:
            return
        for idx in range(self.turn + 1, turn + 1):
            self.granted_at[idx] = granted_at
        self.turn = turn
        for idx in [i for i in self._turn_events if i <= turn]:
            self._turn_events.pop(idx).set()


class Sequencer:
    """Master side of a sequential run: grants the next turn when an earlier life is over.

    Every sandbox_idx up to the turn may start. With concurrency K the turn is
    (lives over) + K - 1, counted over the granted ones: a life is over when
    its record arrived or its worker is lost (it will never report). So
    exactly K granted lives are not over, until the run's end; with K = 1 the
    turn is the lowest sandbox_idx whose life is not over.
    """

    def __init__(self, t0: float, concurrency: int = 1):
        self.concurrency = max(1, int(concurrency))
        self.turn = self.concurrency - 1
        self.granted_at = t0
        self._low = 0  # every idx below it is over

    def advance(self, received: Iterable[int] | set, lost: Callable[[int], bool] = lambda idx: False,
                now: Optional[float] = None) -> bool:
        """Move the turn on by every finished (or lost) granted sandbox; True if it moved."""
        received = received if isinstance(received, (set, frozenset, dict)) else set(received)
        start = self.turn
        while True:
            while self._low <= self.turn and (self._low in received or lost(self._low)):
                self._low += 1
            over = self._low + sum(1 for i in range(self._low + 1, self.turn + 1) if i in received or lost(i))
            turn = over + self.concurrency - 1
            if turn <= self.turn:
                break
            self.turn = turn
        if self.turn != start:
            self.granted_at = time.time() if now is None else now
            return True
        return False

    def message(self) -> dict:
        return {"turn": self.turn, "granted_at": self.granted_at}
