"""One sandbox's life: the phases, their timing and their one record.

create → readiness (`node -v`) → hold (cluster barrier) → liveness (`node -v`)
→ destroy, then the user idles. One user is one sandbox, exactly once. (An
adapter may leave the liveness probe out, and check its command's answer
itself: ``Provider.liveness_probe``, ``Provider.checks_version``.)

The life runs in its own greenlet, outside the Locust user's greenlet, for
two reasons Locust would otherwise defeat:
- Locust kills user greenlets on stop; a kill landing inside a create would
  lose the id of a sandbox the provider made (a paid-for leak). Here a stop
  only aborts the hold; the life still probes, destroys and records.
- An exception in a Locust task makes Locust run the task again (a second
  create). The life catches everything and ends in exactly one record.

Request events are fired directly (not through ``events.request.measure``,
which swallows exceptions), one per phase: ``<provider>/create``,
``/readiness``, ``/liveness``, ``/destroy``.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from typing import Any, Optional

import gevent
import gevent.event

from loadgen.engine import reuse_probe
from loadgen.engine.options import destroy_retry_waits
from loadgen.net import gcpauses
from loadgen.net.aio import get_bridge
from loadgen.net.exchange import Phase
from loadgen.result import (
    ErrorInfo,
    FailureClass,
    GeneratorFailure,
    SandboxResult,
    Status,
    generator_cause,
    generator_error_info,
    iso,
    ms_between,
    parse_iso,
    scrub_metadata,
    truncate,
    OUTPUT_LIMIT,
)

log = logging.getLogger("loadgen.lifecycle")

VERSION_PATTERN = re.compile(r"v?\d+\.\d+\.\d+")

# A wire-judged call can take longer than its timeout for the generator's reasons only: the
# request may leave as late as the deadline (later, it is not sent), and the provider then has
# its whole timeout. Past twice the timeout and this (one "window"), the lifecycle looks at the
# transport: if this call's request is on the wire, or any other call of the process finished in
# the window, the transport is busy, not stuck, and its verdict (the wire's) is waited for, window
# after window, up to VERDICT_MAX_WINDOWS. Only a transport that did nothing for a whole window is
# the generator's stall. (At 100,000 sandboxes on two cores, commands answered in a millisecond were
# read 30 s later; one window made every one of them a generator failure.)
VERDICT_GRACE_S = 30.0
VERDICT_MAX_WINDOWS = 10
# A destroy the generator itself could not make is tried again, this often, for at least this long.
GENERATOR_RETRY_INTERVAL_S = 0.5
GENERATOR_RETRY_S = 60.0
# Wire times and the greenlet's clock are the same clock read in two threads; beyond this
# apart, something is wrong with the wire times and the greenlet's are kept.
CLOCK_SLACK_S = 0.005


class NoAnswer(TimeoutError):
    """No answer within the phase's timeout: on the wire (judged by the kernel's stamps), or,
    for an adapter timed around its SDK call, by this greenlet's clock. The provider's timeout."""


class GeneratorStalled(GeneratorFailure):
    """The transport gave no verdict long past the deadline: this process was too busy to run it."""

# The cyclic GC at Python's default thresholds (700, 10, 10) costs a burst more
# than any other single thing: every sandbox held alive is thousands of SDK,
# greenlet and record objects, so collections come every few hundred
# allocations and each older-generation pass walks the whole growing heap
# (3,000 e2b sandboxes in one process: ~3 s of GC CPU by gc.callbacks, against
# ~0.3 s at these thresholds; see BENCHMARKS.md). Reference counting still frees
# everything acyclic at once; only cyclic garbage waits longer.
# LOADGEN_GC_THRESHOLD="700,10,10" (or "default") restores Python's. A process
# whose answers wiregrpc's reader thread stamps (modal) keeps short pauses
# instead, unless the variable is set (loadgen.net.gcpauses).
GC_THRESHOLD = (100_000, 50, 1000)
_gc_tuned = False


def tune_gc() -> None:
    """Raise the GC thresholds once per process (the processes that run sandbox lives)."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    setting = os.environ.get(gcpauses.GENERATOR_SETTING_ENV, "").strip()
    if setting == "default" or (not setting and gcpauses.active):  # (active: a wiregrpc client's short pauses)
        return
    try:
        threshold = tuple(int(x) for x in setting.split(",")) if setting else GC_THRESHOLD
        gc.set_threshold(*threshold)
    except (ValueError, TypeError):
        log.warning("ignoring LOADGEN_GC_THRESHOLD=%r (want three integers, or 'default')", setting)


