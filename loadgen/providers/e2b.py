"""e2b, through the official `e2b` SDK's async API.

Why async: from 2.35 on the SDK's HTTP runs in a Rust client (pyqwest) whose
sync calls block gevent's hub, so 50 concurrent sandboxes would run one after
another. Its async API awaits the same client on the process's asyncio
bridge (loadgen.net.aio), where it never touches the hub. The transports are
process-wide caches, so every sandbox shares one connection pool, sized here
to the users in the process.

Retries: the SDK retries 429/502/503/504 (``retries``) and, separately,
failed connections (``E2B_CONNECTION_RETRIES``, read at import). Both are
turned off, since a hidden retry would hide the failure we measure.

Client cost (bench/lifecycle_cost.py, BENCHMARKS.md): the SDK's own Python
work, not the HTTP, is what a burst pays for. Two things cost most, and both
are removed here without leaving the SDK's code path (every create and kill
still goes through ``AsyncSandbox.create`` / ``kill``, the SDK's request
builders, response parsers and exception mapping):

- the control plane: every create and every kill built a fresh
  ``AsyncApiClient`` and ``httpx.AsyncClient`` (URL parsing, header merging,
  cookie jar, event hooks), then ran the request through httpx's
  send/auth/redirect/cookie machinery into the very pyqwest pool below it.
  ``_LeanControlPlane`` is one process-wide ``AsyncApiClient`` per
  configuration (the SDK documents that one client serves everything) whose
  httpx client is a thin stand-in: it sends the same headers and body in one
  exchange (on loadgen.net.wirehttp, see Measurement), and raises the httpx
  exceptions pyqwest's own httpx adapter would (``httpx.ReadTimeout``,
  ``httpx.ConnectError``...), so classification is unchanged.
- the sandbox object: ``AsyncSandbox.__init__`` builds a filesystem, a PTY
  and a git module (each with its own httpx clients and RPC clients) that a
  lifecycle never uses. ``_lean_sandbox_class`` builds only ``commands``;
  the others, and the health-probe httpx clients, are built on first use.

Measurement: the HTTP exchanges themselves (create and kill on the control
plane, each command's ``process.Process/Start`` stream on the data plane) run
on loadgen.net.wirehttp, a client whose answer time is the kernel's
arrival stamp of the answer (HTTP/2 to the API where it offers it, a stream
per exchange; HTTP/1.1 to each sandbox's envd), so a phase's latency does not grow with how busy
this process is when the answer lands (BENCHMARKS.md §3). The SDK still
builds every request and parses every answer. A command's time includes the
connection set-up to the sandbox's host when one was needed, as the wire saw
it (TCP's handshake round trip, TLS's handshake flight); a create's and a
kill's do not (the API's connection is the client's, not the sandbox's).
Verdicts are the wire's as well (``wire_verdicts``): each exchange gets its
phase's timeout from its wire start, judged by the kernel's stamp of the
answer (``loadgen.net.exchange``), so a busy generator never turns an answer
that arrived in time into a timeout; the SDK's own loop-clock deadline on the
command stream is therefore off (the server still gets ``connect-timeout-ms``).
``LOADGEN_E2B_TRANSPORT=pyqwest`` sends all of it on the SDK's pyqwest pool
instead (clock read on the loop, verdicts by the loop's clock; HTTP/2 to the
real service), for A/B measurements.

``LOADGEN_E2B_PLAIN_SDK=1`` turns all of this off (the SDK exactly as shipped), for
A/B measurements and as an escape hatch should an SDK upgrade break them.

TLS: wirehttp and the SDK's pyqwest both trust ``SSL_CERT_FILE`` when it is
set (how an emulator under ``--tls`` is trusted). wirehttp speaks HTTP/1.1
to the API by default (exact timing per exchange), HTTP/2 by ALPN with
``LOADGEN_WIRE_HTTP2=alpn`` (as the SDK's own client does) or in cleartext too
with ``=1`` (prior knowledge), and HTTP/1.1 to envd always; with ``LOADGEN_HTTP2=1`` the SDK's own pyqwest paths speak
HTTP/2 by ALPN.

Length: one adapter, which carries the SDK's request path on loadgen's timed
transport (control plane and envd) beside the escape hatches that restore the
SDK's own; each piece is small and only makes sense next to the others.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from loadgen.net import exchange, wireh2
from loadgen.net.exchange import Exchange
from loadgen.net.wirehttp import WireError, WirePool
from loadgen.providers.base import attributes, CommandResult, http2_requested, Provider
from loadgen.result import ErrorInfo, FailureClass, classify_exception, status_code_of, truncate

_POOL_FLOOR = 1000
# Idle data-plane connections kept per host by the SDK's pyqwest pool (for what still uses it:
# LOADGEN_E2B_TRANSPORT=pyqwest, the plain SDK). On the real service every sandbox's envd is a host
# of its own, so this changes nothing there; against one host (the emulator, a proxy) it stops
# thousands of idle pyqwest connections, each with its own buffers, being kept through the hold
# (BENCHMARKS.md §4). E2B_MAX_KEEPALIVE_CONNECTIONS overrides it. wirehttp's pools are sized apart.
_IDLE_PER_HOST = 64
# Seconds a connection may sit idle (wirehttp's pools sweep them). A held sandbox's data-plane
# connection is idle from its readiness command to its liveness probe, and the control plane's
# (one per create in flight) until the kills: against the real service each would hold a TLS
# connection, an fd and its buffers through the hold. Past this, the probe or the kill connects
# afresh; a command's time includes that set-up (as the wire saw it), a kill's does not.
_IDLE_EXPIRY_S = 30.0
PLAIN_SDK_ENV = "LOADGEN_E2B_PLAIN_SDK"
TRANSPORT_ENV = "LOADGEN_E2B_TRANSPORT"


def _configure_sdk_environment(users_in_process: int) -> None:
    """Set the SDK's import-time pool and retry knobs (and patch them if it is already imported)."""
    pool = str(max(_POOL_FLOOR, users_in_process * 2))
    idle = int(os.environ.get("E2B_MAX_KEEPALIVE_CONNECTIONS") or _IDLE_PER_HOST)  # the user's, if set
    os.environ["E2B_CONNECTION_RETRIES"] = "0"
    os.environ["E2B_MAX_CONNECTIONS"] = pool
    os.environ["E2B_MAX_KEEPALIVE_CONNECTIONS"] = str(idle)
    for module_name in ("e2b.api", "e2b.api.client_async", "e2b.api.client_sync"):
        module = sys.modules.get(module_name)
        if module is not None:
            module.connection_retries = 0
            module.max_connections = int(pool)
            module.pool_max_idle_per_host = idle


