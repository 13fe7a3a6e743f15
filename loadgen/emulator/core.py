"""The provider-neutral core: every sandbox's state, the behaviour model, and
the ground-truth record.

Faces (one per provider protocol, in `faces/`) translate wire requests into
four calls: `create`, `exec`, `kill` and `get`. The core decides everything a
real provider decides (latency, limits, faults, lifetime) and tells the face
what happened through an outcome passed to a reply callback; the face only
decides how that outcome looks on its wire. Nothing here knows about HTTP,
JSON or gRPC, so new faces slot in without touching this module.

Replies are callbacks scheduled on the event loop (`call_later`), not
coroutines: the emulator must answer thousands of requests a second on one
core, and a timer per answer is the cheapest way to hold an answer back.

Reproducibility: each create gets its own RNG, seeded from (seed, the client's
`run_id` and `sandbox_idx` metadata) or, without them, from (seed, arrival
number). All of a sandbox's fault decisions are drawn first, in a fixed order,
so a sandbox's fate depends neither on the interleaving of requests nor on
which other faults are switched on.

Length: this module is the one model of a sandbox's state and fate that every
face shares (state machine, behaviour draws, ground truth); splitting it would
spread one sandbox's rules over several files.
"""

from __future__ import annotations

import collections
import itertools
import random
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from loadgen.emulator import shell
from loadgen.emulator.latency import Latency
from loadgen.emulator.limits import Capacity, TokenBucket

# Sandbox states. A create request that never made a sandbox ends in one of
# the last three.
REQUESTED, RUNNING, KILLED, EXPIRED, DIED = "requested", "running", "killed", "expired", "died"
FAILED, REJECTED, HUNG = "failed", "rejected", "hung"
ENDED_STATES = (KILLED, EXPIRED, DIED)

# Faults as they appear in the ground-truth record.
F_CREATE_5XX = "create_5xx"
F_CREATE_HANG = "create_hang"
F_RESET = "reset"
F_READINESS = "readiness_fail"
F_DIED = "died"
F_KILL = "kill_fail"
F_REUSED = "container_reused"
F_RATE_LIMITED = "rate_limited"
F_CAPACITY = "capacity"

# Outcome kinds a face translates.
OK = "ok"
NOT_FOUND = "not_found"  # no such sandbox was ever created
GONE = "gone"  # the sandbox existed but is killed, expired or died
ERROR = "error"  # server-side failure (5xx / stream error)
HANG = "hang"
RESET = "reset"
STARTED = "started"
ENDED = "ended"

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class Sandbox:
    """One create request and, if it made one, its sandbox: live state plus
    the ground-truth record served by /_emulator/sandboxes."""

    __slots__ = (
        "seq", "provider", "sandbox_id", "metadata", "template", "lifetime_s", "state",
        "fault", "faults", "status", "t_received", "t_answered", "t_kill_received",
        "t_kill_answered", "t_ended", "execs", "key", "u", "delay", "id_bits", "exec_count",
        "kill_count", "timer", "active", "epoch", "token", "container", "waits",
    )

    def to_dict(self) -> dict:
        return {
            "seq": self.seq,
            "provider": self.provider,
            "sandbox_id": self.sandbox_id,
            "metadata": self.metadata,
            "template": self.template,
            "lifetime_s": self.lifetime_s,
            "state": self.state,
            "fault": self.fault,
            "faults": self.faults,
            "status": self.status,
            "t_received": self.t_received,
            "t_answered": self.t_answered,
            "t_kill_received": self.t_kill_received,
            "t_kill_answered": self.t_kill_answered,
            "t_ended": self.t_ended,
            "create_latency_ms": None if self.delay is None else round(self.delay * 1000.0, 3),  # the drawn latency
            "execs": [dict(e) for e in self.execs],
            "container": self.container.name if self.container is not None else None,
            # a face's follow-up wait on the create or the kill: {"create"|"destroy": [received, answered]}
            "waits": self.waits,
        }


