"""httpx transports on loadgen's timed client: an SDK built on httpx, timed on the wire.

An httpx SDK (Runloop's, together-sandbox's) keeps its whole request path:
its client builds every request (URL, headers, auth, body) and parses every
answer; only the exchange itself, below httpx's client, goes through
``loadgen.net.wirehttp``, which takes its times from the kernel's stamps and
judges the lifecycle phase's deadline by them (``loadgen.net.exchange``).

- ``WireAsyncTransport`` for an ``httpx.AsyncClient`` on the asyncio bridge's
  loop. An answer already whole when its head is in (the common, small JSON
  answer) is handed over as bytes; any other (an SSE stream, a long chunked
  body) is handed over as it arrives, as httpx's own transport would, and
  its exchange is answered by the stamp of the last bytes the SDK read
  before it closed the response (``wirehttp.WireStream``): for the together
  SDK's exec stream, the event that carries the exit code.
- ``WireSyncTransport`` for an ``httpx.Client`` used from gevent greenlets:
  the exchange runs on the hub, in the greenlet that sends the request
  (``loadgen.net.greenwire``), and the answer is read whole.

Either way the body is handed to httpx as received (``stream=``), so httpx
decodes its content-encoding as it would its own transport's.

Errors are httpx's own classes of the same names (``ConnectError``,
``ReadTimeout``...), raised with the request, so an SDK maps them as it maps
httpx's; a failure that is the generator's (``GeneratorError``, ``NotSent``)
is raised as it is, to be found in the SDK's exception chain. Timeouts: the
request's read timeout (else its connect timeout) bounds the connect and the
answer from the wire start, unless a lifecycle phase gives its own. The
exchanges are HTTP/1.1, or HTTP/2 where the pool was made for a control plane
(``WirePool(http2=wireh2.Origin)``) and the server offers it. What the timed client
does not do (proxies, redirects are httpx's and work unchanged) stays the
SDK's choice of transport: see each adapter's escape hatch.
"""

from __future__ import annotations

from typing import Optional

import httpx

from loadgen.net import greenwire
from loadgen.net.wirehttp import WireError, WirePool, WireStream

_HTTP11 = {"http_version": b"HTTP/1.1"}


def headers_of(request: httpx.Request) -> dict:
    """The request's headers as sent (raw names and values, a repeated name joined with commas)."""
    headers: dict = {}
    for name, value in request.headers.raw:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def timeout_of(request: httpx.Request) -> Optional[float]:
    """The request's read timeout, else its connect timeout (what bounds the exchange when no phase does)."""
    timeouts = request.extensions.get("timeout") or {}
    read = timeouts.get("read")
    return read if read is not None else timeouts.get("connect")


def _as_httpx(error: WireError, request: httpx.Request) -> Exception:
    """httpx's exception of the same name, or the error itself (the generator's own: it stays ours)."""
    twin = getattr(httpx, type(error).__name__, None)
    if twin is None or not issubclass(twin, httpx.TransportError):
        return error
    return twin(str(error), request=request)


class _StreamBody(httpx.AsyncByteStream):
    """A WireStream as httpx's response stream; closing it ends the exchange."""

    def __init__(self, stream: WireStream, request: httpx.Request):
        self._stream, self._request = stream, request

    async def __aiter__(self):
        while True:
            try:
                chunk = await self._stream.read()
            except WireError as error:
                mapped = _as_httpx(error, self._request)
                if mapped is error:
                    raise
                raise mapped from error
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class WireAsyncTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient``'s transport on a ``WirePool``: its own, or one shared by many clients on
    one loop (then closing a client leaves the shared pool open)."""

    def __init__(self, pool: Optional[WirePool] = None):
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else WirePool()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            stream = await self._pool.stream(request.method, str(request.url), headers_of(request), body or None,
                                             timeout_of(request))
        except WireError as error:
            mapped = _as_httpx(error, request)
            if mapped is error:
                raise
            raise mapped from error
        if stream.complete:  # the whole answer came with its head: bytes, and the exchange is over
            content = await stream.read()
            await stream.aclose()
            return httpx.Response(stream.status, headers=stream.headers, stream=httpx.ByteStream(content),
                                  request=request, extensions=_HTTP11)
        return httpx.Response(stream.status, headers=stream.headers, stream=_StreamBody(stream, request),
                              request=request, extensions=_HTTP11)

    async def aclose(self) -> None:
        if self._owns_pool:
            self._pool.close()


class WireSyncTransport(httpx.BaseTransport):
    """An ``httpx.Client``'s transport for greenlets: each exchange on the hub (a ``greenwire.pool()``),
    read whole."""

    def __init__(self, pool: Optional[WirePool] = None):
        self._pool = pool if pool is not None else greenwire.pool()
        if self._pool.io is not greenwire.HUB:
            raise ValueError("WireSyncTransport needs a pool on the hub: loadgen.net.greenwire.pool()")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return self.exchange(request, str(request.url), headers_of(request), body or None, timeout_of(request))

    def exchange(self, request: httpx.Request, url: str, headers: dict, body: Optional[bytes],
                 timeout: Optional[float]) -> httpx.Response:
        """``request``'s exchange, sent as ``url``, ``headers`` and ``body`` (what ``handle_request`` reads from
        it, or a caller that already has them: runloop's lean client)."""
        try:
            answer = greenwire.run(self._pool.request(request.method, url, headers, body, timeout))
        except WireError as error:
            mapped = _as_httpx(error, request)
            if mapped is error:
                raise
            raise mapped from error
        return httpx.Response(answer.status, headers=answer.headers, stream=httpx.ByteStream(answer.content),
                              request=request, extensions=_HTTP11)

    def close(self) -> None:
        self._pool.close()
