"""runloop, through the official `runloop-api-client` SDK's sync client.

Why sync: the sync client is httpx over the standard socket module, so under
gevent's monkey-patching every request yields to the hub; each operation runs
in a greenlet (``asynchronous = False``).

What the SDK does on its own, and what this adapter does about it:

- Retries: 5 by default, on connection errors, 408, 409, 429 and 5xx.
  ``max_retries=0``. (Its status long polls already pass ``max_retries=0``.)
- Pools: without an ``http_client`` it builds process-wide sharded pools of
  20 connections each, which capped in-flight calls at 160 and failed
  connects at 1,000 concurrent flows. The adapter hands it its own
  ``httpx.Client``s, on HTTP/1.1 (one connection per request in flight, as
  the SDK's own default; ``LOADGEN_HTTP2=1`` switches them to HTTP/2, see
  base.httpx_versions), each with limits above the users in the process.
- TLS: the clients share one SSL context, which trusts ``SSL_CERT_FILE`` when
  it is set (httpx's rule; how an emulator under ``--tls`` is trusted).
- httpcore's pool is quadratic: every request scans every connection of its
  pool for every queued request (and polls each idle socket), so one pool
  with 200 concurrent flows cost 17 s of CPU for 200 lifecycles, all of it
  on the hub. The adapter therefore keeps one client per ``_SHARD_USERS``
  users and pins each sandbox to one of them (by its index), which keeps the
  cost per request flat.
- Lifetime: a devbox shuts itself down after
  ``launch_parameters.keep_alive_time_seconds`` (default 1 h, at most 48 h);
  it is set to the run's sandbox lifetime.
- Long polls: ``create_and_await_running`` and
  ``execute_and_await_completion`` fall back to server long polls when the
  first answer is not final. Those polls treat a connection error or a 408
  as "not yet" and poll again, until their ``PollingConfig`` runs out; the
  adapter bounds them with the create timeout plus the late-create window
  (create) and the command timeout (commands), so nothing outlives the
  lifecycle's deadline by more than that. The first request of each call
  has no such leniency: its failure is raised.
- Platform headers: computed on first use with ``platform.platform()``,
  which runs a subprocess; under gevent a burst of first requests computed
  them once each (1,000 forks, 7 s of CPU). ``setup`` fills the SDK's cache.
- ``shutdown`` takes no per-call timeout: the client's default timeout (the
  destroy timeout) applies to it.

Measurement: the SDK's HTTP goes through loadgen's timed client
(``loadgen.net.wirehttpx.WireSyncTransport`` under its ``httpx.Client``; the
exchange runs on the hub, in the greenlet that makes it: ``loadgen.net.greenwire``), so
every create, command and shutdown is timed by the kernel's stamps of its
exchanges and judged on the wire (``wire_verdicts``): a busy generator never
turns an answer that arrived in time into a timeout, and the latency leaves
out this process's queueing (``loadgen.net.exchange``). A call of several
exchanges (a long poll after the first answer) is timed by the time its
exchanges were on the wire. The SDK still builds every request and parses
every answer. One ``httpx.Client`` then serves every sandbox (the timed
client's pool has no per-request scan, so the sharding below is for the
SDK's own transport only).

Client cost: the SDK's own Python work per request, not the HTTP, is what a
burst pays for (BENCHMARKS.md §8). On the timed transport the adapter takes
out the layers below the SDK that redo what it has just done, and keeps the
SDK's code path (every call still goes through its resource methods, its
options, its body transform and serialisation, its headers, its answer
parsing into models and its exception mapping):

- ``_build_request``: the SDK builds its headers and body as shipped; the
  ``httpx.Request`` is then put together from them (the client's headers
  merged in, ``Host`` and ``Content-Length`` where httpx puts them) instead
  of going through httpx's ``build_request``, which parsed the URL twice more
  and normalised every header again. A request it does not cover (query
  parameters, files, an SDK-set ``Host``...) is built by the SDK as shipped.
- ``httpx.Client.send``: a lean request goes straight to the timed exchange,
  past httpx's auth flow (the SDK's bearer token is a header), its cookie
  jar (consulted only when an answer sets a cookie) and its redirect loop
  (taken over by httpx when an answer is a redirect).
- The SDK's ``construct_type`` of each answer, its ``maybe_transform`` of the
  devbox calls' bodies and each post's ``FinalRequestOptions`` (the lean
  ``post`` does what the SDK's does, with its options made the planned way;
  a post with files or raw content is the SDK's own): made by ``loadgen.providers.stainless``, which
  reads each model and params type once instead of on every answer and
  request (a create's answer took 308-345 us of CPU the SDK's way, 34 us
  this way; a command's 82-86 us against 4 us). The same models come out
  (checked at start against the SDK's own on sample answers of every field;
  a difference leaves parsing to the SDK, with a warning). The bodies'
  transform is the name the devbox resource module calls, so it is the
  process's once a lean client is made.

The bytes on the wire are the same (tests/test_provider_runloop.py checks
method, path, every header in order and the body against the SDK as
shipped). ``LOADGEN_RUNLOOP_PLAIN_SDK=1`` turns the lean path off (the SDK's
request path exactly as shipped, on the same timed transport), for A/B
measurements and as an escape hatch should an SDK upgrade break it.

``LOADGEN_RUNLOOP_TRANSPORT=sdk`` sends on the SDK's own httpx transport
instead (sharded clients as above, the SDK's request path as shipped;
latency timed around each SDK call, by this greenlet's clock), for A/B
measurements and as an escape hatch should an SDK upgrade break the timed
one. ``LOADGEN_HTTP2=1`` implies it: the timed client speaks HTTP/1.1 only.

Length: the adapter and its lean request path, which subclasses the SDK's
client and only makes sense next to it.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Optional

from loadgen.net import exchange
from loadgen.providers.base import attributes, CommandResult, httpx_versions, Provider, transport_choice
from loadgen.result import ErrorInfo, FailureClass, classify_exception, truncate

log = logging.getLogger("loadgen.providers.runloop")

_POOL_FLOOR = 256
_SHARD_USERS = 4  # sandboxes per httpx client (see the module docstring)
_MAX_KEEP_ALIVE_S = 172800  # Runloop's documented maximum (48 h)
_IDLE_EXPIRY_S = 60.0  # idle connections kept this long (httpx's keepalive_expiry, as before)
TRANSPORT_ENV = "LOADGEN_RUNLOOP_TRANSPORT"
PLAIN_SDK_ENV = "LOADGEN_RUNLOOP_PLAIN_SDK"


class Devbox:
    """A created devbox (the SDK's DevboxView) and the client it is pinned to."""

    __slots__ = ("view", "client", "id", "wire_create", "wire_run", "wire_destroy")

    def __init__(self, view, client, wire_create=None):
        self.view = view
        self.client = client
        self.id = view.id
        self.wire_create = wire_create  # (sent, answered) on the wire, when timed there
        self.wire_run = self.wire_destroy = None


class RunloopProvider(Provider):
    name = "runloop"
    required_env = ("RUNLOOP_API_KEY",)
    optional_env = ("RUNLOOP_BASE_URL",)
    asynchronous = False
    default_template: Optional[str] = None  # no blueprint: Runloop's default image

    def setup(self) -> None:
        import httpx
        from runloop_api_client import Runloop
        from runloop_api_client.lib.polling import PollingConfig

        # httpx logs every request at INFO: 400k lines in a 100k run
        logging.getLogger("httpx").setLevel(logging.WARNING)
        s = self.settings
        self.pool_size = max(_POOL_FLOOR, int(s.users_in_process) * 2 + 16)
        base_url = s.base_url or os.environ.get("RUNLOOP_BASE_URL") or None
        default_timeout = httpx.Timeout(s.destroy_timeout_s, connect=min(10.0, s.destroy_timeout_s))
        limits = httpx.Limits(max_connections=self.pool_size, max_keepalive_connections=self.pool_size,
                              keepalive_expiry=60.0)
        self.transport = transport_choice(TRANSPORT_ENV)
        self.wire_verdicts = self.transport == "wire"
        # the lean path needs the timed transport (its send is that transport's exchange)
        self.lean = self.wire_verdicts and os.environ.get(PLAIN_SDK_ENV, "").strip().lower() not in ("1", "true", "yes")
        client_class, http_client_class = Runloop, httpx.Client
        if self.wire_verdicts:
            from loadgen.net import greenwire
            from loadgen.net.wirehttpx import WireSyncTransport

            wire = WireSyncTransport(greenwire.pool(max_idle_per_origin=self.pool_size, idle_expiry_s=_IDLE_EXPIRY_S))
            shards, client_args = 1, {"transport": wire}
            if self.lean:
                client_class, lean_http_client = _lean_sdk_classes()
                http_client_class, client_args = lean_http_client, {"wire": wire}
        else:
            ssl_context = httpx.create_ssl_context()  # one for all clients: each costs ~20 ms of CPU
            shards = max(1, math.ceil(int(s.users_in_process) / _SHARD_USERS))
            client_args = {"limits": limits, "verify": ssl_context, **httpx_versions(base_url)}
        self.clients = []
        for _ in range(shards):
            http_client = http_client_class(timeout=default_timeout, follow_redirects=True, **client_args)
            self.clients.append(client_class(
                bearer_token=os.environ.get("RUNLOOP_API_KEY"),
                base_url=base_url,
                max_retries=0,
                timeout=default_timeout,
                http_client=http_client,
            ))
        self._next_shard = 0
        # The SDK's platform headers are computed on first use (platform.platform()
        # runs a subprocess) and then cached; 1,000 greenlets arriving together
        # would each compute them, forking 1,000 times. Fill the cache now.
        self.clients[0].platform_headers()
        self.create_window_s = s.create_timeout_s + s.late_create_window_s
        self.create_polling = PollingConfig(interval_seconds=1.0, max_attempts=max(1, math.ceil(self.create_window_s)),
                                            timeout_seconds=self.create_window_s)
        self.keep_alive_s = int(min(_MAX_KEEP_ALIVE_S, max(60, s.sandbox_lifetime_s)))
        if s.sandbox_lifetime_s > _MAX_KEEP_ALIVE_S:
            log.warning("runloop: sandbox lifetime %d s is above Runloop's maximum keep-alive; using %d s",
                        s.sandbox_lifetime_s, _MAX_KEEP_ALIVE_S)
        log.info("runloop: api %s, %d clients of %d connections (%s transport%s), keep-alive %d s",
                 base_url or "(SDK default)", len(self.clients), self.pool_size, self.transport,
                 ", lean SDK path" if self.lean else "", self.keep_alive_s)

    def _client_for(self, tags: dict[str, str]):
        try:
            shard = int(tags["sandbox_idx"])
        except (KeyError, ValueError):
            shard = self._next_shard
            self._next_shard += 1
        return self.clients[shard % len(self.clients)]

    # -- the operations ----------------------------------------------------------
    def create(self, tags: dict[str, str]):
        kwargs: dict[str, Any] = {}
        if self.settings.template:
            kwargs["blueprint_name"] = self.settings.template
        client = self._client_for(tags)
        with exchange.recording() as phase:
            view = client.devboxes.create_and_await_running(
                launch_parameters={"keep_alive_time_seconds": self.keep_alive_s},
                metadata=dict(tags),
                polling_config=self.create_polling,
                timeout=self.create_window_s,
                **kwargs,
            )
        return Devbox(view, client, phase.span(include_setup=False))

    def run(self, handle, command: str, timeout: float) -> CommandResult:
        from runloop_api_client.lib.polling import PollingConfig

        optimistic = int(max(1, min(25, math.ceil(timeout))))
        handle.wire_run = None
        with exchange.recording() as phase:
            result = handle.client.devboxes.execute_and_await_completion(
                handle.id,
                command=command,
                optimistic_timeout=optimistic,
                polling_config=PollingConfig(interval_seconds=0.5, max_attempts=max(1, math.ceil(timeout * 2)),
                                             timeout_seconds=timeout),
                timeout=timeout + 5.0,
            )
        handle.wire_run = phase.span(include_setup=True)
        return CommandResult(result.exit_status, result.stdout or "", result.stderr or "")

    def destroy(self, handle, timeout: float) -> bool:
        from runloop_api_client import NotFoundError

        handle.wire_destroy = None
        with exchange.recording() as phase:
            try:
                handle.client.devboxes.shutdown(handle.id)
                gone = False
            except NotFoundError:
                gone = True
        handle.wire_destroy = phase.span(include_setup=False)
        return not gone

    def wire_times(self, handle, operation="create"):
        """(sent, answered) of the latest create, command ("run") or shutdown on ``handle``, as the timed
        transport saw its exchanges (epoch seconds; a command's from its connection's set-up), or None
        on the SDK's own transport."""
        if not self.wire_verdicts:
            return None
        return getattr(handle, "wire_" + operation, None)

    def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        from runloop_api_client import NotFoundError

        try:  # the next client in turn; the client's default timeout (the destroy timeout) applies
            self._client_for({}).devboxes.shutdown(sandbox_id)
        except NotFoundError:
            return False
        return True

    # -- describing results ---------------------------------------------------------
    def sandbox_id(self, handle) -> Optional[str]:
        return getattr(handle, "id", None)

    def metadata(self, handle) -> Any:
        return attributes(handle.view, ("status", "blueprint_id", "snapshot_id", "create_time_ms", "name"),
                          sandbox_id=handle.id)

    def classify(self, exc: BaseException) -> ErrorInfo:
        import runloop_api_client as rl
        from runloop_api_client.lib.polling import PollingTimeout

        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, (rl.APITimeoutError, PollingTimeout)):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        if isinstance(exc, rl.APIStatusError):
            status = exc.status_code
            body = exc.body if isinstance(exc.body, dict) else {}
            code = body.get("error_code") if isinstance(body.get("error_code"), str) else None
            if isinstance(exc, rl.RateLimitError):
                code = code or "rate_limited"
            elif isinstance(exc, rl.AuthenticationError):
                code = code or "unauthorized"
            elif isinstance(exc, rl.NotFoundError):
                code = "sandbox_gone" if code in (None, "not_found") else code
            return ErrorInfo(FailureClass.HTTP_ERROR.value, status, code or str(status), error_type, message)
        if isinstance(exc, rl.APIConnectionError):
            cause = exc.__cause__
            if cause is not None and classify_exception(cause).failure_class == FailureClass.TIMEOUT.value:
                return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
            return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, error_type, message)
        if isinstance(exc, rl.RunloopError) and "non-running terminal state" in str(exc):
            # the devbox booted into failure/shutdown instead of running
            return ErrorInfo(FailureClass.OTHER.value, None, "devbox_failed", error_type, message)
        return classify_exception(exc)


