"""One lifecycle phase as the wire saw it: its deadline, and each exchange the SDK made inside it.

The lifecycle opens a phase (create, readiness, liveness, destroy) with a
timeout; the adapter's SDK makes one or more HTTP exchanges inside it on
loadgen's timed transport (``loadgen.net.wirehttp``). This module is the
contract between the two, carried in a context variable so that no SDK code
has to pass it along:

- ``Phase``: when the phase began on the generator, its timeout, how long a
  late answer is still worth waiting for (a create's, so that the sandbox it
  made is destroyed), and whether the request may be abandoned when the
  generator could not send it in time (never a destroy's).
- ``Exchange``: what the transport saw of one exchange: when the request went
  out, when the answer's last byte reached this host (the kernel's stamp),
  the connection set-up as the kernel saw it (retransmitted SYNs included)
  and how many SYNs were retransmitted.

Verdicts are the wire's. The provider had ``timeout_s`` from the moment its
part began: the connection's first SYN, or the request's first byte on a
connection already open. An answer that arrived in time is the answer, however
late this process read it; an answer that did not arrive in time is the
provider's timeout; a request this process could not put on the wire before
the phase's deadline is the generator's failure (``NotSent``).
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from loadgen.result import GeneratorFailure

_current: contextvars.ContextVar = contextvars.ContextVar("loadgen_phase", default=None)


class NotSent(GeneratorFailure):
    """The generator could not put the request on the wire before the phase's deadline."""


class Exchange:
    """One request and its answer, epoch seconds on this host's clock."""

    __slots__ = ("sent", "answered", "setup_s", "syn_retransmits", "late")

    def __init__(self, sent: float, answered: Optional[float], setup_s: float = 0.0, syn_retransmits: int = 0,
                 late: bool = False):
        self.sent = sent  # the request's first byte went to the kernel
        self.answered = answered  # the kernel had the answer's last byte; None: no (complete) answer
        self.setup_s = setup_s  # the new connection's set-up as the kernel saw it; 0.0 on a reused one
        self.syn_retransmits = syn_retransmits
        self.late = late  # the answer came after the phase's deadline

    @property
    def wire_started(self) -> float:
        """When the provider's part began: the connection's first SYN (as the kernel saw the
        handshake), or the request's first byte on a connection already open."""
        return self.sent - self.setup_s

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Exchange(sent={self.sent:.6f}, answered={self.answered}, setup_s={self.setup_s:.6f}, "
                f"syn_retransmits={self.syn_retransmits}, late={self.late})")


