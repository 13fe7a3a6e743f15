"""modal, through the official `modal` SDK's async (`.aio`) API.

The name: this module is `loadgen.providers.modal`, and `import modal` below
is an absolute import of the SDK (a package module never imports itself).
Locust, however, registers `locustfiles/modal.py` as the top-level module
`modal`; that locustfile puts the SDK back in its place before anything
imports it, and `_sdk()` here refuses to run on anything but the SDK.

Why async, and on which loop: the SDK is asyncio (grpclib) underneath, driven
by `synchronicity`, which normally runs it on a loop thread of its own. Under
gevent's monkey-patching that "thread" is a greenlet, so every RPC, protobuf
encode and HTTP/2 frame would run on the gevent hub; and a blocking call warns
with AsyncUsageWarning each time. So the SDK is handed loadgen's asyncio
bridge (loadgen.net.aio) as its loop (`_adopt_bridge_loop`): `.aio` calls made on
the bridge then run inline there, in a real OS thread, and the hub only sees
one wake-up per batch of completions.

Rules (see providers/base.py):
- Retries off. modal has no switch, so `_disable_sdk_retries` sets the
  defaults the SDK's retry loops read: unary control-plane calls (3 retries
  of UNAVAILABLE/INTERNAL/DEADLINE_EXCEEDED/... and of broken connections),
  server-directed throttling waits (MODAL_MAX_THROTTLE_WAIT=0), command
  router calls (10 retries), stdio reads (10), channel connects (18 and 34
  attempts, through the SDK's own RETRY_N_ATTEMPTS_OVERRIDE). TaskExecWait still retries transient errors until the exec's own
  deadline: the SDK passes that explicitly; the lifecycle's deadline bounds it.
- Lifetime: `Sandbox.create(timeout=settings.sandbox_lifetime_s)` (default 300 s).
- No pool below the users: all sandboxes share one HTTP/2 control-plane
  connection (multiplexed; the server's stream limit applies), and each
  sandbox opens its own command-router connection, closed by `detach()`.
- Tags: `Sandbox.create(tags={"run_id", "sandbox_idx"})`.
- The app (`App.lookup(..., create_if_missing=True)`), the client and the
  image are made once per process in `setup()`, before the clock starts, so a
  create is the SandboxCreateV2 call alone.

Measurement: every gRPC exchange (SandboxCreateV2 and the AuthTokenGet it may
need; each command's TaskExecStart, TaskExecStdioRead and TaskExecWait; the
SandboxTerminateV2) is timed at the socket by loadgen.net.wiregrpc, which
gives the SDK's grpclib channels a transport of its own: the request's time
is read as the frame that completes it goes to the kernel, the answer's is
the kernel's receive stamp of the frame that ended its HTTP/2 stream, however
late the loop read it. So the adapter is wire-judged (``wire_verdicts``): each phase
gets its timeout on the wire, and its recorded time is its exchanges on the
wire (``Phase.span`` with ``every_gap_is_generators``: a command's three RPCs one after another, with
the set-up of the sandbox's command-router connection when it needed one,
less every gap between an answer and the next request, which is the
generator's; a create's and a destroy's without the control plane's set-up). The SDK's
loop-clock deadline on a command is off for the same reason (the server
still gets the command's ``timeout_secs``).
``LOADGEN_MODAL_TRANSPORT=sdk`` gives the channels back their own asyncio
transport: times and verdicts by this greenlet's clock around the SDK call,
as before, for A/B measurements and as an escape hatch should an SDK upgrade
break the seam.

Lean calls: the SDK's public objects are synchronicity wrappers whose ``.aio``
methods translate every argument and result between wrapper and
implementation objects and wrap each coroutine (BENCHMARKS.md §9: a few
percent of a lifecycle's CPU). Already on the SDK's loop, the adapter calls
the implementation objects beneath them (``_Sandbox``, ``_ContainerProcess``,
``_StreamReader``) directly: the same SDK code builds the same requests, only
the wrappers are skipped. The handles handed out stay the SDK's public
``Sandbox`` objects. Beneath them, what is left is the SDK's pure-Python gRPC
stack, so the lean calls also trim four of its costs that do not change what
is sent: the HPACK encoding of every request's headers
(``statelesshpack.StatelessEncoder``: the same header fields, each one's
encoding cached, no dynamic table), h2's count of the open streams before each
new one (``streamcount``: a walk of every stream on the shared control-plane
connection, now amortised), the SDK's ``config.get`` reading ``os.environ`` (a cache made
at setup, ``_cache_sdk_config``) and the proxy question per connection (once
per host). ``LOADGEN_MODAL_PLAIN_SDK=1`` calls through the wrappers, as a
user's code would, and leaves all four as the SDK has them.

Errors: gRPC statuses arrive as `modal.exception` classes carrying
`_grpc_status`; its name is the record's `http_status` (e.g.
"RESOURCE_EXHAUSTED"). Deadlines and `modal.exception.TimeoutError` are
`timeout`; `modal.exception.ConnectionError`, a reset stream
(StreamTerminatedError) and h2 protocol errors are `network_error`.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import os
import re
import shlex
from typing import Any, Optional

from loadgen.net import exchange, wiregrpc, wirehttp
from loadgen.net.aio import get_bridge
from loadgen.providers.base import CommandResult, Provider
from loadgen.result import ErrorInfo, FailureClass, classify_exception, truncate

log = logging.getLogger("loadgen.providers.modal")

APP_NAME = os.environ.get("LOADGEN_MODAL_APP", "loadgen")
SDK_VERSION = "1.6.4"  # the pinned release this adapter (and the emulator's modal face) was checked against
_SHELL_SYNTAX = re.compile(r"[;&|<>$`*?(){}\[\]~\\\n]")
TRANSPORT_ENV = "LOADGEN_MODAL_TRANSPORT"  # "wire" (default) or "sdk"
PLAIN_SDK_ENV = "LOADGEN_MODAL_PLAIN_SDK"  # "1": every call through the SDK's synchronicity wrappers (.aio)


def _sdk():
    """The modal SDK (not a module that happens to be called `modal`)."""
    import modal

    if not hasattr(modal, "Sandbox") or not hasattr(modal, "App"):
        raise ImportError(
            f"`import modal` gave {getattr(modal, '__file__', modal)!r}, not the modal SDK: a local file named "
            "modal.py shadows it (locustfiles/modal.py restores the SDK itself; import that, not `modal`)")
    return modal


def grpc_url_for(emulator_url: str) -> str:
    """The gRPC URL of a loadgen emulator's modal face (it serves HTTP/1.1 for the other providers)."""
    from loadgen.emulator.faces.modal import grpc_url_of

    try:
        return grpc_url_of(emulator_url)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"the emulator at {emulator_url} has no modal face ({exc}); "
                           "start it with --face modal (e.g. `loadgen emulate --face modal`)") from exc


