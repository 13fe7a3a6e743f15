"""What one generating process (a worker, or the single local process) holds for a run.

It owns the sandbox lives of this process, the index tickets, the barrier
gate, the outbox (journal + shipping) and the health sampler, and it is what
the lifecycle talks to. It knows nothing about how it reaches the master:
``send`` is a Locust message on a worker and a direct call in local mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import gevent
import gevent.pool

from loadgen import rundir
from loadgen.engine.abort import Abort
from loadgen.engine.barrier import BarrierGate
from loadgen.engine.dispatch import RANGES_OPTION, TicketBook
from loadgen.engine.journal import Outbox
from loadgen.engine.lifecycle import Lifecycle
from loadgen.engine.schedule import StartGate
from loadgen.engine.health import HealthSampler
from loadgen.providers.base import Provider

log = logging.getLogger("loadgen.process")


class ProcessRun:
    def __init__(
        self,
        environment,
        run_id: str,
        worker_id: str,
        provider: Provider,
        settings,  # loadgen.engine.wiring.RunSettings
        run_path: Path,
        send_results: Callable[[dict], None],
        send_metrics: Callable[[dict], None],
        ticket_limit: Optional[int] = None,
        clock_offset: float = 0.0,
    ):
        self.environment = environment
        self.run_id = run_id
        self.worker_id = worker_id
        self.provider = provider
        self.settings = settings
        self.clock_offset = clock_offset
        self.tickets = TicketBook(limit=ticket_limit)
        self.gate = BarrierGate(settings.hold_s, settings.probe_spread_s)
        self.starts = StartGate(settings.schedule, lambda: self.clock_offset)
        if settings.schedule.sequential:
            # one sandbox at a time: nothing else can arrive, so no barrier holds it
            self.gate.release({"released_at": None, "reason": "sequential"})
        self.abort = Abort()
        self.abort_reason: Optional[str] = None
        self.lives = gevent.pool.Group()
        self.outbox = Outbox(run_path / rundir.JOURNAL_DIR, worker_id, send_results)
        self.sampler = HealthSampler(worker_id, send_metrics, self.gauges)
        self.in_flight = 0
        self.calls_finished = 0  # every adapter call's end: the lifecycle's sign that the transport is moving
        self.held = 0
        self.late_waiting = 0  # lives waiting for a timed-out create's late answer (to destroy it)
        self.created_count = 0
        self.destroyed_count = 0
        self.done = 0
        self.refused_users = 0
        self._phase1: list = []  # [idx, latency_ms, first_command_ms] not yet reported
        self._drain: Optional[gevent.Greenlet] = None
        self._request = environment.events.request
        self._request_type = provider.name

    def start(self) -> None:
        self.outbox.start()
        self.sampler.start()

    # -- called by SandboxUser / Lifecycle ------------------------------------
    def take_ticket(self) -> Optional[int]:
        options = self.environment.parsed_options
        self.tickets.update(getattr(options, RANGES_OPTION, None) if options is not None else None)
        return self.tickets.take()

    def note_refused_user(self) -> None:
        self.refused_users += 1
        if self.refused_users in (1, 10, 100, 1000):
            log.warning("a user was started after this process's sandboxes were all dispatched "
                        "(a Locust respawn or rebalance); it stays idle (%d so far)", self.refused_users)

    def start_lifecycle(self, idx: int) -> gevent.Greenlet:
        life = Lifecycle(self, idx)
        return self.lives.spawn(life.run)

    def fire_request(self, phase: str, response_time_ms: float, exc: Optional[BaseException]) -> None:
        self._request.fire(request_type=self._request_type, name=f"{self._request_type}/{phase}",
                           response_time=response_time_ms, response_length=0, exception=exc, context={})

    def note_phase1(self, idx: int, record) -> None:
        """A life finished create and readiness: its latencies travel with the next report, so that the
        master's heartbeat has create and TTI figures before the records (which come at the life's end)."""
        if record.latency_ms is not None:
            self._phase1.append([idx, record.latency_ms, record.first_command_ms])

    def take_phase1(self) -> list:
        samples, self._phase1 = self._phase1, []
        return samples

    def created(self, idx: int, sandbox_id: Optional[str]) -> None:
        self.created_count += 1
        self.outbox.created(idx, sandbox_id)

    def destroyed(self, idx: int) -> None:
        self.destroyed_count += 1

    def emit(self, record) -> None:
        self.done += 1
        # a sequential run's next sandbox waits for this record at the master: ship it now
        self.outbox.put(record.__dict__ if hasattr(record, "__dict__") else record,
                        ship_now=self.starts.schedule.sequential)

    # -- run control ------------------------------------------------------------
    def abort_all(self, reason: str) -> None:
        if not self.abort.is_set():
            self.abort_reason = reason
            if len(self.lives):
                log.info("[phase] ending every hold in this process (%d lives running): %s", len(self.lives), reason)
            self.abort.set()

    def gauges(self) -> dict:
        return {"in_flight": self.in_flight, "held": self.held, "live_sandboxes": self.created_count - self.destroyed_count,
                "done": self.done, "waiting": self.starts.waiting}

    def report(self) -> dict:
        """The absolute counts the master's barrier and heartbeat read (level-triggered)."""
        return {
            "worker_id": self.worker_id,
            "phase1_done": self.gate.phase1_done,
            "seen_release": self.gate.released,
            "in_flight": self.in_flight,
            "held": self.held,
            "late_waiting": self.late_waiting,
            "done": self.done,
            "created": self.created_count,
            "live": self.created_count - self.destroyed_count,
            "lives": len(self.lives),
            "waiting": self.starts.waiting,
            "tickets": self.tickets.issued,
        }

    def drain(self, timeout: float, block: bool = True) -> None:
        """Wait for every life here to end, then ship everything with the end marker.

        Several paths end a run (the master's abort, Locust's stop, quitting);
        whichever comes first drains, the others wait for that same drain."""
        if self._drain is None:
            self._drain = gevent.spawn(self._drain_once, timeout)
        if block:
            self._drain.join()

    def _drain_once(self, timeout: float) -> None:
        if not self.lives.join(timeout=timeout):
            log.error("%d sandbox lives still running after %.0f s; their results are missing", len(self.lives), timeout)
        self.outbox.flush(final=True)

    def close(self) -> None:
        self.sampler.stop()
        self.outbox.close()

    def max_life_s(self) -> float:
        """The longest a life can still take after an abort: every remaining phase at its timeout."""
        s = self.settings
        return (s.create_timeout_s + s.late_create_window_s + s.commands_per_life * (s.command_timeout_s + 1)
                + s.destroy_budget_s + 5)