class E2BProvider(Provider):
    name = "e2b"
    required_env = ("E2B_API_KEY",)
    optional_env = ("E2B_DOMAIN", "E2B_API_URL", "E2B_SANDBOX_URL")
    asynchronous = True
    default_template = "base"

    def setup(self) -> None:
        # the SDK logs every request at INFO through httpx: 400k lines in a 100k run
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _configure_sdk_environment(self.settings.users_in_process)
        from e2b import AsyncSandbox  # noqa: import after the knobs are set

        self._sandbox_class = AsyncSandbox
        self._lean = os.environ.get(PLAIN_SDK_ENV, "") not in ("1", "true", "yes")
        # every exchange on loadgen.net.wirehttp: timed and judged on the wire
        self.wire_verdicts = self._lean and os.environ.get(TRANSPORT_ENV, "wire") != "pyqwest"
        # The lean command call passes request_timeout=0: the SDK then awaits the stream's
        # first event directly instead of through asyncio.wait_for (a task and a timer per
        # command); `timeout` still bounds the whole stream, and the lifecycle its own wait.
        self._request_timeout = 0 if self._lean else None
        if self._lean:
            self._sandbox_class = _lean_sandbox_class()
            _install_lean_control_plane()
            from e2b.sandbox_async.sandbox_api import SandboxApi

            self._cls_kill = SandboxApi._cls_kill
        self._opts = {"retries": 0, "request_timeout": self.settings.create_timeout_s + self.settings.late_create_window_s}
        if self.settings.base_url:
            # The real service is HTTP/2 over TLS; against the emulator, the SDK's own pyqwest paths speak
            # HTTP/1.1 unless LOADGEN_HTTP2=1 (then HTTP/2 by ALPN under --tls; pyqwest keeps cleartext on
            # HTTP/1.1). loadgen.wirehttp's follow LOADGEN_WIRE_HTTP2 (the API's) and HTTP/1.1 (envd's).
            self._opts.update(
                api_url=self.settings.base_url, sandbox_url=self.settings.base_url,
                http_version="2" if http2_requested() else "1.1", debug=False
            )

    async def create(self, tags: dict[str, str]):
        with exchange.recording() as phase:  # this task's context: the SDK's create runs in it
            handle = await self._sandbox_class.create(
                template=self.settings.template or self.default_template,
                timeout=int(self.settings.sandbox_lifetime_s),
                metadata=tags,
                **self._opts,
            )
        handle._loadgen_wire_create = phase.span(include_setup=False)
        return handle

    def wire_times(self, handle, operation="create"):
        """(sent, answered) of the create's, the destroy's or the last command's ("run") HTTP
        exchange, epoch seconds, or None.

        Taken by loadgen.net.wirehttp at the socket (the answer's time is the kernel's),
        so they leave out the SDK's own work before and after the exchange, the hops
        between the loop and the greenlet, and how busy this process was: the
        latency the lifecycle records. A command's include the connection set-up
        to the sandbox's host when one was needed, as the wire saw it."""
        return getattr(handle, "_loadgen_wire_" + operation, None)

    async def run(self, handle, command: str, timeout: float) -> CommandResult:
        from e2b import CommandExitException

        with exchange.recording() as phase:
            before = len(phase.exchanges)
            try:
                # judged on the wire (the transport's deadline): no loop-clock deadline on the stream
                result = await handle.commands.run(command, timeout=0 if self.wire_verdicts else timeout,
                                                   request_timeout=timeout if self._request_timeout is None else 0)
            except CommandExitException as exc:
                result = exc  # a non-zero exit: the same exit_code, stdout and stderr
        # one process.Start stream: the command, start to exit, with the set-up to the sandbox's host
        ours = phase.exchanges[before:]
        handle._loadgen_wire_run = (ours[0].wire_started, ours[0].answered) if len(ours) == 1 else None
        return CommandResult(result.exit_code, result.stdout or "", result.stderr or "")

    async def destroy(self, handle, timeout: float) -> bool:
        with exchange.recording() as phase:
            if not self._lean:
                killed = await handle.kill(request_timeout=timeout, retries=0)
            elif handle.connection_config.debug:
                return True
            else:  # what AsyncSandbox.kill does, minus its per-access functools.wraps descriptor
                killed = await self._cls_kill(sandbox_id=handle.sandbox_id,
                                              **handle.connection_config.get_api_params(request_timeout=timeout,
                                                                                        retries=0))
        handle._loadgen_wire_destroy = phase.span(include_setup=False)
        return killed

    async def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        opts = {k: v for k, v in self._opts.items() if k != "request_timeout"}
        return await self._sandbox_class.kill(sandbox_id, request_timeout=timeout, **opts)

    def sandbox_id(self, handle):
        return handle.sandbox_id

    def metadata(self, handle):
        return attributes(handle, ("sandbox_domain", "envd_version", "template_id"), sandbox_id=handle.sandbox_id)

    def classify(self, exc: BaseException) -> ErrorInfo:
        import e2b

        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, e2b.RateLimitException):
            return ErrorInfo(FailureClass.HTTP_ERROR.value, 429, "rate_limited", error_type, message)
        if isinstance(exc, e2b.AuthenticationException):
            return ErrorInfo(FailureClass.HTTP_ERROR.value, 401, "unauthorized", error_type, message)
        if isinstance(exc, (e2b.SandboxNotFoundException, getattr(e2b, "SandboxNotRunningException", ()))):
            # the sandbox is gone: e2b answers "not found" for a dead sandbox's calls
            status = status_code_of(exc) or (404 if isinstance(exc, e2b.SandboxNotFoundException) else 502)
            return ErrorInfo(FailureClass.HTTP_ERROR.value, status, "sandbox_gone", error_type, message)
        if isinstance(exc, e2b.TimeoutException):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        return classify_exception(exc)


