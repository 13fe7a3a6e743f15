"""daytona, through the official `daytona` SDK's sync client.

Why sync: the sync client's HTTP is urllib3 on the standard socket module, so
under gevent's monkey-patching every request yields to the hub. The adapter
runs each operation in a greenlet (``asynchronous = False``).

What the SDK does on its own, and what this adapter does about it:

- Retries. urllib3 retries connection errors and idempotent requests (the
  DELETE) three times by default, and the toolbox client retries any request
  whose connection closed without an answer (``RemoteDisconnectedRetry``).
  Both pool managers get ``retries=False``: a hidden retry would hide the very
  failure we measure, and a request that fails raises urllib3's own error.
- Its own timeouts. A ``timeout`` given to ``create``/``delete`` arms the
  SDK's ``with_timeout``: SIGALRM on the main thread, else a
  ``threading.Timer`` that injects an exception with
  ``PyThreadState_SetAsyncExc`` into the calling thread's id. Under gevent a
  greenlet's "thread id" is no OS thread, so that injection never lands (it
  only logs a warning) and every call costs a timer greenlet. The adapter
  passes ``timeout=0`` (the SDK's "no timeout") and bounds each operation with
  a ``gevent.Timeout`` instead, which interrupts a blocked socket at once.
- Socket.io. By default every ``Daytona`` client opens a socket.io
  connection (Engine.IO 4, websocket transport only, at
  ``{origin}{api path}/socket.io/``, token in the auth payload) to learn
  sandbox state changes. Every sandbox object subscribes to it, and the SDK
  then considers itself subscribed even when the connection never came up:
  a create whose answer is not yet ``started`` then polls
  ``GET /sandbox/{id}`` only once a second, waiting for events that never
  come. ``setup`` therefore connects once, waits up to ``_EVENTS_WAIT_S`` for the
  outcome, and if the connection failed rebuilds the client in polling mode
  (``use_deprecated_polling``: 0.1 s polls for 5 s, then backing off to 1 s).
  Against the emulator (``--emulator-url``), which serves no websocket, the
  client is built in polling mode from the start.
- Pool size. ``connection_pool_maxsize`` (default 250) is the urllib3 pool of
  each host; above it urllib3 opens and throws away extra connections. It is
  sized to at least the users in the process.
- Lifetime. ``auto_stop_interval=0`` (no idle stop; the default is 15 min) and
  ``ttl_minutes`` = the run's sandbox lifetime, so a sandbox outlives the run
  and a leaked one still goes away.

Measurement: both generated clients' ``rest_client.pool_manager`` is
``loadgen.net.wireurllib3.WirePoolManager``, which sends each request on
loadgen's timed client (on the hub, in the greenlet that makes the request:
``loadgen.net.greenwire``) and hands the SDK a ``urllib3.HTTPResponse`` of
the bytes received. So every create, command and delete is timed by the kernel's stamps of its
exchange and judged on the wire (``wire_verdicts``): a busy generator never
turns an answer that arrived in time into a timeout, and the latency leaves
out this process's queueing (``loadgen.net.exchange``). The SDK still builds
every request and parses every answer; its urllib3 errors are the ones its
pool would raise. Inside a lifecycle phase the wire's deadline is the only
one (no ``gevent.Timeout`` on the greenlet's clock); outside one (``loadgen
reap``, a direct call) the ``gevent.Timeout`` bounds stay.

``LOADGEN_DAYTONA_TRANSPORT=sdk`` sends on urllib3's own pools instead
(latency timed around each SDK call, by this greenlet's clock), for A/B
measurements and as an escape hatch should an SDK upgrade break the timed
one. (urllib3 speaks HTTP/1.1 only: ``LOADGEN_HTTP2`` changes nothing here.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from typing import Any, Optional

import gevent

from loadgen.net import exchange
from loadgen.providers.sdk_import import reclaim_sdk
from loadgen.providers.base import attributes, CommandResult, Provider
from loadgen.result import ErrorInfo, FailureClass, classify_exception, truncate

log = logging.getLogger("loadgen.providers.daytona")

_POOL_FLOOR = 256
_EVENTS_WAIT_S = 5.0
_IDLE_EXPIRY_S = 30.0  # idle connections kept this long by the timed client's pool
TRANSPORT_ENV = "LOADGEN_DAYTONA_TRANSPORT"


def load_sdk(locustfile: Optional[str] = None):
    """The `daytona` SDK package, even when the locustfile `locustfiles/daytona.py` has taken its name."""
    module = sys.modules.get("daytona")
    if module is not None and hasattr(module, "Daytona"):
        return module
    return reclaim_sdk("daytona", locustfile or getattr(module, "__file__", None) or __file__, "Daytona")


def api_url_for_emulator(base_url: str) -> str:
    """The emulator serves Daytona's API under /api, as app.daytona.io does."""
    return base_url.rstrip("/") + "/api"