class CommandFailed(Exception):
    """A command ran but did not give what readiness/liveness requires (exit 0 and a version)."""

    def __init__(self, exit_code, stdout: str, stderr: str):
        self.exit_code = exit_code
        if exit_code not in (0, None):
            detail = (stderr or stdout or "").strip()[:200]
            message = f"command exited with {exit_code}" + (f": {detail}" if detail else "")
        else:
            message = f"no version on stdout: {(stdout or '').strip()[:200]!r}"
        super().__init__(message)


def check_version_output(result) -> str:
    """Readiness and liveness both require exit code 0 and a version on stdout."""
    if result.exit_code != 0:
        raise CommandFailed(result.exit_code, result.stdout, result.stderr)
    match = VERSION_PATTERN.search(result.stdout or "")
    if not match:
        raise CommandFailed(result.exit_code, result.stdout, result.stderr)
    return match.group(0)


class Lifecycle:
    """The life of sandbox ``idx``. ``run()`` never raises and emits exactly one record.

    ``proc`` is the process's run (``loadgen.engine.process.ProcessRun``): the
    provider, the settings, the barrier gate and the outbox the life reports to.
    """

    def __init__(self, proc, idx: int):
        self.proc = proc
        self.idx = idx
        self.provider = proc.provider
        self.handle: Any = None
        self.record = SandboxResult(run_id=proc.run_id, sandbox_idx=idx, provider=proc.provider.name,
                                    worker_id=proc.worker_id, wire_timed=bool(proc.provider.wire_verdicts))
        self.arrived = False
        self.scheduled_at: Optional[float] = None

    # -- helpers -------------------------------------------------------------
    def _now(self) -> float:
        return time.time() - self.proc.clock_offset

    def _fire(self, phase: str, started: float, ended: float, exc: Optional[BaseException]) -> None:
        self.proc.fire_request(phase, (ended - started) * 1000.0, exc)

    def _fail(self, phase: str, info: ErrorInfo, status: Status) -> None:
        rec = self.record
        rec.status = status.value
        rec.failed_phase = phase
        rec.failure_class = info.failure_class
        rec.http_status = info.http_status
        rec.error_code = info.error_code
        rec.error_type = info.error_type
        rec.error_message = info.error_message

    def _arrive(self) -> None:
        if not self.arrived:
            self.arrived = True
            self.proc.note_phase1(self.idx, self.record)
            self.proc.gate.arrive()

    def _call(self, method, *args, timeout: float, linger_s: float = 0.0, must_send: bool = True,
              cancel_on_timeout: bool = True) -> "Outcome":
        """Run one adapter operation as a phase with a deadline; never raises.

        With an adapter whose exchanges are judged on the wire (``wire_verdicts``),
        the transport holds the deadline and this waits for its verdict: the
        answer, the provider's timeout (``NoAnswer``), or the generator's own
        failure. Otherwise the deadline is this greenlet's wait."""
        self.proc.in_flight += 1
        local_start = time.time()
        started = local_start - self.proc.clock_offset
        phase = verdict = None
        if self.provider.wire_verdicts:
            verdict = gevent.event.Event()
            phase = Phase(timeout, linger_s=linger_s, must_send=must_send, started=local_start,
                          on_timeout=self.provider.threadsafe(verdict.set))
        call = self.provider.start_call(method, *args, phase=phase)
        value = exc = None
        try:
            if phase is None:
                try:
                    value = call.wait(timeout)
                except TimeoutError:
                    if call.done:
                        raise  # the operation's own timeout error
                    raise NoAnswer(f"no answer within {timeout:g} s") from None
            else:
                self._await_verdict(call, phase, verdict, timeout)
                if call.done:
                    value = call.result()
                else:
                    raise NoAnswer(f"no answer on the wire within {timeout:g} s of the request")
        except BaseException as e:  # noqa: BLE001 - every failure is data
            exc = e
            if isinstance(e, (NoAnswer, GeneratorStalled)) and cancel_on_timeout:
                call.cancel()
        ended = self._now()
        self.proc.in_flight -= 1
        self.proc.calls_finished += 1
        return Outcome(value, exc, started, ended, call, phase)

    def _await_verdict(self, call, phase: Phase, verdict, timeout: float) -> None:
        """Until the call is done or the wire's deadline passed; GeneratorStalled if the transport
        did nothing for a whole window (see VERDICT_GRACE_S)."""
        window_s = 2 * timeout + VERDICT_GRACE_S
        for windows in range(1, VERDICT_MAX_WINDOWS + 1):
            finished_before = self.proc.calls_finished
            gevent.wait([call.waitable, verdict], count=1, timeout=window_s)
            if not (call.done or phase.timed_out):
                get_bridge().deliver()  # a verdict already in, behind the busy hub's queue
            if call.done or phase.timed_out:
                return
            if phase.wire_started is None and self.proc.calls_finished == finished_before:
                break  # not sent, and nothing else finished: stuck, not busy
        raise GeneratorStalled(f"no verdict from the transport within {windows * window_s:g} s: this process "
                               "was too busy to run it")

    def _classify(self, exc: BaseException) -> ErrorInfo:
        cause = generator_cause(exc)
        if cause is not None:  # the generator's own failure, whatever the SDK wrapped it in
            return generator_error_info(exc, cause)
        if isinstance(exc, NoAnswer):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, "TimeoutError", truncate(str(exc)))
        if isinstance(exc, CommandFailed):
            return ErrorInfo(FailureClass.OTHER.value, None,
                             f"exit_{exc.exit_code}" if exc.exit_code else "bad_output",
                             "CommandFailed", truncate(str(exc)))
        try:
            return self.provider.classify(exc)
        except Exception:  # a classifier bug must not lose the record
            return ErrorInfo(FailureClass.OTHER.value, None, None, type(exc).__name__, truncate(str(exc)))

    def _times(self, outcome: "Outcome", name: str, operation: str, handle: Any = None) -> tuple[float, float]:
        """Phase ``name``'s (start, end) for the record, and the generator's share of it.

        Wire times where the transport took them (connection set-up included
        for a command, whose host is the sandbox's own; not for the control
        plane's create and destroy), else the adapter's own ``wire_times``,
        else this greenlet's clock, which holds the SDK's work and this
        process's queueing too."""
        started, ended = outcome.started, outcome.ended
        offset = self.proc.clock_offset
        wire = None
        phase = outcome.phase
        if phase is not None:
            wire = self.provider.wire_span(phase, operation)
        elif outcome.exc is None:
            try:
                wire = self.provider.wire_times(handle, operation)
            except Exception:  # noqa: BLE001 - timing detail: never fail a phase over it
                wire = None
        if wire:
            sent, answered = wire[0] - offset, wire[1] - offset
            if started - CLOCK_SLACK_S <= sent <= answered <= ended + CLOCK_SLACK_S:
                self._generator_share(name, max(0.0, sent - started), max(0.0, ended - answered))
                return sent, answered
        if phase is not None and phase.wire_started is not None:
            # sent, but no answer in time (or none at all): the provider's part from its wire start
            sent = phase.wire_started - offset
            self._generator_share(name, max(0.0, sent - started), None)
            if phase.timed_out and phase.timeout_s is not None:
                return sent, max(sent, min(ended, sent + phase.timeout_s))
            return sent, max(sent, ended)
        if phase is not None and outcome.exc is not None and generator_cause(outcome.exc) is not None:
            self._generator_share(name, max(0.0, ended - started), None)  # held until given up
        return started, ended

    def _generator_share(self, name: str, before_s: Optional[float], after_s: Optional[float]) -> None:
        rec = self.record
        setattr(rec, f"{name}_gen_before_ms", None if before_s is None else round(before_s * 1000.0, 3))
        setattr(rec, f"{name}_gen_after_ms", None if after_s is None else round(after_s * 1000.0, 3))

    def _note_wire(self, outcome: "Outcome", setup_field: Optional[str] = None) -> None:
        """SYN retransmissions of the phase's connections, and (for commands) their set-up."""
        phase = outcome.phase
        if phase is None or not phase.exchanges:
            return
        rec = self.record
        rec.syn_retransmits = (rec.syn_retransmits or 0) + phase.syn_retransmits()
        if setup_field is not None:  # a window of several commands (the reuse probe's, then node -v) adds up
            setattr(rec, setup_field, round((getattr(rec, setup_field) or 0.0) + phase.setup_s() * 1000.0, 3))

    # -- the phases ----------------------------------------------------------
    def run(self) -> None:
        rec = self.record
        if not self._await_start():
            return
        rec.started_at = iso(self._now())
        try:
            if self._create() and self._probe("readiness"):
                self._arrive()
                ready_at = self._now()
                self.proc.held += 1
                try:
                    self.proc.gate.hold(self.idx, ready_at + self.proc.clock_offset, self.proc.abort)
                finally:
                    self.proc.held -= 1
                rec.hold_ms = ms_between(ready_at, self._now())
                if not self.provider.liveness_probe or self._probe("liveness"):
                    rec.status = Status.SUCCESS.value
        except BaseException as exc:  # noqa: BLE001 - a bug or a kill must still end in a record
            if rec.failure_class is None and rec.status != Status.SUCCESS.value:
                self._fail("lifecycle", self._classify(exc), Status(rec.status))
            log.exception("sandbox %s: unexpected error in the lifecycle", self.idx)
        finally:
            self._arrive()
            if self.handle is not None:
                self._destroy()
            self._note_lateness()
            rec.completed_at = iso(self._now())
            self.proc.emit(rec)

    def _await_start(self) -> bool:
        """Wait until the run's schedule says this sandbox is due (loadgen.engine.schedule).

        A run that ends before then creates nothing for it: the record says
        so (``not_started``) and the life is over."""
        scheduled = self.proc.starts.wait(self.idx, self.proc.abort)
        rec = self.record
        if scheduled is not None:
            self.scheduled_at = scheduled
            rec.scheduled_start_at = iso(scheduled)
            return True
        rec.started_at = rec.completed_at = iso(self._now())
        self._fail("create", ErrorInfo(FailureClass.OTHER.value, None, "not_started", None,
                                       "the run ended before this sandbox's scheduled start; nothing was created"),
                   Status.FAILED)
        self._arrive()
        self.proc.emit(rec)
        return False

    def _note_lateness(self) -> None:
        """How late the create really started against the schedule (coordinated omission made visible)."""
        rec = self.record
        if rec.create_started_at is not None and self.scheduled_at is not None:
            rec.start_lateness_ms = ms_between(self.scheduled_at, parse_iso(rec.create_started_at))

    def _create(self) -> bool:
        rec = self.record
        settings = self.proc.settings
        tags = {"run_id": self.proc.run_id, "sandbox_idx": str(self.idx)}
        outcome = self._call(self.provider.create, tags, timeout=settings.create_timeout_s,
                             linger_s=settings.late_create_window_s, must_send=False, cancel_on_timeout=False)
        handle, exc = outcome.value, outcome.exc
        late = exc is None and outcome.phase is not None and outcome.phase.timed_out
        started, ended = self._times(outcome, "create", "create", handle)
        self._note_wire(outcome)
        rec.create_started_at, rec.create_ended_at = iso(started), iso(ended)
        if late:  # answered, but on the wire after its deadline (the transport waited on for the sandbox)
            exc = NoAnswer(f"no answer on the wire within {settings.create_timeout_s:g} s of the request "
                           "(it came later)")
        self._fire("create", started, ended, exc)
        if exc is None:
            self._adopt(handle)
            rec.latency_ms = ms_between(started, ended)
            return True
        self._fail("create", self._classify(exc), Status.FAILED)
        if late:
            rec.late_create = True
            self._adopt(handle)
        elif isinstance(exc, (NoAnswer, GeneratorStalled)):
            # The provider may still make the sandbox: it arrived after our deadline,
            # so it counts as failed, but it must be destroyed, not leaked.
            self._arrive()
            self.proc.late_waiting += 1
            try:
                handle = outcome.call.wait(settings.late_create_window_s)
            except BaseException:  # noqa: BLE001 - no sandbox after all
                handle = None
            finally:
                self.proc.late_waiting -= 1
            if handle is not None:
                rec.late_create = True
                self._adopt(handle)
        return False

    def _adopt(self, handle: Any) -> None:
        self.handle = handle
        rec = self.record
        try:
            rec.sandbox_id = self.provider.sandbox_id(handle)
            rec.provider_metadata = scrub_metadata(self.provider.metadata(handle))
        except Exception:  # noqa: BLE001
            log.exception("sandbox %s: could not read the provider's sandbox object", self.idx)
        self.proc.created(self.idx, rec.sandbox_id)

    def _probe(self, phase: str) -> bool:
        rec = self.record
        settings = self.proc.settings
        probe_started = None
        if phase == "readiness" and settings.reuse_probe:
            probe_started = self._reuse_probe()
            if probe_started is None:
                return False
        # a wire-judged command has exactly its timeout; a greenlet-timed one gets a second more than
        # the SDK's own, so the SDK's answer (its timeout error included) is the one recorded
        timeout = settings.command_timeout_s + (0.0 if self.provider.wire_verdicts else 1.0)
        outcome = self._call(self.provider.run, self.handle, settings.readiness_command, settings.command_timeout_s,
                             timeout=timeout)
        result, exc = outcome.value, outcome.exc
        if exc is None:
            try:
                version = check_version_output(result) if self.provider.checks_version else (result.stdout or "")
                if phase == "readiness":
                    rec.readiness_output = truncate(version, OUTPUT_LIMIT)
            except CommandFailed as failed:
                exc = failed
        probe_held_before = getattr(rec, f"{phase}_gen_before_ms")
        started, ended = self._times(outcome, phase, "run", self.handle)
        self._note_wire(outcome, f"{phase}_setup_ms")
        if probe_started is not None:
            started = probe_started  # the reuse probe is inside the readiness window
            setattr(rec, f"{phase}_gen_before_ms", probe_held_before)  # and the window began with it
        setattr(rec, f"{phase}_started_at", iso(started))
        setattr(rec, f"{phase}_ended_at", iso(ended))
        self._fire(phase, started, ended, exc)
        if exc is None:
            if phase == "readiness":
                rec.first_command_ms = ms_between(started, ended)
            else:
                rec.liveness_ms = ms_between(started, ended)
            return True
        self._fail(phase, self._classify(exc),
                   Status.READINESS_FAILED if phase == "readiness" else Status.PARTIAL)
        return False

    def _reuse_probe(self) -> Optional[float]:
        """The identity/reuse probe (loadgen.engine.reuse_probe), first in the readiness window.

        Returns when it started, or None when the iteration failed there (the
        record says why: a reused container, or a probe that could not run)."""
        rec = self.record
        settings = self.proc.settings
        token = reuse_probe.marker_token(self.proc.run_id, self.idx)
        timeout = settings.command_timeout_s + (0.0 if self.provider.wire_verdicts else 1.0)
        outcome = self._call(self.provider.run, self.handle, reuse_probe.command(token), settings.command_timeout_s,
                             timeout=timeout)
        result, exc = outcome.value, outcome.exc
        started, ended = self._times(outcome, "readiness", "run", self.handle)
        self._note_wire(outcome, "readiness_setup_ms")
        if exc is None:
            rec.reuse_probe_ms = ms_between(started, ended)
            rec.sandbox_fingerprint = reuse_probe.parse(result.stdout, token)
            try:
                reuse_probe.verdict(result.exit_code, rec.sandbox_fingerprint)
                return started
            except reuse_probe.ProbeFailed as failed:
                exc, info = failed, failed.info
        else:
            info = self._classify(exc)
        rec.readiness_started_at, rec.readiness_ended_at = iso(started), iso(ended)
        self._fire("readiness", started, ended, exc)
        self._fail("readiness", info, Status.READINESS_FAILED)
        return None

    def _destroy(self) -> None:
        rec = self.record
        settings = self.proc.settings
        timeout = settings.destroy_timeout_s + (0.0 if self.provider.wire_verdicts else 1.0)
        outcome = self._call(self.provider.destroy, self.handle, settings.destroy_timeout_s, timeout=timeout)
        # A destroy this process could not make (out of descriptors or ports) never reached the
        # provider: try again until it does, or the leak would be the generator's doing. The
        # attempt recorded is the one that reached the wire, held by the generator since the first.
        first_started = outcome.started
        give_up = time.time() + max(settings.destroy_timeout_s, GENERATOR_RETRY_S)
        while outcome.exc is not None and generator_cause(outcome.exc) is not None and time.time() < give_up:
            gevent.sleep(GENERATOR_RETRY_INTERVAL_S)
            outcome = self._call(self.provider.destroy, self.handle, settings.destroy_timeout_s, timeout=timeout)
        outcome.started = first_started
        value, exc = outcome.value, outcome.exc
        started, ended = self._times(outcome, "destroy", "destroy", self.handle)
        self._note_wire(outcome)
        rec.destroy_started_at, rec.destroy_ended_at = iso(started), iso(ended)
        rec.destroy_ms = ms_between(started, ended)
        self._fire("destroy", started, ended, exc)
        if exc is None:
            rec.destroy_ok = True
            if value is False:
                # the provider says it was already gone: nothing leaks, but say so
                rec.destroy_error_message = "already gone (provider answered not found)"
            self.proc.destroyed(self.idx)
        else:
            info = self._classify(exc)
            rec.destroy_ok = False
            rec.destroy_failure_class = info.failure_class
            rec.destroy_error_message = info.error_message
            self._retry_destroy()

    def _retry_destroy(self) -> None:
        """A destroy failed: try again, --destroy-retries times at most, 1 s, 2 s, 4 s ... apart.

        The first attempt stays what the record measures (``destroy_*``, and
        the destroy distribution); each retry goes beside it in
        ``destroy_retries``, timed by this greenlet's clock. A transient
        refusal (a 5xx once) then costs a few seconds instead of a sandbox
        left alive until it expires."""
        settings = self.proc.settings
        for wait in destroy_retry_waits(settings.destroy_retries):
            gevent.sleep(wait)  # not cut short by an abort: an abort ends holds, not destroys
            outcome = self._call(self.provider.destroy, self.handle, settings.destroy_timeout_s,
                                 timeout=settings.destroy_timeout_s + (0.0 if self.provider.wire_verdicts else 1.0))
            value, exc, started, ended = outcome.value, outcome.exc, outcome.started, outcome.ended
            attempt = {"started_at": iso(started), "ended_at": iso(ended), "ms": ms_between(started, ended),
                       "ok": exc is None}
            if exc is not None:
                info = self._classify(exc)
                attempt.update(failure_class=info.failure_class, error_message=info.error_message)
            elif value is False:
                attempt["already_gone"] = True
            self.record.destroy_retries.append(attempt)
            if exc is None:
                self.proc.destroyed(self.idx)
                return


class Outcome:
    """What one phase's call gave: its value or exception, the greenlet's clock, and the wire's view."""

    __slots__ = ("value", "exc", "started", "ended", "call", "phase")

    def __init__(self, value, exc, started, ended, call, phase):
        self.value, self.exc, self.started, self.ended, self.call, self.phase = value, exc, started, ended, call, phase
