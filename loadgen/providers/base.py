"""The provider adapter contract.

An adapter is the only provider-specific code in a run: it turns the four
lifecycle operations into calls of the provider's official SDK, and the SDK's
exceptions into the shared taxonomy. Everything else (timing, timeouts, the
barrier, records, late-create cleanup) is the lifecycle's job, so a new
provider is one small file.

An adapter's operations are either coroutines (set ``asynchronous = True``;
they run on the process's asyncio bridge, see loadgen.net.aio) or plain
functions that cooperate with gevent (the SDK does its I/O over gevent's
monkey-patched sockets). Never a function that blocks the hub.

Rules every adapter keeps (they are what makes the numbers honest):
- SDK retries off: a retry inside the SDK would hide the very failure we measure.
- The sandbox lifetime is longer than the run, so nothing expires mid-hold.
- No connection pool capped below the number of users in the process.
- The create carries ``tags`` (run_id, sandbox_idx) wherever the provider takes metadata or labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import gevent

from loadgen.net import exchange
from loadgen.net.aio import Pending, get_bridge
from loadgen.result import ErrorInfo, classify_exception


@dataclass
class CommandResult:
    exit_code: Optional[int]
    stdout: str = ""
    stderr: str = ""


@dataclass
class ProviderSettings:
    """What the lifecycle tells an adapter about the run (from the Locust options)."""

    template: Optional[str] = None
    sandbox_lifetime_s: int = 3600
    create_timeout_s: float = 60.0
    command_timeout_s: float = 30.0
    destroy_timeout_s: float = 30.0
    late_create_window_s: float = 120.0
    users_in_process: int = 1000
    base_url: Optional[str] = None  # only for emulated runs (locustfiles/local.py)


def attributes(obj: Any, names: tuple[str, ...], **fixed: Any) -> dict:
    """The named attributes of an SDK object that are set (enums by value), for provider_metadata."""
    info = dict(fixed)
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            info[name] = getattr(value, "value", value)
    return info


HTTP2_ENV = "LOADGEN_HTTP2"


def http2_requested() -> bool:
    """``LOADGEN_HTTP2=1``: adapters whose SDK can speak HTTP/2 speak it (off by default, as in the SDKs).

    Each adapter says what that means for its SDK (httpx: prior knowledge on an
    ``http://`` URL, ALPN on ``https://``)."""
    return os.environ.get(HTTP2_ENV, "").lower() in ("1", "true", "yes")


def transport_choice(variable: str) -> str:
    """The HTTP transport an adapter's SDK sends on: ``wire`` (loadgen.net's timed client, the default)
    or ``sdk`` (the SDK's own, from ``variable`` = ``sdk``, or with ``LOADGEN_HTTP2=1``: these adapters'
    timed pools speak HTTP/1.1 only, so HTTP/2 is the SDK's transport)."""
    if os.environ.get(variable, "").strip().lower() == "sdk" or http2_requested():
        return "sdk"
    return "wire"


def httpx_versions(base_url: Optional[str]) -> dict:
    """httpx's ``http1``/``http2`` switches for a client of ``base_url``: HTTP/1.1 unless HTTP/2 was asked for;
    then ALPN chooses over TLS (the SDK's default URL is https), and a cleartext URL gets HTTP/2 with prior
    knowledge (as Runloop's Node SDK does)."""
    if not http2_requested():
        return {"http1": True, "http2": False}
    return {"http1": not (base_url or "").startswith("http://"), "http2": True}


class MissingCredentials(Exception):
    """Raised at start when a provider's environment variables are not set. Names them, never their values."""

    def __init__(self, provider: str, names: list[str]):
        self.provider, self.names = provider, names
        super().__init__(f"{provider}: set the environment variable{'s' if len(names) > 1 else ''} " + ", ".join(names))


class Provider:
    name = "provider"
    required_env: tuple[str, ...] = ()
    optional_env: tuple[str, ...] = ()
    asynchronous = False
    default_template: Optional[str] = None
    # True when every exchange of every operation goes through loadgen's timed transport
    # (loadgen.net.wirehttp), which judges timeouts by the wire (loadgen.net.exchange): the
    # lifecycle then waits for the transport's verdict instead of timing the SDK call itself.
    wire_verdicts = False
    # The lifecycle's phases an adapter takes part in. A sandbox provider has all of them. An adapter
    # whose "sandbox" is something else (locustfiles/storage.py: one object in a bucket) may leave the
    # liveness probe out, and may check its own command's answer: its ``run`` then raises when the
    # answer is wrong, and its stdout is the record's readiness_output as it is.
    liveness_probe = True
    checks_version = True
    # True when an operation's exchanges follow one another with the provider holding nothing between
    # them, so that every gap between them is the generator's (Phase.span; modal's RPCs)
    every_gap_is_generators = False
    # Connections one sandbox holds open at once at most (a control-plane one while it is created,
    # a data-plane one while it runs a command): what the run's descriptor check counts.
    fds_per_sandbox = 2

    @classmethod
    def connections_per_destination(cls, base_url: Optional[str]) -> int:
        """Connections per sandbox that go to one address and port (each needs its own local port):
        everything, against the emulator's one address; one (the API's), against a real provider
        whose sandboxes are hosts of their own."""
        return cls.fds_per_sandbox if base_url else 1

    def __init__(self, settings: ProviderSettings):
        self.settings = settings

    # -- called once per process, before the first create ------------------
    @classmethod
    def missing_env(cls) -> list[str]:
        return [name for name in cls.required_env if not os.environ.get(name)]

    def setup(self) -> None:
        """Size pools, build clients. Called once per process, before the first create."""

    def prepare(self) -> None:
        """What the lifecycle calls: the adapter's setup, plus the asyncio bridge it will need (its
        operations', or, for a sync adapter on the timed transport, its exchanges')."""
        if self.asynchronous:
            get_bridge()
        self.setup()
        if self.wire_verdicts:
            get_bridge()

    # -- the four operations -------------------------------------------------
    def create(self, tags: dict[str, str]) -> Any:
        """Create one sandbox; return a handle the other operations take."""
        raise NotImplementedError

    def run(self, handle: Any, command: str, timeout: float) -> CommandResult:
        raise NotImplementedError

    def destroy(self, handle: Any, timeout: float) -> bool:
        """True if destroyed, False if the provider says it is already gone. Raise on failure."""
        raise NotImplementedError

    def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        """Destroy a sandbox known only by its id (`loadgen reap`). Same answers as destroy."""
        raise NotImplementedError(f"{self.name}: reaping by sandbox id is not implemented for this provider yet")

    # -- describing results --------------------------------------------------
    def sandbox_id(self, handle: Any) -> Optional[str]:
        return getattr(handle, "sandbox_id", None)

    def metadata(self, handle: Any) -> Any:
        """The provider's sandbox object or dict; the lifecycle keeps its primitive, non-secret fields."""
        return handle

    def wire_times(self, handle: Any, operation: str = "create") -> Optional[tuple[float, float]]:
        """(sent, answered) of the latest ``operation`` ("create", "run" or "destroy") on ``handle``, in epoch
        seconds, if the adapter timed its HTTP exchange at the transport; None to let the lifecycle
        time the whole SDK call."""
        return None

    def wire_span(self, phase: exchange.Phase, operation: str) -> Optional[tuple[float, float]]:
        """(start, end) of a wire-judged ``operation``'s phase for the record, or None when an exchange
        went unanswered: ``Phase.span``, a command's with its connection's set-up, and with every gap
        between exchanges the generator's where the adapter says so (``every_gap_is_generators``)."""
        return phase.span(include_setup=operation == "run", every_gap_is_generators=self.every_gap_is_generators)

    def classify(self, exc: BaseException) -> ErrorInfo:
        return classify_exception(exc)

    # -- plumbing --------------------------------------------------------------
    def threadsafe(self, fn):
        """``fn``, safe to call from where the timed transport reports its verdicts: the asyncio
        bridge's thread, for an asynchronous adapter; the hub itself for a sync one, whose exchanges
        run in its greenlets (loadgen.net.greenwire)."""
        return get_bridge().hub_callback(fn) if self.asynchronous else fn

    def start_call(self, method, *args, phase: Optional[exchange.Phase] = None) -> Pending | "GreenletCall":
        """Start an operation without waiting: the lifecycle decides how long to wait,
        and whether a late answer still matters (it does for create). ``phase`` (the
        lifecycle's budget for the operation) is current while the operation runs, so
        the timed transport finds it."""
        if self.asynchronous:
            coroutine = method(*args)
            return get_bridge().submit(coroutine if phase is None else exchange.run_within(phase, coroutine))
        if phase is None:
            return GreenletCall(method, *args)
        return GreenletCall(_call_within, phase, method, *args)


def _call_within(phase, fn, *args):
    with exchange.within(phase):
        return fn(*args)


class GreenletCall:
    """The gevent twin of aio.Pending, for adapters whose SDK cooperates with gevent."""

    def __init__(self, fn, *args):
        self._greenlet = gevent.spawn(fn, *args)

    @property
    def done(self) -> bool:
        return self._greenlet.ready()

    @property
    def waitable(self):
        """What ``gevent.wait`` can wait on for this call's end."""
        return self._greenlet

    def wait(self, timeout: Optional[float] = None):
        self._greenlet.join(timeout)
        if not self._greenlet.ready():
            raise TimeoutError(f"no answer within {timeout:g} s")
        if self._greenlet.exception is not None:
            raise self._greenlet.exception
        return self._greenlet.value

    @property
    def error(self):
        return self._greenlet.exception

    def result(self):
        return self.wait(0)

    def cancel(self) -> None:
        self._greenlet.kill(block=False)
