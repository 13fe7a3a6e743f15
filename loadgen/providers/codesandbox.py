"""codesandbox, through the official Python SDK `together-sandbox` (4.1.1).

The SDK is asyncio-only (httpx + SSE), so the adapter is asynchronous: its
coroutines run on the process's asyncio bridge (loadgen.net.aio) and never touch
gevent's hub.

What the SDK does, per operation (checked in the installed source):
- create: `POST {base}/v1/sandboxes` (`Authorization: Bearer $TOGETHER_API_KEY`),
  then, while the answer says `starting`, `POST /v1/sandboxes/{id}/wait` (a
  long poll) until `running`; any other settled status raises RuntimeError.
  The `running` sandbox names its agent: `agent.url` and `agent.token`.
- run: `POST {agent}/api/v1/execs` `{"command","args","autostart":true}`, then
  the SSE stream `GET {agent}/api/v1/stream/execs/{id}/io` until an event
  carries `exitCode`. Output is stdout and stderr interleaved, in one string.
- destroy: `POST /v1/sandboxes/{id}/terminate`, then `/wait` until `terminated`.

The rules of base.py, and how they are kept here:
- Retries off: the SDK retries 408/429/5xx and transport errors 3 times by
  default (also when no RetryConfig is given); `RetryConfig(max_attempts=1)`
  is passed everywhere.
- Lifetime: sandboxes have no lifetime unless `ttl` is set. The adapter sets
  `ttl = settings.sandbox_lifetime_s` (longer than the run), so a sandbox whose
  destroy fails still ends on its own.
- Pools: no pool is shared, so none caps the process. httpcore's pool scans
  every connection for every queued request (`_assign_requests_to_connections`),
  so ONE pool sized for 1,000 in-flight calls costs O(n^2) CPU: 200
  lifecycles through one shared pool took 32 s of CPU. Instead every sandbox
  gets its own management client (the SDK's `AuthenticatedClient`, with
  `httpx_args={"transport": ...}`) and its own agent client (the SDK builds
  one per sandbox anyway; the adapter swaps in its own through
  `set_async_httpx_client`), each with httpx's default per-client limits
  (100 connections; a sandbox has at most two calls in flight). All clients
  share ONE SSL context: httpx builds a new one per client otherwise, about
  20 ms of CPU each (20 s for 1,000 sandboxes, on the loop thread). Both
  clients are closed when the sandbox is destroyed (or its create failed).
  Proxies from the environment are not used (`trust_env=False`); the SSL
  context still trusts `SSL_CERT_FILE` when it is set (how an emulator under
  `--tls` is trusted). HTTP/1.1, as the SDK's httpx default, unless
  `LOADGEN_HTTP2=1` (base.httpx_versions).
- Tags: the create carries `tags={"run_id", "sandbox_idx"}`.

Measurement: every client's transport is loadgen's timed client
(`loadgen.net.wirehttpx.WireAsyncTransport`, one pool for the process, on
the bridge's loop), so each exchange is timed by the kernel's stamps and
judged on the wire (`wire_verdicts`): a busy generator never turns an answer
that arrived in time into a timeout, and the latency leaves out this
process's queueing (`loadgen.net.exchange`). The exec's SSE stream is read
as it arrives; it counts as answered when the event with the exit code
arrived (the last bytes the SDK read). Each operation is several exchanges
(create and wait, exec and its stream, terminate and wait): it is timed by
the time they were on the wire, the SDK's work between them left out. The
SDK still builds every request and parses every answer. With the timed
client, one management client serves every sandbox (its pool has no
per-request scan); each sandbox still gets its own agent client, on the
same pool.

Client cost: on the timed transport, both clients are ``_lean_client_class()``,
an ``httpx.AsyncClient`` that keeps httpx's request path but for two of its
costs (together a quarter of the loop thread's time in a burst, BENCHMARKS.md
§11): the merge of the SDK's path onto the client's base URL, which parsed
the path and then the whole URL again, is put together from the base URL's
parsed parts (checked against httpx's own merge at start; a mismatch turns
it off), and the cookie jar reads an answer only when it sets a cookie
(http.cookiejar reads nothing else, but httpx wrapped every answer for it).
The bytes on the wire are the same (tests/test_provider_codesandbox.py).
``LOADGEN_CODESANDBOX_PLAIN_SDK=1`` gives both clients httpx's own class.

`LOADGEN_CODESANDBOX_TRANSPORT=sdk` sends on the SDK's own httpx transports
instead (the per-sandbox clients above; latency timed around each SDK call,
by the greenlet's clock), for A/B measurements and as an escape hatch should
an SDK upgrade break the timed one. `LOADGEN_HTTP2=1` implies it: the timed
client speaks HTTP/1.1 only.
"""