# ---------------------------------------------------------------------------
# lean paths (see the module docstring); pinned to the e2b 2.6x SDK layout


_lean_class = None


def _lean_sandbox_class():
    """AsyncSandbox whose constructor builds only what a lifecycle uses (commands)."""
    global _lean_class
    if _lean_class is not None:
        return _lean_class
    from e2b import AsyncSandbox
    from e2b.api.client_async import get_envd_api
    from e2b.envd.client_async import create_rpc_client
    from e2b.envd.process import process_connect
    from e2b.sandbox_async.commands.command import Commands
    from e2b.sandbox_async.commands.pty import Pty
    from e2b.sandbox_async.filesystem.filesystem import Filesystem
    from e2b.sandbox_async.git import Git

    rpc_client = _wire_rpc_client_factory() or create_rpc_client

    class LeanCommands(Commands):
        # Commands.__init__ minus its eager health-probe httpx client (built on first failure)
        def __init__(self, envd_api_url, connection_config, envd_version, envd_api):
            self._connection_config = connection_config
            self._envd_version = envd_version
            self._rpc = rpc_client(process_connect.ProcessClient, envd_api_url, connection_config)
            self._envd_api = envd_api
            self._health_for = (connection_config, envd_api_url)
            self._health_api = None

        @property
        def _envd_health_api(self):
            if self._health_api is None:
                config, url = self._health_for
                self._health_api = get_envd_api(config, url, retry_connect=False)
            return self._health_api

    class LeanAsyncSandbox(AsyncSandbox):
        def __init__(self, **opts):
            super(AsyncSandbox, self).__init__(**opts)  # the base: ids, tokens, URLs; no clients
            self._lean_envd_api = None
            self._commands = LeanCommands(self.envd_api_url, self.connection_config, self._envd_version, None)
            self._lean_files = self._lean_pty = self._lean_git = None

        @property
        def _envd_api(self):
            if self._lean_envd_api is None:
                self._lean_envd_api = get_envd_api(self.connection_config, self.envd_api_url)
            return self._lean_envd_api

        @property
        def files(self):
            if self._lean_files is None:
                self._lean_files = Filesystem(self.envd_api_url, self._envd_version, self.connection_config,
                                              self._envd_api)
            return self._lean_files

        @property
        def pty(self):
            if self._lean_pty is None:
                self._lean_pty = Pty(self.envd_api_url, self.connection_config, self._envd_version, self._envd_api)
            return self._lean_pty

        @property
        def git(self):
            if self._lean_git is None:
                self._lean_git = Git(self._commands)
            return self._lean_git

        _filesystem = files
        _pty = pty
        _git = git

    LeanAsyncSandbox.__name__ = LeanAsyncSandbox.__qualname__ = "AsyncSandbox"
    _lean_class = LeanAsyncSandbox
    return _lean_class