# -- the lean path: the SDK's request work without the layers below it that redo it ---------------------

_SAFE_PATH = re.compile(r"/?[A-Za-z0-9_.~/-]*\Z")  # a path httpx's URL parser leaves as it is (no query)
_PROBE_PATH = "/v1/devboxes/dbx_probe/execute"
_lean_classes: tuple = ()


def _lean_sdk_classes() -> tuple:
    """(LeanRunloop, LeanHttpxClient): the SDK's client and an httpx.Client, each with the redundant layers
    of a request bypassed (see the module docstring). Built once, on first use (they subclass the SDK's)."""
    global _lean_classes
    if _lean_classes:
        return _lean_classes
    import inspect
    import time
    from datetime import timedelta

    import httpx
    import pydantic
    from httpx._client import USE_CLIENT_DEFAULT, UseClientDefault
    from runloop_api_client import APIResponseValidationError, Runloop
    from runloop_api_client._base_client import log as sdk_log, ModelBuilderProtocol
    from runloop_api_client._types import NotGiven
    from runloop_api_client._utils import is_given
    from runloop_api_client._utils._json import openapi_dumps

    from loadgen.net.wirehttpx import headers_of, timeout_of

    class LeanRequest(httpx.Request):
        """The ``httpx.Request`` httpx's ``build_request`` would make (the same method, URL, headers in the
        same order, body and timeout), built from parts already checked; the wire takes the URL's text."""

        def __init__(self, method: str, url: httpx.URL, url_text: str, raw_headers: list, content: Optional[bytes],
                     timeout):
            self.method = method
            self.url = url
            self.url_text = url_text
            self.headers = lean_headers(raw_headers)
            self.extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
            self._content = content or b""
            self.stream = httpx.ByteStream(self._content)

    def lean_headers(raw: list) -> httpx.Headers:
        """``httpx.Headers(raw)`` of (bytes, bytes) pairs, put together as httpx keeps them (name as given,
        name lowered, value) instead of normalising each pair again, and with the encoding httpx would find
        for them when every byte is ASCII (httpx tries decoding every header at the first look-up; the SDK
        looks up three of a request's after sending it)."""
        headers = httpx.Headers.__new__(httpx.Headers)
        headers._list = [(name, name.lower(), value) for name, value in raw]
        headers._encoding = "ascii" if all(name.isascii() and value.isascii() for name, value in raw) else None
        return headers

    probe = [(b"Host", b"example.com"), (b"X-Caf\xc3\xa9", b"cr\xc3\xa8me"), (b"accept", b"*/*")]
    for sample in (probe[:1] + probe[2:], probe):
        ours, httpx_own = lean_headers(sample), httpx.Headers(sample)
        if (ours._list != httpx_own._list or ours.encoding != httpx_own.encoding or ours.raw != httpx_own.raw
                or dict(ours) != dict(httpx_own)):
            lean_headers = httpx.Headers  # noqa: F811 (this httpx keeps headers otherwise: its own way)
            break

    class LeanHttpxClient(httpx.Client):
        """An ``httpx.Client`` on loadgen's timed transport whose ``send`` of a ``LeanRequest`` goes straight
        to the exchange: no auth flow (the SDK's bearer token is a header), the cookie jar only if the
        answer sets a cookie, httpx's redirect machinery only for a redirect. Anything else: httpx's own."""

        def __init__(self, wire, **kwargs):
            super().__init__(transport=wire, **kwargs)
            self._wire = wire
            self.defaults_raw = [(name, value) for name, value in self.headers.raw]

        def lean_request(self, method: str, url: httpx.URL, url_text: str, host: bytes, headers: httpx.Headers,
                         content: Optional[bytes], timeout) -> Optional[LeanRequest]:
            """What ``build_request`` would make of the SDK's ``headers`` and ``content`` (its merge with this
            client's headers, then ``Host`` and ``Content-Length`` where httpx puts them), or None where
            that takes httpx itself (the SDK set one of those headers, the cookie jar is not empty)."""
            names = {name.lower() for name, _ in headers.raw}
            if names & {b"host", b"content-length", b"transfer-encoding"} or self.cookies or self.auth is not None \
                    or self._event_hooks["request"] or self._event_hooks["response"] or self.params:
                return None
            raw = [(b"Host", host)]
            if not content and method in ("POST", "PUT", "PATCH"):
                raw.append((b"Content-Length", b"0"))
            raw += [(name, value) for name, value in self.defaults_raw if name.lower() not in names]
            raw += headers.raw
            if content:
                raw.append((b"Content-Length", str(len(content)).encode()))
            return LeanRequest(method, url, url_text, raw, content, timeout)

        def send(self, request, *, stream=False, auth=USE_CLIENT_DEFAULT, follow_redirects=USE_CLIENT_DEFAULT):
            if not isinstance(request, LeanRequest) or auth is not USE_CLIENT_DEFAULT or self.is_closed:
                return super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
            started = time.perf_counter()
            response = self._wire.exchange(request, request.url_text, headers_of(request), request._content or None,
                                           timeout_of(request))
            response.default_encoding = self._default_encoding
            if "set-cookie" in response.headers:
                self.cookies.extract_cookies(response)
            follow = self.follow_redirects if isinstance(follow_redirects, UseClientDefault) else follow_redirects
            if follow and response.has_redirect_location:  # (never from Runloop's API): httpx takes it from here
                response.read()
                response.close()
                return super().send(self._build_redirect_request(request, response), stream=stream, auth=auth,
                                    follow_redirects=follow_redirects)
            if not stream:
                response.read()
            response.elapsed = timedelta(seconds=time.perf_counter() - started)
            return response

    constructed_types: dict = {}

    def constructs(cast_to) -> bool:
        """Whether the SDK's ``_process_response_data`` makes a ``cast_to`` with ``construct_type`` (not
        ``object``, not a model builder); asked once per type, the protocol check costing ~5 us."""
        try:
            return constructed_types[cast_to]
        except KeyError:
            answer = constructed_types[cast_to] = cast_to is not object and not (
                inspect.isclass(cast_to) and issubclass(cast_to, ModelBuilderProtocol))
            return answer
        except TypeError:
            return False

    class LeanRunloop(Runloop):
        """The SDK's client whose ``_build_request`` skips httpx's second pass over what the SDK just built:
        the SDK still merges its options and headers (``_build_headers``), serialises its body
        (``openapi_dumps``) and takes the timeout as it does; the URL is what ``_prepare_url`` makes of a
        plain path, put together from the base URL's parsed parts instead of parsed twice again (checked
        against ``_prepare_url`` once, at start: a mismatch turns the lean path off). Anything the lean
        request does not cover (query parameters, files, extra JSON, raw content, a path httpx would
        re-encode, debug logging) goes through the SDK's own ``_build_request``."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            base = self.base_url
            self._lean_root = None
            if "_" not in base.host and not base.query and not base.userinfo and not base.fragment:
                self._lean_root = base.raw_path.decode("ascii")
                self._lean_prefix = f"{base.scheme}://{base.netloc.decode('ascii')}{self._lean_root}"
                self._lean_host = base.netloc
                url, text = self._lean_url(_PROBE_PATH)
                expected = self._prepare_url(_PROBE_PATH)
                if url != expected or text != str(expected) or url.path != expected.path:
                    self._lean_root = None  # this httpx builds URLs otherwise: the SDK's own way, always

        def _lean_url(self, path: str) -> tuple:
            """(URL, its text) of ``path`` on the base URL, as ``_prepare_url`` would make them."""
            path = path.lstrip("/")
            url = httpx.URL.__new__(httpx.URL)
            url._uri_reference = self.base_url._uri_reference._replace(path=self._lean_root + path)
            return url, self._lean_prefix + path

        def _build_request(self, options, *, retries_taken: int = 0):
            json_data, url = options.json_data, options.url
            if (self._lean_root is None or options.files is not None or options.extra_json is not None
                    or options.params or self.default_query or options.content is not None
                    or isinstance(json_data, bytes) or not _SAFE_PATH.match(url) or "/." in url
                    or not isinstance(self._client, LeanHttpxClient) or sdk_log.isEnabledFor(logging.DEBUG)):
                return super()._build_request(options, retries_taken=retries_taken)
            headers = self._build_headers(options, retries_taken=retries_taken)
            if (headers.get("Content-Type") or "").startswith("multipart/form-data"):
                return super()._build_request(options, retries_taken=retries_taken)
            method = options.method.upper()
            if method != "GET":
                content = openapi_dumps(json_data) if is_given(json_data) and json_data is not None else None
            else:
                headers.pop("Content-Type", None)
                content = None
            timeout = self.timeout if isinstance(options.timeout, NotGiven) else options.timeout
            request = self._client.lean_request(method, *self._lean_url(url), self._lean_host, headers, content,
                                                timeout)
            if request is None:
                return super()._build_request(options, retries_taken=retries_taken)
            return request

        def post(self, path, *, cast_to, body=None, content=None, options={}, files=None, stream=False,  # noqa: B006
                 stream_cls=None):
            models = _lean_models()
            if models is None or content is not None or files is not None or isinstance(body, bytes):
                return super().post(path, cast_to=cast_to, body=body, content=content, options=options, files=files,
                                    stream=stream, stream_cls=stream_cls)
            # the SDK's post: its options, made by the planned model_construct
            opts = models.request_options(method="post", url=path, json_data=body, content=None, files=None,
                                          **options)
            return self.request(cast_to, opts, stream=stream, stream_cls=stream_cls)

        def _process_response_data(self, *, data, cast_to, response):
            models = _lean_models()
            if models is None or data is None or self._strict_response_validation or not constructs(cast_to):
                return super()._process_response_data(data=data, cast_to=cast_to, response=response)
            try:
                return models.construct(cast_to, data)
            except pydantic.ValidationError as err:
                raise APIResponseValidationError(response=response, body=data) from err

        def _send_client_for_request(self, request):
            if not self._isolate_workload_pools:  # an http_client of ours: the one client (no path to parse)
                return self._client
            return super()._send_client_for_request(request)

    LeanRunloop.__name__ = LeanRunloop.__qualname__ = "Runloop"
    _lean_classes = (LeanRunloop, LeanHttpxClient)
    models = _lean_models()
    if models is not None:  # the request bodies: the resources' own name for the SDK's transform
        from runloop_api_client.resources.devboxes import devboxes

        devboxes.maybe_transform = models.transform
    return _lean_classes


_models_checked: list = []
# request options as the devbox calls' post makes them (path, body, and what make_request_options gives)
_SAMPLE_OPTIONS = (
    {"method": "post", "url": "/v1/devboxes/create_and_await_running", "json_data": {"metadata": {"a": "b"}},
     "content": None, "files": None, "timeout": 30.0},
    {"method": "post", "url": "/v1/devboxes/dbx/execute", "json_data": {"command": "node -v"}, "content": None,
     "files": None, "params": {"last_n": "5"}, "timeout": 5.0, "headers": {"X-Custom": "1"}, "idempotency_key": "k",
     "extra_json": {"x": 1}},
    {"method": "post", "url": "/v1/devboxes/dbx/shutdown", "json_data": None, "content": None, "files": None},
)


def _lean_models():
    """The SDK's answer models, request options and request bodies made by ``loadgen.providers.stainless``
    (each type read once), or None: checked once against the SDK's own on sample answers of the lifecycle's
    models and sample options; a difference (an SDK upgrade that changed the rules) leaves all three to
    the SDK."""
    if _models_checked:
        return _models_checked[0]
    from runloop_api_client.types import DevboxAsyncExecutionDetailView, DevboxView

    from loadgen.providers import stainless

    models = stainless.StainlessModels("runloop_api_client")
    problem = "pydantic v1" if not models.usable else stainless.check(models, [
        (model, answer) for model in (DevboxView, DevboxAsyncExecutionDetailView)
        for answer in stainless.sample_answers(models, model)], _SAMPLE_OPTIONS)
    if problem:
        log.warning("runloop: the planned models, options and bodies are off, they differ from the SDK's: %s",
                    problem)
        models = None
    _models_checked.append(models)
    return models