from __future__ import annotations

import logging
import os
import re
import uuid

from loadgen.net import exchange
from loadgen.providers.base import CommandResult, httpx_versions, Provider, transport_choice
from loadgen.result import ErrorInfo, FailureClass, classify_exception, truncate

DEFAULT_BASE_URL = "https://api.bartender.codesandbox.io"  # together_sandbox._configuration.DEFAULT_BASE_URL
SHELL = ("bash", "-lc")  # the probe runs in a login shell, as e2b's does
TRANSPORT_ENV = "LOADGEN_CODESANDBOX_TRANSPORT"
PLAIN_SDK_ENV = "LOADGEN_CODESANDBOX_PLAIN_SDK"  # "1": httpx's own client class for both clients
_SAFE_PATH = re.compile(r"/?[A-Za-z0-9_.~/-]*\Z")  # a path httpx's URL parser leaves as it is (no query)
_PROBE_PATH = "/api/v1/stream/execs/probe-1/io"
_IDLE_EXPIRY_S = 30.0  # idle connections kept this long by the timed client's pool


def _snapshot_args(template):
    """A template that parses as a UUID is a snapshot id, anything else an alias."""
    if not template:
        return {}
    try:
        return {"snapshot_id": str(uuid.UUID(template))}
    except ValueError:
        return {"snapshot_alias": template}


class Handle:
    """One sandbox: the SDK's Sandbox, the management client it was made with (closed with it unless
    shared), and its operations' times on the wire."""

    __slots__ = ("sandbox", "api", "owns_api", "wire_create", "wire_run", "wire_destroy")

    def __init__(self, sandbox, api, owns_api: bool = True):
        self.sandbox = sandbox
        self.api = api
        self.owns_api = owns_api
        self.wire_create = self.wire_run = self.wire_destroy = None

    @property
    def sandbox_id(self) -> str:
        return self.sandbox.id

    async def close(self) -> None:
        await self.sandbox.close()
        if self.owns_api:
            await _close_api(self.api)


async def _close_api(api) -> None:
    await api.get_async_httpx_client().aclose()