def _disable_sdk_retries() -> list[str]:
    """Turn the SDK's retry loops down to one attempt. Returns what was set, for the record and the tests."""
    done = []
    os.environ["MODAL_MAX_THROTTLE_WAIT"] = "0"  # read on every call: obey no server-requested wait
    done.append("MODAL_MAX_THROTTLE_WAIT=0")
    from modal import _grpc_client
    from modal._utils import grpc_utils
    from modal.sandbox import _task_command_router_client as tcr

    no_retry = grpc_utils.Retry(max_retries=0)
    kw = getattr(_grpc_client.UnaryUnaryWrapper.__call__, "__kwdefaults__", None)
    if kw and "retry" in kw:
        kw["retry"] = no_retry
        done.append("UnaryUnaryWrapper retry=Retry(max_retries=0)")
    kw = getattr(tcr.call_with_retries_on_transient_errors, "__kwdefaults__", None)
    if kw and "max_retries" in kw:
        kw["max_retries"] = 0
        done.append("call_with_retries_on_transient_errors max_retries=0")
    kw = getattr(tcr.TaskCommandRouterClient.__init__, "__kwdefaults__", None)
    if kw and "stream_stdio_max_retries" in kw:
        kw["stream_stdio_max_retries"] = 0
        done.append("TaskCommandRouterClient stream_stdio_max_retries=0")

    from modal._utils import async_utils

    if hasattr(async_utils, "RETRY_N_ATTEMPTS_OVERRIDE"):
        # every @retry-decorated SDK function: here, the control-plane connect
        # (18 attempts over 63 s) and the command-router connect (34 over 310 s)
        async_utils.RETRY_N_ATTEMPTS_OVERRIDE = 1
        done.append("RETRY_N_ATTEMPTS_OVERRIDE=1 (channel connects)")
    return done