class CreateOutcome:
    __slots__ = ("kind", "sandbox", "retry_after_s", "fault")

    def __init__(self, kind: str, sandbox: Sandbox, retry_after_s: float = 0.0, fault: Optional[str] = None):
        self.kind = kind
        self.sandbox = sandbox
        self.retry_after_s = retry_after_s
        self.fault = fault


class ExecEvent:
    """kind: NOT_FOUND / GONE (refused before start), STARTED (pid), ENDED
    (result), ERROR (stream broke after start: code + message)."""

    __slots__ = ("kind", "pid", "result", "code", "message")

    def __init__(self, kind: str, pid: int = 0, result: Optional[shell.CommandResult] = None,
                 code: str = "", message: str = ""):
        self.kind = kind
        self.pid = pid
        self.result = result
        self.code = code
        self.message = message


class KillOutcome:
    __slots__ = ("kind", "sandbox")

    def __init__(self, kind: str, sandbox: Optional[Sandbox]):
        self.kind = kind
        self.sandbox = sandbox


class _Exec:
    """A command in flight, so that a sandbox that ends can break its stream."""

    __slots__ = ("entry", "reply", "timer", "first")


Scheduler = Callable[..., Any]  # call_later(delay, fn, *args) -> handle with .cancel()


class Core:
    def __init__(self, settings: Dict[str, Any], call_later: Scheduler, monotonic: Callable[[], float],
                 wallclock: Callable[[], float] = time.time):
        self.settings = dict(settings)
        self._call_later = call_later
        self._monotonic = monotonic
        self._now = wallclock
        s = self.settings
        self.seed = int(s["seed"])
        self.create_latency = Latency(s["create_latency"])
        self.exec_latency = Latency(s["exec_latency"])
        self.kill_latency = Latency(s["kill_latency"])
        self._zero_create = self.create_latency.kind == "constant" and self.create_latency.mean() == 0
        self._zero_exec = self.exec_latency.kind == "constant" and self.exec_latency.mean() == 0
        self._zero_kill = self.kill_latency.kind == "constant" and self.kill_latency.mean() == 0
        self.p_5xx = s["fault_create_5xx"]
        self.p_hang = s["fault_create_hang"]
        self.p_reset = s["fault_reset"]
        self.p_ready = s["fault_readiness"]
        self.ready_mode = s["readiness_fail_mode"]
        self.p_died = s["fault_died"]
        self.died_delay_s = s["died_delay_s"]
        self.p_kill = s["fault_kill"]
        # transient: only a faulty sandbox's first kill_fail_count kills fail (a retry then succeeds)
        self.kill_fail_limit = s["kill_fail_count"] if s["kill_fail_mode"] == "transient" else None
        self.p_reuse = s["fault_reuse"]
        self.default_lifetime_s = s["default_lifetime_s"]
        self.max_lifetime_s = s["max_lifetime_s"]
        self.node_version = s["node_version"]
        self.reset()

    # -- bookkeeping -------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: records, counters, limits. Timers of the old
        epoch still fire (answers already promised are still sent) but no
        longer touch the new epoch's state or counters."""
        old = getattr(self, "by_id", {})
        for sb in old.values():
            if sb.timer is not None:
                sb.timer.cancel()
                sb.timer = None
        # Creates still queued belong to the old epoch: refuse them rather
        # than leave their clients waiting forever.
        for sb, reply in getattr(self, "queue", ()):
            sb.state = REJECTED
            reply(CreateOutcome(REJECTED, sb, 1.0, F_CAPACITY))
        self.epoch = getattr(self, "epoch", 0) + 1
        self.records: List[Sandbox] = []
        self.by_id: Dict[str, Sandbox] = {}
        self.live = 0
        self._seq = 0
        self._pids = itertools.count(1000)
        self._exec_order = itertools.count()
        self.queue: Deque[Tuple[Sandbox, Callable]] = collections.deque()
        s = self.settings
        self.capacity = Capacity(s["capacity"])
        self.bucket = (TokenBucket(s["rate_limit_per_s"], s["rate_limit_burst"], self._monotonic)
                       if s["rate_limit_per_s"] else None)
        self.totals = dict.fromkeys(
            ("created", "killed", "expired", "died", "rejected", "failed", "hung"), 0)
        self.ops = {
            "create": dict.fromkeys(("requests", "ok", "rejected", "queued", "failed", "hung"), 0),
            "exec": dict.fromkeys(("requests", "ok", "nonzero_exit", "failed", "not_found", "gone"), 0),
            "kill": dict.fromkeys(("requests", "ok", "not_found", "failed"), 0),
            "get": dict.fromkeys(("requests", "ok", "not_found", "gone"), 0),
        }
        self.errors = dict.fromkeys(("bad_request", "unauthorized", "not_found"), 0)
        self.reset_at = self._now()
        self._previous_container: Optional[shell.Container] = None

    def note_error(self, kind: str) -> None:
        """Faces count requests they refused before reaching the core."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def stats(self) -> dict:
        t = self.totals
        return {
            "live": self.live,
            "created": t["created"],
            "killed": t["killed"],
            "expired": t["expired"],
            "died": t["died"],
            "rejected": t["rejected"],
            "failed": t["failed"],
            "hung": t["hung"],
            "queued": len(self.queue),
            "in_flight": self.capacity.used - self.live,
            "requests": len(self.records),
            "ops": {k: dict(v) for k, v in self.ops.items()},
            "errors": dict(self.errors),
            "since": self.reset_at,
            "settings": self.settings,
        }

    def _key(self, metadata: Any, seq: int) -> str:
        """The seed of a sandbox's draws: (seed, run_id, sandbox_idx) when the
        client sent them, else (seed, arrival number)."""
        run_id = sandbox_idx = None
        if isinstance(metadata, dict):
            run_id = metadata.get("run_id")
            sandbox_idx = metadata.get("sandbox_idx")
        if run_id is not None and sandbox_idx is not None:
            return f"{self.seed}|{run_id}|{sandbox_idx}"
        return f"{self.seed}|#{seq}"

    def _arrival(self, received_at: Optional[float]) -> tuple:
        """(now, when the request arrived): the face's kernel time where it has one, else now."""
        now = self._now()
        return now, (now if received_at is None or received_at > now else received_at)

    def _later(self, delay: float, fn: Callable, *args: Any) -> Any:
        if delay <= 0:
            fn(*args)
            return None
        return self._call_later(delay, fn, *args)

    # -- create ------------------------------------------------------------

    def create(self, provider: str, metadata: Any, template: Optional[str], lifetime_s: Optional[float],
               reply: Callable[[CreateOutcome], None], received_at: Optional[float] = None) -> Sandbox:
        """Start a create. `reply` is called once with the outcome (maybe
        before this returns), or never for a hang. `received_at` is when the
        request reached this host (the kernel's time); the drawn latency runs
        from then, so the emulator's own queueing is not service time."""
        sb = Sandbox()
        sb.seq = seq = self._seq
        self._seq = seq + 1
        sb.provider = provider
        sb.sandbox_id = None
        sb.metadata = metadata
        sb.template = template
        sb.lifetime_s = self.default_lifetime_s if lifetime_s is None else float(lifetime_s)
        sb.state = REQUESTED
        sb.fault = None
        sb.faults = []
        sb.status = None
        now, sb.t_received = self._arrival(received_at)
        sb.t_answered = sb.t_kill_received = sb.t_kill_answered = sb.t_ended = None
        sb.execs = []
        sb.exec_count = sb.kill_count = 0
        sb.timer = None
        sb.active = None
        sb.epoch = self.epoch
        sb.token = None
        sb.container = None
        sb.waits = None
        # Every draw of the create is made now, in a fixed order (create_5xx,
        # hang, reset, readiness, died, kill, create latency, id), and no RNG
        # is kept: 100,000 live Random objects would cost 250 MB. Later draws
        # (exec and kill latency) get RNGs derived from the key and the
        # operation's number on this sandbox.
        sb.key = self._key(metadata, seq)
        rng = random.Random(sb.key)
        r = rng.random
        sb.u = (r(), r(), r(), r(), r(), r())
        sb.delay = 0.0 if self._zero_create else self.create_latency.sample(rng)
        sb.id_bits = rng.getrandbits(100)
        self.records.append(sb)
        ops = self.ops["create"]
        ops["requests"] += 1

        if self.bucket is not None:
            wait = self.bucket.take()
            if wait is not None:
                self._refuse(sb, F_RATE_LIMITED, wait, reply)
                return sb
        if not self.capacity.try_acquire():
            if self.settings["capacity_mode"] == "queue":
                ops["queued"] += 1
                self.queue.append((sb, reply))
                return sb
            self._refuse(sb, F_CAPACITY, 1.0, reply)
            return sb
        self._admit(sb, reply, now - sb.t_received)
        return sb

    def _refuse(self, sb: Sandbox, fault: str, retry_after_s: float, reply: Callable) -> None:
        sb.state = REJECTED
        sb.fault = fault
        sb.faults.append(fault)
        sb.t_answered = self._now()
        self.totals["rejected"] += 1
        self.ops["create"]["rejected"] += 1
        reply(CreateOutcome(REJECTED, sb, retry_after_s, fault))

    def _admit(self, sb: Sandbox, reply: Callable, waited: float = 0.0) -> None:
        delay = sb.delay - waited
        u = sb.u
        if u[1] < self.p_hang:
            # Never answered; no sandbox is made, so the slot is free again.
            sb.state = HUNG
            sb.fault = F_CREATE_HANG
            sb.faults.append(F_CREATE_HANG)
            self.totals["hung"] += 1
            self.ops["create"]["hung"] += 1
            self._release_slot()
            return
        self._later(delay, self._answer_create, sb, reply)

    def _answer_create(self, sb: Sandbox, reply: Callable) -> None:
        current = sb.epoch == self.epoch
        u = sb.u
        sb.t_answered = self._now()
        fault = F_CREATE_5XX if u[0] < self.p_5xx else F_RESET if u[2] < self.p_reset else None
        if fault is not None:
            sb.state = FAILED
            sb.fault = fault
            sb.faults.append(fault)
            if current:
                self.totals["failed"] += 1
                self.ops["create"]["failed"] += 1
                self._release_slot()
            reply(CreateOutcome(ERROR if fault == F_CREATE_5XX else RESET, sb, 0.0, fault))
            return
        sb.sandbox_id = self._new_id(sb.id_bits)
        sb.state = RUNNING
        if current:
            self.by_id[sb.sandbox_id] = sb
            self.live += 1
            self.totals["created"] += 1
            self.ops["create"]["ok"] += 1
            sb.timer = self._call_later(max(0.0, sb.lifetime_s), self._expire, sb)
            if self.p_reuse > 0:
                self._hand_container(sb)
        reply(CreateOutcome(OK, sb))

    def _new_id(self, n: int) -> str:
        chars = []
        for _ in range(20):
            n, d = divmod(n, 36)
            chars.append(_ID_ALPHABET[d])
        sid = "i" + "".join(chars)
        if sid in self.by_id:  # the same run_id/sandbox_idx created twice
            sid = f"{sid}{self._seq:x}"
        return sid

    def _container(self, sb: Sandbox) -> shell.Container:
        """The sandbox's inside, made when a command first needs it (most runs never do)."""
        if sb.container is None:
            sb.container = shell.Container(sb.sandbox_id, f"{sb.key}|container")
        return sb.container

    def _hand_container(self, sb: Sandbox) -> None:
        """fault_reuse: the container of the sandbox created just before, running or not, if the draw says so."""
        previous = self._previous_container
        if previous is not None and random.Random(f"{sb.key}|reuse").random() < self.p_reuse:
            sb.container = previous
            sb.fault = sb.fault or F_REUSED
            sb.faults.append(F_REUSED)
        self._previous_container = self._container(sb)

    def _release_slot(self) -> None:
        self.capacity.release()
        while self.queue:
            sb, reply = self.queue.popleft()
            if not self.capacity.try_acquire():
                self.queue.appendleft((sb, reply))
                return
            self._admit(sb, reply)

    def _end(self, sb: Sandbox, state: str) -> None:
        """A running sandbox stops: free its slot, break its open streams."""
        if sb.state != RUNNING:
            return
        sb.state = state
        sb.t_ended = self._now()
        if sb.timer is not None:
            sb.timer.cancel()
            sb.timer = None
        if sb.epoch != self.epoch:
            return
        self.live -= 1
        self.totals[state] += 1
        active = sb.active
        if active:
            sb.active = None
            for ex in list(active):
                if ex.timer is not None:
                    ex.timer.cancel()
                ex.entry["t_end"] = sb.t_ended
                ex.entry["error"] = "sandbox ended"
                ex.reply(ExecEvent(ERROR, code="unavailable",
                                   message=f"the connection to sandbox {sb.sandbox_id} ended before the stream completed"))
        self._release_slot()

    def _expire(self, sb: Sandbox) -> None:
        sb.timer = None
        self._end(sb, EXPIRED)

    def _die(self, sb: Sandbox) -> None:
        if sb.state == RUNNING:
            sb.fault = sb.fault or F_DIED
            sb.faults.append(F_DIED)
            self._end(sb, DIED)

    # -- get ---------------------------------------------------------------

    def note_wait(self, sb: Sandbox, received_at: Optional[float]) -> None:
        """A face answered a wait that follows a create or a kill (an SDK's poll until the sandbox is
        running, or gone): the first of each is kept in the ground truth, so that an operation of two
        exchanges has its whole service time there (``waits``)."""
        operation = "create" if sb.t_kill_received is None else "destroy"
        if sb.waits is None:
            sb.waits = {}
        if operation not in sb.waits:
            now, arrived = self._arrival(received_at)
            sb.waits[operation] = [arrived, now]

    def get(self, sandbox_id: str) -> Tuple[str, Optional[Sandbox]]:
        """(OK | GONE | NOT_FOUND, sandbox): the state as the provider would
        report it right now."""
        ops = self.ops["get"]
        ops["requests"] += 1
        sb = self.by_id.get(sandbox_id)
        if sb is None:
            ops["not_found"] += 1
            return NOT_FOUND, None
        if sb.state != RUNNING:
            ops["gone"] += 1
            return GONE, sb
        ops["ok"] += 1
        return OK, sb

    # -- exec --------------------------------------------------------------

    def exec(self, sandbox_id: str, command: str, reply: Callable[[ExecEvent], None],
             received_at: Optional[float] = None) -> None:
        """Run a command. `reply` gets NOT_FOUND or GONE, or STARTED then
        ENDED (or ERROR when the stream breaks). `received_at` as for create:
        the command's `t_start` and its latency run from the arrival."""
        ops = self.ops["exec"]
        ops["requests"] += 1
        sb = self.by_id.get(sandbox_id)
        if sb is None:
            ops["not_found"] += 1
            reply(ExecEvent(NOT_FOUND))
            return
        if sb.state != RUNNING:
            ops["gone"] += 1
            reply(ExecEvent(GONE))
            return
        n = sb.exec_count
        sb.exec_count = n + 1
        now, arrived = self._arrival(received_at)
        # t_start: the command's arrival (kernel stamp, a jiffy of resolution); order: when this
        # emulator took it up, among all commands (what two commands a jiffy apart are ordered by)
        entry = {"command": command, "t_start": arrived, "order": next(self._exec_order), "t_end": None,
                 "exit_code": None, "error": None}
        sb.execs.append(entry)
        ex = _Exec()
        ex.entry = entry
        ex.reply = reply
        ex.timer = None
        ex.first = n == 0
        if sb.active is None:
            sb.active = set()
        sb.active.add(ex)
        if self._zero_exec:
            self._exec_start(sb, ex, command)
        else:
            rng = random.Random(f"{sb.key}|exec|{n}")
            delay = self.exec_latency.sample(rng) - (now - arrived)
            if delay > 0:
                ex.timer = self._call_later(delay, self._exec_start, sb, ex, command)
            else:
                self._exec_start(sb, ex, command)

    def _exec_start(self, sb: Sandbox, ex: _Exec, command: str) -> None:
        ex.timer = None
        if sb.state != RUNNING:  # ended during the latency; _end already replied
            return
        ex.reply(ExecEvent(STARTED, pid=next(self._pids)))
        if ex.first and sb.u[3] < self.p_ready:
            sb.fault = sb.fault or F_READINESS
            sb.faults.append(F_READINESS)
            if self.ready_mode == "stream_error":
                self._exec_finish(sb, ex, None, ("internal", "failed to start process: emulated readiness fault"))
                return
            result = shell.CommandResult(b"", b"bash: line 1: emulated readiness fault\n", 1, 0.0)
        else:
            result = shell.run(command, self.node_version, lambda: self._container(sb))
        if result.duration_s > 0:
            ex.timer = self._call_later(result.duration_s, self._exec_finish, sb, ex, result, None)
        else:
            self._exec_finish(sb, ex, result, None)

    def _exec_finish(self, sb: Sandbox, ex: _Exec, result: Optional[shell.CommandResult],
                     error: Optional[Tuple[str, str]]) -> None:
        ex.timer = None
        if sb.state != RUNNING:
            return
        if sb.active is not None:
            sb.active.discard(ex)
        entry = ex.entry
        entry["t_end"] = self._now()
        ops = self.ops["exec"]
        if error is not None:
            entry["error"] = error[1]
            ops["failed"] += 1
            ex.reply(ExecEvent(ERROR, code=error[0], message=error[1]))
        else:
            entry["exit_code"] = result.exit_code
            ops["ok" if result.exit_code == 0 else "nonzero_exit"] += 1
            ex.reply(ExecEvent(ENDED, result=result))
        if ex.first and sb.u[4] < self.p_died:
            self._later(self.died_delay_s, self._die, sb)

    # -- kill --------------------------------------------------------------

    def kill(self, sandbox_id: str, reply: Callable[[KillOutcome], None],
             received_at: Optional[float] = None) -> None:
        """Kill a sandbox; `received_at` as for create (the kill latency runs from the arrival)."""
        ops = self.ops["kill"]
        ops["requests"] += 1
        sb = self.by_id.get(sandbox_id)
        if sb is None:
            ops["not_found"] += 1
            reply(KillOutcome(NOT_FOUND, None))
            return
        now, arrived = self._arrival(received_at)
        if sb.t_kill_received is None:
            sb.t_kill_received = arrived
        n = sb.kill_count
        sb.kill_count = n + 1
        if self._zero_kill:
            self._answer_kill(sb, reply, n)
        else:
            rng = random.Random(f"{sb.key}|kill|{n}")
            self._later(self.kill_latency.sample(rng) - (now - arrived), self._answer_kill, sb, reply, n)

    def _answer_kill(self, sb: Sandbox, reply: Callable, n: int = 0) -> None:
        """Answer kill number ``n`` (0 for the first) of this sandbox."""
        ops = self.ops["kill"]
        if sb.state != RUNNING:
            ops["not_found"] += 1
            reply(KillOutcome(GONE, sb))
            return
        sb.t_kill_answered = self._now()
        if sb.u[5] < self.p_kill and (self.kill_fail_limit is None or n < self.kill_fail_limit):
            sb.fault = sb.fault or F_KILL
            sb.faults.append(F_KILL)
            ops["failed"] += 1
            reply(KillOutcome(ERROR, sb))
            return
        ops["ok"] += 1
        self._end(sb, KILLED)
        reply(KillOutcome(OK, sb))
