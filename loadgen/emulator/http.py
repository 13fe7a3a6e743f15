"""A lean HTTP server: asyncio Protocol + httptools for HTTP/1.1, h2 for HTTP/2, TLS optional.

Why not an HTTP framework: the emulator must never be what limits a benchmark,
so it needs keep-alive, no thread per request, replies streamed as they are
produced, and a few microseconds per request. A framework also could not send
a real TCP RST on demand. httptools decodes chunked request bodies (e2b 2.63
sends them) and pipelined requests; replies on one connection are kept in
request order, as HTTP/1.1 requires.

Writes made while a request is being dispatched are gathered and sent in one
`transport.write` (one syscall for a whole short Connect stream); writes made
later, from timers, go out at once.

One port serves every protocol a real client opens with: a connection whose
first bytes are HTTP/2's client preface is handed to http2.Http2Connection
(prior knowledge over cleartext, or ALPN's `h2` under TLS); any other is
HTTP/1.1. With a TLS context (`HttpServer(..., ssl=)`) the port is HTTPS,
and ALPN offers h2 and http/1.1. An Upgrade request (a WebSocket, h2c) is
answered like any other request, once, and the connection then closes: the
emulator upgrades nothing.
"""

from __future__ import annotations

import collections
import socket
import struct
from http import HTTPStatus
from typing import TYPE_CHECKING, Deque, Dict, List, Optional

import asyncio
import httptools

from loadgen.emulator.http2 import Http2Connection
from loadgen.emulator.request import MAX_BODY, TOO_BIG_PATH, Handler, Request, kernel_arrival, serve

if TYPE_CHECKING:
    import ssl as ssl_module

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


_STATUS_LINES = {s: status_line(s) for s in _REASONS}
_LINGER_0 = struct.pack("ii", 1, 0)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # HTTP/2's client preface
H1, H2 = "http/1.1", "h2"


class Http1Request(Request):
    """A request on an HTTP/1.1 connection: answers are written as HTTP/1.1 bytes."""

    __slots__ = ()

    def respond(self, status: int, body: bytes = b"", content_type: bytes = b"application/json",
                extra_headers: bytes = b"") -> None:
        if self.state:
            return
        self.state = 2
        head = _STATUS_LINES.get(status) or status_line(status)
        if body or status not in (204, 304):
            head += b"content-type: " + content_type + b"\r\ncontent-length: %d\r\n" % len(body)
        if not self.keep_alive:
            head += b"connection: close\r\n"
        self.conn.write(head + extra_headers + b"\r\n" + body)
        self.conn.finished(self)

    def start_stream(self, status: int, content_type: bytes, first_chunk: bytes = b"") -> None:
        """Start a chunked reply; `first_chunk` rides along with the headers."""
        if self.state:
            return
        self.state = 1
        head = (_STATUS_LINES.get(status) or status_line(status)) + b"content-type: " + content_type + \
            b"\r\ntransfer-encoding: chunked\r\n"
        if not self.keep_alive:
            head += b"connection: close\r\n"
        head += b"\r\n"
        if first_chunk:
            head += b"%x\r\n" % len(first_chunk) + first_chunk + b"\r\n"
        self.conn.write(head)

    def write_chunk(self, data: bytes) -> None:
        if self.state == 1 and data:
            self.conn.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_stream(self, last_chunk: bytes = b"") -> None:
        if self.state != 1:
            return
        self.state = 2
        if last_chunk:
            self.conn.write(b"%x\r\n" % len(last_chunk) + last_chunk + b"\r\n0\r\n\r\n")
        else:
            self.conn.write(b"0\r\n\r\n")
        self.conn.finished(self)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        self.state = 2
        self.conn.reset()


class Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "sock", "parser", "_url", "_headers", "_body", "_body_len",
                 "_queue", "_current", "_cork", "_too_big", "_closing", "_sniff")

    def __init__(self, server: "HttpServer"):
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.sock = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Dict[bytes, bytes] = {}
        self._body: List[bytes] = []
        self._body_len = 0
        self._queue: Deque[Http1Request] = collections.deque()
        self._current: Optional[Http1Request] = None
        self._cork: Optional[List[bytes]] = None
        self._too_big = False
        self._closing = False
        self._sniff: Optional[bytes] = b""  # the first bytes, until they tell HTTP/2's preface from HTTP/1.1

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")
        self.server.connections += 1
        self.server.connections_total += 1

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.transport is not None:
            self.server.connections -= 1
        self.transport = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._sniff is not None:
            data = self._sniff + data
            if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
                self._sniff = data  # too short to tell yet
                return
            self._sniff = None
            if data.startswith(H2_PREFACE):
                self._become_http2(data)
                return
            self.server.connections_by_protocol[H1] += 1
        self._cork = []
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The Upgrade request itself was parsed and is answered with `connection: close`
            # (on_message_complete); what follows it is not HTTP/1.1.
            if self._current is None and not self._queue:
                self._closing = True
        except httptools.HttpParserError as e:
            self._bad(400, b'{"code":400,"message":"malformed HTTP request: %s"}' % str(e).encode()[:200].replace(b'"', b"'"))
        finally:
            self._flush()

    def last_data_at(self) -> float:
        return kernel_arrival(self.sock)

    def _become_http2(self, data: bytes) -> None:
        self.server.connections_by_protocol[H2] += 1
        protocol = Http2Connection(self.server, self.transport, self.sock, self.server.h2_max_streams)
        self.transport.set_protocol(protocol)
        self.transport = None  # connection_lost now goes to the HTTP/2 protocol
        protocol.start(data)

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_len = 0
        self._too_big = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        # curl and some other clients wait for this before sending a body.
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > MAX_BODY:
            self._too_big = True
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        parser = self.parser
        req = Http1Request(self, parser.get_method(), self._url, self._headers, body,
                      parser.should_keep_alive() and not parser.should_upgrade())
        self._body = []
        if self._too_big:
            req.body = b""
            req.keep_alive = False
            req.path = TOO_BIG_PATH
        if self._current is None:
            self._dispatch(req)
        else:
            self._queue.append(req)

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self._cork is not None:
            self._cork.append(data)
        else:
            self.transport.write(data)

    def _flush(self) -> None:
        cork, self._cork = self._cork, None
        if self.transport is not None:
            if cork:
                self.transport.write(b"".join(cork) if len(cork) > 1 else cork[0])
            if self._closing:
                self.transport.close()

    def finished(self, req: Http1Request) -> None:
        """The reply to `req` is complete: close, or serve the next request."""
        if self._current is not req:
            return
        self._current = None
        if not req.keep_alive:
            self._queue.clear()
            if self._cork is not None:
                self._closing = True
            elif self.transport is not None:
                self.transport.close()
            return
        if self._queue:
            self._dispatch(self._queue.popleft())

    def _dispatch(self, req: Http1Request) -> None:
        self._current = req
        corked = self._cork is not None
        if not corked:
            self._cork = []
        try:
            serve(self.server.handler, req)
        finally:
            if not corked:
                self._flush()

    def _bad(self, status: int, body: bytes) -> None:
        if self.transport is None:
            return
        self.write(_STATUS_LINES[status] + b"content-type: application/json\r\ncontent-length: %d\r\n"
                   b"connection: close\r\n\r\n" % len(body) + body)
        self._closing = True
        self.server.bad_requests += 1

    def reset(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._cork = None
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        except OSError:
            pass
        self.server.connections -= 1
        self.transport = None
        self._queue.clear()
        transport.abort()


class HttpServer:
    """Owns the listening socket; `handler(request)` must answer each request
    (now or later) through the Request methods."""

    def __init__(self, handler: Handler, ssl: Optional["ssl_module.SSLContext"] = None):
        self.handler = handler
        self.ssl = ssl
        self.scheme = "https" if ssl is not None else "http"
        self.connections = 0
        self.connections_total = 0
        self.connections_by_protocol = {H1: 0, H2: 0}
        self.h2_max_streams = 2 ** 31 - 1  # SETTINGS_MAX_CONCURRENT_STREAMS on HTTP/2 connections
        self.h2_refused_streams = 0  # streams over that limit, refused (RST_STREAM REFUSED_STREAM)
        self.bad_requests = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self.sock: Optional[socket.socket] = None  # the listening socket (its accept queue is watched)
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 65535) -> int:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        self._server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=backlog, ssl=self.ssl,
                                                ssl_handshake_timeout=30.0 if self.ssl is not None else None)
        self.port = sock.getsockname()[1]
        self.sock = sock
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