class Phase:
    """A phase's budget (set by the lifecycle) and its exchanges (recorded by the transport).

    ``timeout_s`` None means no budget: the transport applies only the
    timeout its caller passes (a test, ``loadgen reap``). The transport may
    run on another thread (the asyncio bridge): ``on_timeout`` must be safe
    to call from there."""

    __slots__ = ("started", "timeout_s", "linger_s", "must_send", "exchanges", "wire_started", "timed_out",
                 "on_timeout")

    def __init__(self, timeout_s: Optional[float] = None, *, linger_s: float = 0.0, must_send: bool = True,
                 started: Optional[float] = None, on_timeout: Optional[Callable[[], None]] = None):
        self.started = time.time() if started is None else started
        self.timeout_s = timeout_s
        self.linger_s = linger_s
        self.must_send = must_send
        self.exchanges: list[Exchange] = []
        self.wire_started: Optional[float] = None
        self.timed_out = False
        self.on_timeout = on_timeout

    # -- what the transport asks --------------------------------------------
    def send_deadline(self) -> Optional[float]:
        """The latest time a request of this phase may still be sent, or None for "always send"."""
        if self.must_send or self.timeout_s is None or self.wire_started is not None:
            return None
        return self.started + self.timeout_s

    def verdict_deadline(self, wire_started: float, timeout_s: Optional[float]) -> Optional[float]:
        """When the provider's time is up: the phase's timeout from its first exchange's wire start
        (later exchanges of the same phase share it), else the caller's own timeout."""
        if self.timeout_s is not None:
            return (self.wire_started if self.wire_started is not None else wire_started) + self.timeout_s
        return None if timeout_s is None else wire_started + timeout_s

    def began(self, wire_started: float) -> None:
        if self.wire_started is None:
            self.wire_started = wire_started

    def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def time_is_up(self) -> None:
        """The deadline passed with no complete answer: the provider's timeout, whatever comes later."""
        if not self.timed_out:
            self.timed_out = True
            if self.on_timeout is not None:
                self.on_timeout()

    # -- what the lifecycle reads -------------------------------------------
    def span(self, include_setup: bool = True, every_gap_is_generators: bool = False
             ) -> Optional[tuple[float, float]]:
        """(start, last answer) of the phase's exchanges, when every one was answered.

        The start is the first exchange's wire start, its connection's set-up
        included (a sandbox's own host, new to this client: part of what the
        provider makes a command cost), or, with ``include_setup=False``, its
        request's first byte (a control plane's connection is the client's,
        pooled and reused; its set-up says nothing about the operation).

        A phase of several exchanges (a create and its wait, a command and its
        output stream) runs from the first one's start to the last answer,
        less the gaps that were the generator's. A gap between an answer and
        the next request is the SDK's work and this process's queueing; the
        provider's work may go on through it (a long poll, a stream that waits
        for a command's end), or may be over (a wait answered at once). The
        wire tells them apart by the exchange after the gap: one that took
        longer than the gap was still waiting for the provider, so the gap is
        the provider's time too and counts; one quicker than the gap found the
        work done, so the gap is the generator's and is left out (the start
        moves later by it: the lifecycle then counts it in the generator's
        share before the phase). Either way the figure is off by at most a
        gap: high by a gap shorter than a round trip, or low when a long poll
        sent late had less left to wait than the generator's delay.

        ``every_gap_is_generators``: for an operation whose exchanges each
        begin once the one before has been answered, with the provider holding
        nothing between them (modal's command: its output is answered once the
        command has ended, its wait then at once), every gap is the
        generator's, and the span is the union of the exchanges'. The rule
        above would be wrong there: after a stall a burst of waits queues at
        the server, so the exchange after a gap is slow for the server's own
        reasons, and the generator's gap before it would count."""
        exchanges = self.exchanges
        if not exchanges or any(x.answered is None for x in exchanges):
            return None
        if len(exchanges) == 1:
            first = exchanges[0]
            return (first.wire_started if include_setup else first.sent), first.answered
        intervals = sorted(((x.wire_started if include_setup else x.sent), x.answered) for x in exchanges)
        provider_s = 0.0
        start, end = intervals[0]
        for begin, finish in intervals[1:]:
            gap = begin - end
            if gap > 0 and (every_gap_is_generators or finish - begin < gap):  # the generator's gap
                provider_s += end - start
                start = begin
            end = max(end, finish)
        provider_s += end - start
        return end - provider_s, end

    def setup_s(self) -> float:
        return sum(x.setup_s for x in self.exchanges)

    def syn_retransmits(self) -> int:
        return sum(x.syn_retransmits for x in self.exchanges)


def current() -> Optional[Phase]:
    """The phase the running code belongs to, if any."""
    return _current.get()


@contextmanager
def within(phase: Phase) -> Iterator[Phase]:
    """Run a block (an SDK call) as part of ``phase``."""
    token = _current.set(phase)
    try:
        yield phase
    finally:
        _current.reset(token)


@contextmanager
def recording() -> Iterator[Phase]:
    """The current phase, or, outside any (an adapter called directly), a bare one for the block:
    either way the block's exchanges are recorded on what this yields."""
    phase = _current.get()
    if phase is not None:
        yield phase
        return
    with within(Phase()) as bare:
        yield bare


async def run_within(phase: Phase, coroutine):
    """Await ``coroutine`` as part of ``phase`` (the bridge runs this as the call's task)."""
    with within(phase):
        return await coroutine