def _trust_ssl_cert_file() -> Optional[str]:
    """Make grpclib trust ``SSL_CERT_FILE`` when it is set, as httpx, urllib3 and OpenSSL do.

    grpclib verifies TLS against certifi's roots alone, so an emulator under
    ``--tls`` (whose CA is handed over through SSL_CERT_FILE) could not be
    trusted otherwise. Without the variable nothing changes."""
    import ssl

    from grpclib.client import Channel

    cafile = os.environ.get("SSL_CERT_FILE")
    original = getattr(Channel._get_default_ssl_context, "_loadgen_original", Channel._get_default_ssl_context)
    if not cafile:
        Channel._get_default_ssl_context = original
        return None

    def _get_default_ssl_context(self, *, verify_paths=None):
        if verify_paths is None:
            verify_paths = ssl.DefaultVerifyPaths(cafile, None, "", "", "", "")
        return original(self, verify_paths=verify_paths)

    _get_default_ssl_context._loadgen_original = original
    Channel._get_default_ssl_context = _get_default_ssl_context
    return cafile


def _install_wire_transport(enabled: bool, lean: bool = False) -> bool:
    """Open the SDK's gRPC connections on loadgen.net.wiregrpc (or, not ``enabled``, on grpclib's own).

    The seam is ``ModalChannel._open_connection``, where the SDK itself chooses
    between a proxied and a direct connection: a proxy, a unix socket or a TLS
    name override keeps the SDK's path. ``lean`` (the lean calls'): the proxy
    question is answered once per host (it walks the whole environment, 4 % of a
    lifecycle's CPU for the two connections a sandbox opens), and the connections'
    h2 encodes headers with statelesshpack.StatelessEncoder (same header fields, no
    dynamic HPACK table) and counts its open streams with streamcount's amortised
    count (the same streams refused: BENCHMARKS.md §9)."""
    from modal._utils.grpc_utils import ModalChannel

    original = getattr(ModalChannel._open_connection, "_loadgen_original", ModalChannel._open_connection)
    if not enabled:
        ModalChannel._open_connection = original
        return False
    proxied: dict = {}  # (host, TLS?) -> the SDK's get_proxy_url, lean calls only (this setup's environment)

    async def _open_connection(self):
        from modal._utils.proxy_support import get_proxy_url

        use_ssl = self._ssl is not None
        if lean:
            key = (self._host, use_ssl)
            if key not in proxied:
                proxied[key] = get_proxy_url(self._host, use_ssl=use_ssl)
            proxy = proxied[key]
        else:
            proxy = get_proxy_url(self._host, use_ssl=use_ssl)
        if self._path is not None or self._config.ssl_target_name_override or proxy is not None:
            return await original(self)
        return await wiregrpc.open_connection(self._protocol_factory, self._host, self._port, self._ssl,
                                              lean=lean)

    _open_connection._loadgen_original = original
    ModalChannel._open_connection = _open_connection
    return True


def _cache_sdk_config(enabled: bool) -> None:
    """Lean calls: the SDK's ``config.get`` answers each (key, profile) from a cache made fresh at
    every setup, instead of reading ``os.environ`` anew (194 lookups a lifecycle, 5 % of its CPU).

    Why it is safe: the adapter sets what it sets (MODAL_SERVER_URL, MODAL_MAX_THROTTLE_WAIT) before
    the cache exists, and the run changes nothing after; ``config.override_locally`` (the SDK's
    one way to change a setting in-process) empties it. Off with ``LOADGEN_MODAL_PLAIN_SDK=1``."""
    from modal.config import Config

    get = getattr(Config.get, "_loadgen_original", Config.get)
    override = getattr(Config.override_locally, "_loadgen_original", Config.override_locally)
    if not enabled:
        Config.get, Config.override_locally = get, override
        return
    cache: dict = {}

    def cached_get(self, key, *, profile=None, use_env=True):
        k = (key, profile, use_env)
        try:
            return cache[k]
        except KeyError:
            value = cache[k] = get(self, key, profile=profile, use_env=use_env)
            return value

    def override_locally(self, key, value):
        cache.clear()
        return override(self, key, value)

    cached_get._loadgen_original, override_locally._loadgen_original = get, override
    Config.get, Config.override_locally = cached_get, override_locally