class DaytonaProvider(Provider):
    name = "daytona"
    required_env = ("DAYTONA_API_KEY",)
    optional_env = ("DAYTONA_API_URL", "DAYTONA_TARGET")
    asynchronous = False
    default_template: Optional[str] = None  # no snapshot: Daytona's default snapshot

    # -- setup -----------------------------------------------------------------
    def setup(self) -> None:
        s = self.settings
        self.pool_size = max(_POOL_FLOOR, int(s.users_in_process) + 16)
        self.transport = "sdk" if os.environ.get(TRANSPORT_ENV, "").strip().lower() == "sdk" else "wire"
        self.wire_verdicts = self.transport == "wire"
        self._wire_pool = None
        if self.wire_verdicts:
            from loadgen.net import greenwire

            self._wire_pool = greenwire.pool(max_idle_per_origin=self.pool_size, idle_expiry_s=_IDLE_EXPIRY_S)
        if s.base_url:
            self.api_url = api_url_for_emulator(s.base_url)
        else:
            self.api_url = os.environ.get("DAYTONA_API_URL") or None
        self.target = os.environ.get("DAYTONA_TARGET") or None
        polling = bool(s.base_url) or os.environ.get("DAYTONA_USE_DEPRECATED_POLLING", "").lower() == "true"
        client = self._build_client(polling)
        if not polling:
            dispatcher = getattr(client, "_event_dispatcher", None)
            if dispatcher is not None and not self._wait_for_events(dispatcher):
                log.warning("daytona: socket.io event stream unavailable (%s); using polling mode",
                            getattr(dispatcher, "fail_error", None) or "no answer")
                try:
                    dispatcher.disconnect()
                except Exception:  # noqa: BLE001
                    pass
                polling = True
                client = self._build_client(True)
        self.events = "polling" if polling else "socket.io"
        self.client = client
        log.info("daytona: api %s, pool %d (%s transport), state updates by %s", self.api_url or "(SDK default)",
                 self.pool_size, self.transport, self.events)

    def _build_client(self, polling: bool):
        import urllib3

        sdk = load_sdk()
        config = sdk.DaytonaConfig(
            api_key=os.environ.get("DAYTONA_API_KEY"),
            api_url=self.api_url,
            target=self.target,
            connection_pool_maxsize=self.pool_size,
            use_deprecated_polling=polling,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # polling mode is "deprecated"
            client = sdk.Daytona(config)
        # Retries off on both clients, before any pool exists (pools are made
        # lazily per host from connection_pool_kw).
        for api_client in (client._api_client, client._toolbox_api_client):
            api_client.configuration.retries = False
            pool_manager = api_client.rest_client.pool_manager
            assert isinstance(pool_manager, urllib3.PoolManager)
            pool_manager.connection_pool_kw["retries"] = False
            pool_manager.connection_pool_kw["maxsize"] = self.pool_size
            if self._wire_pool is not None:
                from loadgen.net.wireurllib3 import WirePoolManager

                api_client.rest_client.pool_manager = WirePoolManager(pool_manager, self._wire_pool)
        return client

    def _bound(self, seconds: float):
        """The greenlet's own bound on an SDK call: none inside a wire-judged phase (the wire's deadline
        is the verdict), else a ``gevent.Timeout`` (the SDK's own timeout machinery is off)."""
        if self.wire_verdicts and exchange.current() is not None:
            return contextlib.nullcontext()
        return gevent.Timeout(seconds)

    @staticmethod
    def _wait_for_events(dispatcher) -> bool:
        deadline = time.monotonic() + _EVENTS_WAIT_S
        while time.monotonic() < deadline:
            if dispatcher.is_connected:
                return True
            if dispatcher.is_failed:
                return False
            gevent.sleep(0.05)
        return bool(dispatcher.is_connected)

    # -- the operations ----------------------------------------------------------
    def create(self, tags: dict[str, str]):
        s = self.settings
        params = load_sdk().CreateSandboxFromSnapshotParams(
            snapshot=s.template or self.default_template,
            auto_stop_interval=0,
            ttl_minutes=max(1, math.ceil(s.sandbox_lifetime_s / 60)),
            labels=dict(tags),
        )
        # The SDK's own timeout machinery is off (timeout=0); the late-create
        # window is the longest we would still adopt a sandbox, so no request outlives it.
        bound = self._bound(s.create_timeout_s + s.late_create_window_s)  # (before a bare phase is made)
        with bound, exchange.recording() as phase:
            sandbox = self.client.create(params, timeout=0)
        sandbox._loadgen_wire_create = phase.span(include_setup=False)
        return sandbox

    def run(self, handle, command: str, timeout: float) -> CommandResult:
        # exec's HTTP timeout is timeout + 5 s; the lifecycle gives up at timeout + 1 s (at the wire's
        # deadline, when wire-judged).
        handle._loadgen_wire_run = None
        with exchange.recording() as phase:
            response = handle.process.exec(command, timeout=max(1, math.ceil(timeout)))
        handle._loadgen_wire_run = phase.span(include_setup=True)
        exit_code = response.exit_code
        return CommandResult(exit_code, response.result or "", "")

    def destroy(self, handle, timeout: float) -> bool:
        handle._loadgen_wire_destroy = None
        gone = False
        bound = self._bound(timeout)  # (before a bare phase is made)
        with exchange.recording() as phase:
            try:
                with bound:
                    self.client.delete(handle, timeout=0)
            except load_sdk().DaytonaNotFoundError:
                gone = True
        handle._loadgen_wire_destroy = phase.span(include_setup=False)
        return not gone

    def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        # The SDK deletes only a Sandbox object: get it by id, then delete it, both
        # under one gevent.Timeout. The delete's SDK timeout is off, as in destroy;
        # get's request_timeout is a plain socket timeout (no SIGALRM/Timer machinery),
        # which also bounds it where sockets are not gevent's (`loadgen reap`).
        try:
            with gevent.Timeout(timeout):
                sandbox = self.client.get(sandbox_id, request_timeout=timeout)
                self.client.delete(sandbox, timeout=0)
        except load_sdk().DaytonaNotFoundError:
            return False
        return True

    # -- describing results ---------------------------------------------------------
    def wire_times(self, handle, operation="create"):
        """(sent, answered) of the latest create, command ("run") or delete on ``handle``, as the timed
        transport saw its exchange (epoch seconds; a command's from its connection's set-up), or None
        on urllib3's own pools."""
        if not self.wire_verdicts:
            return None
        return getattr(handle, "_loadgen_wire_" + operation, None)

    def sandbox_id(self, handle) -> Optional[str]:
        return getattr(handle, "id", None)

    def metadata(self, handle) -> Any:
        return attributes(handle, ("state", "target", "snapshot", "runner_id", "daemon_version", "cpu", "memory", "disk"),
                          sandbox_id=handle.id, state_updates=self.events)

    def classify(self, exc: BaseException) -> ErrorInfo:
        daytona = load_sdk()
        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, gevent.Timeout):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        if isinstance(exc, daytona.DaytonaError):
            status = exc.status_code
            code = getattr(exc, "code", None)
            if isinstance(exc, daytona.DaytonaTimeoutError) and status is None:
                # the SDK's timeouts, including urllib3 read/connect timeouts
                return ErrorInfo(FailureClass.TIMEOUT.value, None, code, error_type, message)
            if isinstance(exc, daytona.DaytonaRateLimitError) or status == 429:
                return ErrorInfo(FailureClass.HTTP_ERROR.value, 429, code or "rate_limited", error_type, message)
            if isinstance(exc, daytona.DaytonaAuthenticationError) and status in (None, 401):
                return ErrorInfo(FailureClass.HTTP_ERROR.value, 401, code or "unauthorized", error_type, message)
            if isinstance(exc, daytona.DaytonaNotFoundError):
                return ErrorInfo(FailureClass.HTTP_ERROR.value, status or 404, code or "sandbox_gone", error_type,
                                 message)
            if status is not None:
                return ErrorInfo(FailureClass.HTTP_ERROR.value, status, code or str(status), error_type, message)
            if isinstance(exc, daytona.DaytonaConnectionError):
                return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, code, error_type, message)
            # no status: look at what the SDK wrapped (urllib3 / socket errors)
            cause = exc.__cause__
            if cause is not None:
                inner = classify_exception(cause)
                if inner.failure_class != FailureClass.OTHER.value:
                    return ErrorInfo(inner.failure_class, inner.http_status, inner.error_code, error_type, message)
            return ErrorInfo(FailureClass.OTHER.value, None, code, error_type, message)
        return classify_exception(exc)