class _LeanHttpxClient:
    """The httpx.AsyncClient the SDK's generated REST functions call, minus httpx.

    The generated functions only call ``request(method=, url=, json=/content=,
    headers=, params=)`` and read ``status_code``, ``content``, ``headers`` and
    ``json()`` of the answer: an ``httpx.Response`` built from pyqwest's
    buffered response. Anything else falls back to a real httpx client.
    """

    def __init__(self, api_client, wire, fallback):
        self._base = api_client._base_url.rstrip("/")
        headers = _httpx_default_headers()
        headers.update({k.lower(): v for k, v in api_client._headers.items()})
        headers[api_client.auth_header_name.lower()] = (
            f"{api_client.prefix} {api_client.token}" if api_client.prefix else api_client.token)
        self._headers = headers
        self._wire = wire  # a loadgen.net.wirehttp.WirePool, or a pyqwest Client (LOADGEN_E2B_TRANSPORT=pyqwest)
        self._timeout = api_client._timeout.read if api_client._timeout is not None else None
        self._fallback = fallback

    def __getattr__(self, name):  # anything but request(): the real client
        return getattr(self._fallback(), name)

    async def request(self, method, url, *, json=None, content=None, headers=None, params=None, **kwargs):
        asyncio, httpx, orjson, adapter = _LEAN_MODULES or _lean_modules()
        if kwargs or params or not isinstance(url, str) or url.startswith(("http://", "https://")):
            return await self._fallback().request(method, url, json=json, content=content, headers=headers,
                                                  params=params, **kwargs)
        all_headers = self._headers
        if json is not None:
            content = orjson.dumps(json)
            all_headers = dict(all_headers, **{"content-type": "application/json"})
        if headers:
            all_headers = dict(all_headers)
            all_headers.update({k.lower(): v for k, v in headers.items()})
        if content is not None:
            all_headers = dict(all_headers, **{"content-length": str(len(content))})
        method = method.upper()
        if isinstance(self._wire, WirePool):
            status, response_headers, body = await self._wire_exchange(method, url, all_headers, content)
        else:
            status, response_headers, body = await self._pyqwest_exchange(method, url, all_headers, content)
        # (no .request: the generated functions never read it, and building one parses the URL again)
        if any(k.lower() == "content-encoding" for k, _ in response_headers):
            response = httpx.Response(status, headers=response_headers, stream=httpx.ByteStream(body))
            response.read()  # decodes gzip/deflate/br as httpx would
            return response
        return httpx.Response(status, headers=response_headers, content=body)

    async def _wire_exchange(self, method, url, headers, content):
        """One exchange on wirehttp (which records it on the current phase), raising what httpx would."""
        _, httpx, _, _ = _LEAN_MODULES
        try:
            answer = await self._wire.request(method, self._base + url, headers, content, self._timeout)
        except WireError as e:
            twin = getattr(httpx, type(e).__name__, None)
            if twin is None:  # the generator's own failure: httpx has no name for it, and it must stay ours
                raise
            raise twin(str(e)) from e
        return answer.status, answer.headers, answer.content

    async def _pyqwest_exchange(self, method, url, headers, content):
        asyncio, httpx, _, adapter = _LEAN_MODULES
        ReadError, RemoteProtocolError, StreamError, TooManyRedirects, WriteError = _PYQWEST_ERRORS
        try:
            sent = time.time()
            call = self._wire.execute(method, self._base + url, headers=headers, content=content)
            if self._timeout:
                async with asyncio.timeout(self._timeout):  # no extra task, unlike wait_for
                    answer = await call
            else:
                answer = await call
        except StreamError as e:
            raise adapter.map_stream_error(e) from e
        except RemoteProtocolError as e:
            raise adapter.map_remote_protocol_error(e) from e
        except TooManyRedirects as e:
            raise httpx.TooManyRedirects(str(e)) from e
        except ConnectionError as e:
            raise adapter.map_connection_error(e) from e
        except TimeoutError as e:
            raise adapter.map_timeout_error(e) from e
        except (ReadError, WriteError) as e:
            raise adapter.map_network_error(e) from e
        phase = exchange.current()
        if phase is not None:  # timed on the loop: the A/B baseline
            phase.record(Exchange(sent, time.time()))
        return answer.status, list(answer.headers.items()), bytes(answer.content)