class CodeSandboxProvider(Provider):
    name = "codesandbox"
    required_env = ("TOGETHER_API_KEY",)
    optional_env = ("TOGETHER_BASE_URL",)
    asynchronous = True
    default_template = None  # the API's default snapshot

    def setup(self) -> None:
        # Import here, on the gevent side, once: the first creates must not pay
        # for importing the SDK on the loop thread.
        import httpx
        from together_sandbox import HttpError, RetryConfig, Sandbox, SandboxesNamespace
        from together_sandbox.api.client import AuthenticatedClient as ApiClient
        from together_sandbox.sandbox.client import AuthenticatedClient as SandboxClient

        self._httpx, self._HttpError, self._Sandbox, self._Namespace = httpx, HttpError, Sandbox, SandboxesNamespace
        self._ApiClient, self._SandboxClient = ApiClient, SandboxClient
        # httpx logs every request at INFO: 400k lines in a 100k run
        logging.getLogger("httpx").setLevel(logging.WARNING)
        s = self.settings
        base = (s.base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.base_url = base
        self._api_base = base + "/v1"  # as TogetherSandbox does
        self._api_key = os.environ.get("TOGETHER_API_KEY", "")
        self._retry = RetryConfig(max_attempts=1)
        self._ssl = httpx.create_ssl_context()  # reads SSL_CERT_FILE
        self._versions = httpx_versions(base)
        # A create may answer late and must still be seen (the late-create window);
        # the lifecycle puts its own, shorter deadline on every call.
        self._api_timeout = httpx.Timeout(s.create_timeout_s + s.late_create_window_s, connect=s.create_timeout_s)
        self._agent_timeout = httpx.Timeout(s.command_timeout_s + 5.0, connect=s.command_timeout_s)
        self.transport = transport_choice(TRANSPORT_ENV)
        self.wire_verdicts = self.transport == "wire"
        self._wire = self._shared_api = None
        self.lean = self.wire_verdicts and os.environ.get(PLAIN_SDK_ENV, "").strip().lower() not in ("1", "true", "yes")
        self._client_class = _lean_client_class() if self.lean else httpx.AsyncClient
        if self.wire_verdicts:
            from loadgen.net.wirehttp import WirePool
            from loadgen.net.wirehttpx import WireAsyncTransport

            self._wire = WireAsyncTransport(WirePool(max_idle_per_origin=max(256, 2 * int(s.users_in_process) + 16),
                                                     idle_expiry_s=_IDLE_EXPIRY_S))
            self._shared_api = self._new_api_client()

    def _transport(self):
        if self._wire is not None:
            return self._wire  # one timed pool for every client (closing a client leaves it open)
        return self._httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False, **self._versions)

    def _new_api_client(self):
        api = self._ApiClient(base_url=self._api_base, token=self._api_key, prefix="Bearer",
                              timeout=self._api_timeout,
                              httpx_args={"transport": self._transport(), "trust_env": False})
        if self.lean:  # the client the SDK would build (get_async_httpx_client), of the lean class
            api._headers[api.auth_header_name] = f"{api.prefix} {api.token}"
            api.set_async_httpx_client(self._client_class(
                base_url=api._base_url, cookies=api._cookies, headers=api._headers, timeout=api._timeout,
                verify=api._verify_ssl, follow_redirects=api._follow_redirects, **api._httpx_args))
        return api

    def _api_client(self):
        """(management client, whether the caller owns it): the shared one on the timed transport."""
        if self._shared_api is not None:
            return self._shared_api, False
        return self._new_api_client(), True

    def _connect_agent(self, sandbox, api, owns_api: bool) -> Handle:
        """The SDK's sandbox, rebuilt around an agent client on the shared SSL context (or the timed pool)."""
        agent = sandbox.vm_info.agent
        client = self._SandboxClient(base_url=agent.url, token=agent.token, prefix="Bearer")
        client.set_async_httpx_client(self._client_class(
            base_url=agent.url, headers={"Authorization": f"Bearer {agent.token}"},
            transport=self._transport(), timeout=self._agent_timeout, trust_env=False))
        return Handle(self._Sandbox(sandbox.vm_info, client, api, retry=self._retry), api, owns_api)

    async def create(self, tags: dict[str, str]) -> Handle:
        api, owns_api = self._api_client()
        try:
            with exchange.recording() as phase:
                sandbox = await self._Namespace(api, retry=self._retry).create(
                    ttl=int(self.settings.sandbox_lifetime_s), tags=tags,
                    **_snapshot_args(self.settings.template or self.default_template))
        except BaseException:
            if owns_api:
                await _close_api(api)
            raise
        handle = self._connect_agent(sandbox, api, owns_api)
        handle.wire_create = phase.span(include_setup=False)
        return handle

    async def run(self, handle: Handle, command: str, timeout: float) -> CommandResult:
        handle.wire_run = None
        with exchange.recording() as phase:
            result = await handle.sandbox.execs.exec(SHELL[0], [SHELL[1], command])
        handle.wire_run = phase.span(include_setup=True)
        return CommandResult(result["exit_code"], result.get("output") or "", "")

    async def destroy(self, handle: Handle, timeout: float) -> bool:
        handle.wire_destroy = None
        gone = False
        try:
            with exchange.recording() as phase:
                await handle.sandbox.terminate(snapshot=None)  # ephemeral teardown: no snapshot is taken
        except self._HttpError as exc:
            if exc.status != 404:
                raise
            gone = True
        finally:
            await handle.close()
        handle.wire_destroy = phase.span(include_setup=False)
        return not gone

    async def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        api, owns_api = self._api_client()
        try:
            await self._Namespace(api, retry=self._retry).terminate(sandbox_id, snapshot=None)  # ephemeral
        except self._HttpError as exc:
            if exc.status == 404:
                return False
            raise
        finally:
            if owns_api:
                await _close_api(api)
        return True

    def wire_times(self, handle: Handle, operation="create"):
        """(sent, answered) of the latest create, command ("run") or terminate on ``handle``, as the timed
        transport saw their exchanges (epoch seconds; the SDK's work between them left out; a command's
        from its connection's set-up), or None on the SDK's own transports."""
        if not self.wire_verdicts:
            return None
        return getattr(handle, "wire_" + operation, None)

    def sandbox_id(self, handle: Handle):
        return handle.sandbox_id

    def metadata(self, handle: Handle):
        vm = handle.sandbox.vm_info
        info = {"sandbox_id": str(vm.id)}
        for attr in ("status", "status_reason", "snapshot_id", "cpu", "memory_bytes", "ttl", "project_id"):
            value = getattr(vm, attr, None)
            if value is not None:
                info[attr] = value if isinstance(value, (int, float)) else str(value)
        version = getattr(vm.agent, "version", None)
        if version:
            info["agent_version"] = version
        return info

    def classify(self, exc: BaseException) -> ErrorInfo:
        import httpx
        from together_sandbox import HttpError

        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, HttpError):
            status = exc.status
            if not isinstance(status, int) or status < 100:
                # status 0: the SDK wrapped a transport failure; the cause says which
                cause = exc.__cause__
                cause_type = type(cause).__name__ if cause is not None else error_type
                if isinstance(cause, httpx.TimeoutException):
                    return ErrorInfo(FailureClass.TIMEOUT.value, None, None, cause_type, message)
                return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, cause_type, message)
            agent_call = str(exc).startswith("Failed to sandbox.")
            if status == 429:
                code = "rate_limited"
            elif status in (401, 403):
                code = "unauthorized"
            elif agent_call and status in (404, 410, 502):
                code = "sandbox_gone"  # the agent's edge has no sandbox behind it
            else:
                code = exc.code or str(status)
            return ErrorInfo(FailureClass.HTTP_ERROR.value, status, code, error_type, message)
        if type(exc) is RuntimeError:
            text = str(exc)
            if "without an exit code" in text:
                code = "no_exit_code"  # the exec stream ended early
            elif "failed to start" in text:
                code = "failed_to_start"
            elif "instead of reaching 'running'" in text or "could not be recovered" in text:
                code = "sandbox_gone"
            else:
                code = None
            return ErrorInfo(FailureClass.OTHER.value, None, code, error_type, message)
        return classify_exception(exc)