def _judge_commands_on_the_wire(enabled: bool) -> None:
    """No loop-clock deadline on a command's RPCs inside a wire-judged phase (the wire's verdict is the one).

    The SDK turns ``exec(timeout=...)`` into the server's ``timeout_secs`` and a
    client deadline on ``time.monotonic()``, which a stalled loop would pass while
    answers wait in the socket. Only the client deadline goes."""
    from modal.container_process import _ContainerProcess

    original = getattr(_ContainerProcess.__init__, "_loadgen_original", _ContainerProcess.__init__)
    if not enabled:
        _ContainerProcess.__init__ = original
        return

    def __init__(self, *args, exec_deadline=None, **kwargs):
        phase = exchange.current()
        if phase is not None and phase.timeout_s is not None:
            exec_deadline = None
        original(self, *args, exec_deadline=exec_deadline, **kwargs)

    __init__._loadgen_original = original
    _ContainerProcess.__init__ = __init__


class WireTimeout(TimeoutError):
    """The wire's verdict: the provider's answer did not arrive within the phase's timeout."""


def _adopt_bridge_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make synchronicity run the SDK on `loop` (loadgen's bridge) instead of a loop thread of its own."""
    from modal._utils.async_utils import synchronizer

    current = synchronizer._loop
    if current is not None and current is not loop and not current.is_closed():
        raise RuntimeError("the modal SDK already runs on another event loop in this process; "
                           "nothing may call its blocking API before the adapter's setup")
    synchronizer._thread = None
    synchronizer._loop = loop

    def inside_loop() -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    synchronizer._is_inside_loop = inside_loop


def _argv(command: str) -> list[str]:
    """`node -v` -> ["node", "-v"]; anything with shell syntax runs under bash -c. A fresh list each
    call (the SDK may keep it); the parse is cached (a run has a few commands, parsed ~2 % of a
    lifecycle's CPU)."""
    return list(_parsed_argv(command))


@functools.lru_cache(maxsize=256)
def _parsed_argv(command: str) -> tuple:
    if _SHELL_SYNTAX.search(command):
        return ("bash", "-c", command)
    argv = shlex.split(command)
    return tuple(argv) or ("bash", "-c", command)


class ModalProvider(Provider):
    name = "modal"
    every_gap_is_generators = True  # a command's RPCs follow one another, nothing held between them
    required_env = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")
    optional_env = ("MODAL_SERVER_URL", "MODAL_ENVIRONMENT")
    asynchronous = True
    default_template = "node:20-slim"

    def setup(self) -> None:
        logging.getLogger("hpack").setLevel(logging.WARNING)
        version = getattr(_sdk(), "__version__", "?")
        if version != SDK_VERSION:
            log.warning("modal: SDK %s installed; this adapter was checked against %s (the retry switches, the "
                        "loop hand-over and the emulator's RPC set may differ)", version, SDK_VERSION)
        self.retry_settings = _disable_sdk_retries()
        _trust_ssl_cert_file()
        transport = os.environ.get(TRANSPORT_ENV, "wire").strip().lower() or "wire"
        if transport not in ("wire", "sdk"):
            raise ValueError(f"{TRANSPORT_ENV}={transport!r}: want 'wire' (the default) or 'sdk'")
        lean = os.environ.get(PLAIN_SDK_ENV, "").strip() != "1"
        _cache_sdk_config(False)  # (a previous setup's cache: this one's environment may differ)
        self.wire_verdicts = _install_wire_transport(transport == "wire", lean)
        _judge_commands_on_the_wire(self.wire_verdicts)
        bridge = get_bridge()
        _adopt_bridge_loop(bridge.loop)
        self._client = self._app = self._image = None
        self._sdk_args, self._lean = (None, None, None, None), False
        self._setup_error: Optional[BaseException] = None
        try:
            if self.settings.base_url:
                os.environ["MODAL_SERVER_URL"] = grpc_url_for(self.settings.base_url)
            bridge.call(self._open(lean), timeout=self.settings.create_timeout_s + 30.0)
        except Exception as exc:  # noqa: BLE001 - every create then fails with this error: data, not a crash
            self._setup_error = exc
            log.error("modal: could not open the client, app %r and image: %s: %s", APP_NAME, type(exc).__name__, exc)

    async def _open(self, lean: bool) -> None:
        modal = _sdk()
        client = await modal.Client.from_credentials.aio(os.environ["MODAL_TOKEN_ID"], os.environ["MODAL_TOKEN_SECRET"])
        app = await modal.App.lookup.aio(APP_NAME, create_if_missing=True, client=client)
        image = modal.Image.from_registry(self.settings.template or self.default_template)
        await image.build.aio(app)  # once per process: creates then only reference it
        self._client, self._app, self._image = client, app, image  # (the SDK's public objects, for the user)
        self._lean = lean
        self._sdk_args = (client, app, image, modal.Sandbox)
        if self._lean:  # the implementation objects beneath the wrappers (see the module's doc)
            from modal._utils.async_utils import synchronizer

            self._sdk_args = tuple(synchronizer._translate_in(obj) for obj in self._sdk_args)
        _cache_sdk_config(self._lean)  # from here the environment is the run's

    def _call(self, method, *args, **kwargs):
        """The SDK coroutine for ``method`` (an implementation's method, or a wrapper's through .aio)."""
        return method(*args, **kwargs) if self._lean else method.aio(*args, **kwargs)

    def _sdk_object(self, handle):
        """What the lean calls are made on: the implementation beneath a handle (the SDK's public
        Sandbox, as the adapter hands it out); the handle itself through the wrappers."""
        if not self._lean:
            return handle
        from modal._utils.async_utils import synchronizer

        return synchronizer._translate_in(handle)

    async def create(self, tags: dict[str, str]):
        if self._setup_error is not None:
            raise copy.copy(self._setup_error).with_traceback(None)
        client, app, image, sandbox_class = self._sdk_args
        with exchange.recording() as phase:  # this task's context: the SDK's RPCs run in it
            sandbox = await self._call(
                sandbox_class.create,
                app=app,
                image=image,
                timeout=int(self.settings.sandbox_lifetime_s),
                tags=tags,
                client=client,
            )
        handle = sandbox
        if self._lean:  # handed out as the SDK's public object, as through the wrappers
            from modal._utils.async_utils import synchronizer

            handle = synchronizer._translate_out(sandbox)
        handle._loadgen_wire_create = phase.span(include_setup=False, every_gap_is_generators=True)
        return handle

    def wire_times(self, handle, operation="create"):
        """(start, end) of the latest create, command ("run") or destroy on ``handle`` as the wire
        saw it (Phase.span with every gap the generator's: for a command, its RPCs less every gap
        between them), or
        None (the SDK's own transport, or an exchange that went unanswered)."""
        return getattr(handle, "_loadgen_wire_" + operation, None)

    async def run(self, handle, command: str, timeout: float) -> CommandResult:
        with exchange.recording() as phase:
            try:
                sandbox = self._sdk_object(handle)
                process = await self._call(sandbox.exec, *_argv(command), timeout=max(1, math.ceil(timeout)))
                stdout = await self._call(process.stdout.read)
                exit_code = await self._call(process.wait)  # -1 when the exec's own deadline passed
                stderr = ""
                if exit_code != 0:
                    try:
                        stderr = await self._call(process.stderr.read)
                    except Exception:  # noqa: BLE001 - the exit code is the answer; stderr only explains it
                        pass
            except Exception as exc:
                _raise_wire_timeout(phase, exc)
                raise
            _raise_wire_timeout(phase)
        handle._loadgen_wire_run = phase.span(include_setup=True, every_gap_is_generators=True)
        return CommandResult(exit_code, stdout or "", stderr or "")

    async def destroy(self, handle, timeout: float) -> bool:
        modal = _sdk()
        with exchange.recording() as phase:
            try:
                await self._call(self._sdk_object(handle).terminate)  # a no-op if the sandbox already ended
            except modal.exception.NotFoundError:
                _raise_wire_timeout(phase)
                return False
            except Exception as exc:
                _raise_wire_timeout(phase, exc)
                raise
            finally:
                try:
                    await self._call(self._sdk_object(handle).detach)  # close its command-router connection
                except Exception:  # noqa: BLE001
                    pass
            _raise_wire_timeout(phase)
        handle._loadgen_wire_destroy = phase.span(include_setup=False, every_gap_is_generators=True)
        return True

    async def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        if self._setup_error is not None:
            raise copy.copy(self._setup_error).with_traceback(None)
        modal = _sdk()
        # A handle on the id alone, as `Sandbox.from_id` builds it but without its
        # lookup (SandboxWaitV2): the terminate is the one RPC, and answers
        # NOT_FOUND for an id the server does not know.
        client, _app, _image, sandbox_class = self._sdk_args
        handle = sandbox_class._new_hydrated(sandbox_id, client, None)
        try:
            await self._call(handle.terminate)  # a no-op that succeeds if the sandbox already ended
        except modal.exception.NotFoundError:
            return False
        return True

    def sandbox_id(self, handle) -> Optional[str]:
        return handle.object_id

    def metadata(self, handle) -> Any:
        info = {"sandbox_id": handle.object_id, "app": APP_NAME,
                "image": self.settings.template or self.default_template}
        app_id = getattr(self._app, "app_id", None)
        if app_id:
            info["app_id"] = app_id
        return info

    def classify(self, exc: BaseException) -> ErrorInfo:
        return classify_modal_exception(exc)


def _raise_wire_timeout(phase, cause: Optional[BaseException] = None) -> None:
    """A wire-judged command or destroy whose answer came after its deadline (or never) is a timeout,
    whatever the SDK made of it (a late answer is still an answer to the SDK)."""
    if phase.timed_out and phase.timeout_s is not None:
        raise WireTimeout(f"no answer on the wire within {phase.timeout_s:g} s of the request") from cause


def classify_modal_exception(exc: BaseException) -> ErrorInfo:
    """modal's exceptions -> the taxonomy, with the gRPC status name as `http_status`."""
    import modal.exception as me
    from grpclib.exceptions import ProtocolError, StreamTerminatedError

    error_type = type(exc).__name__
    message = truncate(str(exc) or error_type)
    wire = _wire_error_in(exc)
    if wire is not None and not getattr(exc, "_grpc_status", None):  # loadgen's transport said why
        if isinstance(wire, TimeoutError):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, error_type, message)
    status = getattr(exc, "_grpc_status", None)
    if status is None:
        status = getattr(exc, "status", None)  # a raw grpclib.GRPCError
    name = getattr(status, "name", None) if status is not None and not isinstance(status, int) else None
    if isinstance(exc, (me.TimeoutError, asyncio.TimeoutError)) or name == "DEADLINE_EXCEEDED":
        return ErrorInfo(FailureClass.TIMEOUT.value, name, "deadline_exceeded" if name else None, error_type, message)
    if name is not None:
        code = {
            "RESOURCE_EXHAUSTED": "rate_limited",
            "NOT_FOUND": "not_found",
            "UNAUTHENTICATED": "unauthorized",
            "PERMISSION_DENIED": "forbidden",
        }.get(name, name.lower())
        return ErrorInfo(FailureClass.HTTP_ERROR.value, name, code, error_type, message)
    if isinstance(exc, (me.ConnectionError, StreamTerminatedError, ProtocolError, ConnectionError)):
        return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, error_type, message)
    try:
        from h2.exceptions import ProtocolError as H2ProtocolError

        if isinstance(exc, H2ProtocolError):
            return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, error_type, message)
    except ImportError:  # pragma: no cover
        pass
    return classify_exception(exc)


def _wire_error_in(exc: BaseException):
    """wiregrpc's (wirehttp's) own error behind ``exc``, if any (the SDK may wrap it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (wirehttp.WireError, WireTimeout)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