class _WireRpcTransport:
    """The pyqwest Transport the SDK's envd RPC clients send on, over loadgen.wirehttp.

    A command is one server-streaming ``process.Process/Start`` exchange whose
    answer ends when the process exits, so it is read whole and handed back as
    one body; wirehttp records the exchange (set-up included when the
    sandbox's host needed a new connection) on the command's phase. The
    phase's timeout goes to the server as ``connect-timeout-ms``, since the
    SDK's own deadline is off when the wire judges."""

    def __init__(self, pool):
        import pyqwest

        self._pool = pool
        self._response, self._headers = pyqwest.Response, pyqwest.Headers

    async def execute(self, request):
        content = request.content
        if content is not None and not isinstance(content, (bytes, bytearray, memoryview)):
            content = b"".join([bytes(chunk) async for chunk in content])
        headers = dict(request.headers.items())
        phase = exchange.current()
        if phase is not None and phase.timeout_s and "connect-timeout-ms" not in headers:
            headers["connect-timeout-ms"] = str(max(1, int(phase.timeout_s * 1000)))
        answer = await self._pool.request(request.method, request.url, headers, bytes(content) if content else None)
        return self._response(status=answer.status, headers=self._headers(answer.headers), content=answer.content)


def _wire_rpc_client_factory():
    """create_rpc_client's twin on one wire pool (None with LOADGEN_E2B_TRANSPORT=pyqwest)."""
    if os.environ.get(TRANSPORT_ENV, "wire") == "pyqwest":
        return None
    from pyqwest import Client

    from e2b.envd.client_async import PlainHTTPErrorTransport, create_rpc_client as the_sdks
    from e2b.envd.client_shared import ENVD_JSON_CODEC, ENVD_RPC_COMPRESSION
    from e2b.envd.interceptors import build_interceptors

    # As many idle connections as the control plane keeps (one per sandbox in flight), not the SDK
    # pool's 64: an idle wirehttp connection is a socket and a few hundred bytes (answers are read into
    # one buffer per process), so against one shared data-plane origin (the emulator, a proxy) the
    # commands reuse the connections of earlier ones instead of opening (and later resetting) one
    # each: at 8,333 sandboxes in a process that was 2 of its 3.8 connections a lifecycle. Against
    # the real service each sandbox's envd is a host of its own, and this changes nothing.
    transport = PlainHTTPErrorTransport(_WireRpcTransport(WirePool(
        max_idle_per_origin=int(os.environ.get("E2B_MAX_CONNECTIONS", _POOL_FLOOR)),
        idle_expiry_s=_IDLE_EXPIRY_S)))

    def create_rpc_client(client_cls, base_url, config):
        if config.proxy is not None:
            return the_sdks(client_cls, base_url, config)
        return client_cls(base_url, codec=ENVD_JSON_CODEC, interceptors=build_interceptors(config, base_url),
                          http_client=Client(transport), **ENVD_RPC_COMPRESSION)

    return create_rpc_client