_lean_class = None
_merges_alike: dict = {}  # base URL path -> whether the lean merge gave httpx's URL for the probe path


def _lean_client_class():
    """``httpx.AsyncClient`` with the lean URL merge and cookie reading (see the module docstring)."""
    global _lean_class
    if _lean_class is not None:
        return _lean_class
    import httpx

    class SetCookieJar(httpx.Cookies):
        """httpx's cookie jar, which is handed an answer only when the answer sets a cookie."""

        def extract_cookies(self, response) -> None:
            headers = response.headers
            if "set-cookie" in headers or "set-cookie2" in headers:
                super().extract_cookies(response)

    class LeanAsyncClient(httpx.AsyncClient):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._cookies = SetCookieJar(self._cookies)
            self._lean_root = None
            base = self.base_url
            if base.raw_path and "_" not in base.host and not base.query and not base.userinfo and not base.fragment:
                self._lean_root = base.raw_path.decode("ascii")
                if _merges_alike.get(base.raw_path) is None:  # asked once per base path
                    _merges_alike[base.raw_path] = self._merge_url(_PROBE_PATH) == httpx.AsyncClient._merge_url(
                        self, _PROBE_PATH)
                if not _merges_alike[base.raw_path]:
                    self._lean_root = None  # this httpx merges otherwise: its own way, always

        @property
        def cookies(self):
            return self._cookies

        @cookies.setter
        def cookies(self, cookies) -> None:
            self._cookies = SetCookieJar(cookies)

        def _merge_url(self, url):
            if self._lean_root is None or type(url) is not str or not _SAFE_PATH.match(url) or "/." in url:
                return super()._merge_url(url)
            merged = httpx.URL.__new__(httpx.URL)
            merged._uri_reference = self.base_url._uri_reference._replace(path=self._lean_root + url.lstrip("/"))
            return merged

    LeanAsyncClient.__name__ = LeanAsyncClient.__qualname__ = "AsyncClient"
    _lean_class = LeanAsyncClient
    return _lean_class