_LEAN_MODULES: tuple = ()
_PYQWEST_ERRORS: tuple = ()


def _lean_modules() -> tuple:
    """The lean client's imports, resolved once (they run on every request otherwise)."""
    global _LEAN_MODULES, _PYQWEST_ERRORS
    import asyncio

    import httpx
    import orjson
    import pyqwest
    from pyqwest.httpx import _transport as adapter

    _PYQWEST_ERRORS = (pyqwest.ReadError, pyqwest.RemoteProtocolError, pyqwest.StreamError, pyqwest.TooManyRedirects,
                       pyqwest.WriteError)
    _LEAN_MODULES = (asyncio, httpx, orjson, adapter)
    return _LEAN_MODULES


def _httpx_default_headers() -> dict:
    """What a fresh httpx client sends on its own (accept, accept-encoding, user-agent), so the wire is unchanged."""
    import httpx

    return {k.lower(): v for k, v in httpx.Headers(httpx.AsyncClient(transport=httpx.MockTransport(None)).headers).items()
            if k.lower() != "connection"}


_api_clients: dict = {}
_control_plane: list = []


def _control_plane_pool() -> WirePool:
    """The one pool of the API's connections, whatever the configuration (a create's and a kill's
    clients differ by their timeouts, and share the connections): the API is a control plane, so HTTP/2
    where it offers it (ALPN over TLS), a hundred exchanges in flight per connection; over HTTP/1.1 one
    connection per create in flight, kept for the kills unless idle for long."""
    if not _control_plane:
        _control_plane.append(WirePool(max_idle_per_origin=int(os.environ.get("E2B_MAX_CONNECTIONS", _POOL_FLOOR)),
                                       idle_expiry_s=_IDLE_EXPIRY_S, http2=wireh2.Origin))
    return _control_plane[0]


def _install_lean_control_plane() -> None:
    """Route the SDK's control-plane calls (create, kill) through one cached lean client per configuration."""
    import e2b.sandbox_async.sandbox_api as sandbox_api

    original = getattr(sandbox_api.get_api_client, "_loadgen_original", sandbox_api.get_api_client)

    def get_api_client(config, **kwargs):
        if kwargs or config.retries or config.proxy is not None or config.logger is not None:
            return original(config, **kwargs)  # what loadgen never uses: the SDK as shipped
        key = (config.api_key, config.api_url, config.request_timeout, config.http_version,
               tuple(sorted((config.headers or {}).items())))
        client = _api_clients.get(key)
        if client is None:
            from pyqwest import Client

            from e2b.api import proxy_to_config
            from e2b.api.client_async import get_pyqwest_transport

            client = original(config)
            spare: list = []

            def real_httpx_client(config=config, spare=spare):  # built only if a call needs real httpx
                if not spare:
                    spare.append(original(config).get_async_httpx_client())
                return spare[0]

            if os.environ.get(TRANSPORT_ENV, "wire") == "pyqwest":
                wire = Client(get_pyqwest_transport(proxy_to_config(config.proxy), http_version=config.http_version))
            else:
                wire = _control_plane_pool()
            client.set_async_httpx_client(_LeanHttpxClient(client, wire, real_httpx_client))
            _api_clients[key] = client
        return client

    get_api_client._loadgen_original = original
    sandbox_api.get_api_client = get_api_client
