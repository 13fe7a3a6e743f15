"""An HTTP/1.1 client whose exchange times are the kernel's, not the event loop's.

Why: a burst is CPU-bound on the client. Two thousand creates answered within
half a second land in the socket buffers while the loop is still busy with
other sandboxes, and a clock read when the loop finally gets to an answer
measures the generator, not the provider (BENCHMARKS.md §3: a p99 error of
878 ms at 2,000 sandboxes per process with a clock read on the loop). The
kernel stamps every segment as it arrives (SO_TIMESTAMPNS) and ``recvmsg``
hands that stamp back however late we read, so the answer time here is when
the answer's last byte reached this host. The request time is read just
before the request's bytes go to the kernel, once the connection (and TLS) is
up: the latency is the exchange on the wire, the provider's service time plus
transit, and none of our queueing. Connection set-up is timed apart:
``connect_s`` as the loop saw it, and ``setup_s`` as the wire did (from the
connect call, which sends the first SYN, to the handshake's completion as the
kernel stamped it, TCP_INFO's ``tcpi_last_ack_recv``: retransmitted SYNs
included, and counted in ``syn_retransmits``; plus the TLS handshake from our
ClientHello's send to the stamp of the server's last handshake flight), so a
caller that wants the set-up counted (a sandbox's first command, whose host
is new) can add it without adding our queueing.

Deadlines are the wire's too (``loadgen.net.exchange``): a request made inside
a lifecycle phase gets the phase's timeout from its wire start (the first SYN,
or its first byte on a connection already open), and when the deadline
passes, the bytes already waiting in the socket are read before any verdict,
so an answer that arrived in time but was read late is the answer. A request
the generator could not send before the phase's deadline is never sent
(``NotSent``), and a connection the generator could not make for its own
reasons (descriptors, ports, buffers) raises ``GeneratorError``: neither is
the provider's failure. Every exchange, answered or not, is recorded on the
current phase.

Scope: what loadgen's control-plane calls need, and no more: one exchange at
a time per connection, a keep-alive pool, content-length, chunked or
close-delimited answers, read whole (``request``) or as they arrive
(``stream``: an SSE stream, whose exchange is answered by the last bytes the
caller needed, see ``WireStream``), TLS through in-memory BIOs (so the raw bytes, with
their stamps, are still ours to read; certificates checked against
``SSL_CERT_FILE`` when set, else certifi's roots). A client made with
``http2=wireh2.Origin`` (a control plane, whose one host every sandbox of
the process shares; HTTP/2 lives in ``loadgen.net.wireh2``, which builds on
this module) can speak HTTP/2 when asked (``http2_setting``): chosen by ALPN
over TLS with ``LOADGEN_WIRE_HTTP2=alpn``, and with prior knowledge over
cleartext too with ``LOADGEN_WIRE_HTTP2=1``; many exchanges then share a
connection, each stream timed as an exchange here is. By default it speaks
HTTP/1.1, whose timing is exact per exchange. No redirects,
proxies or content decoding; callers fall back to their SDK's own client for those.
Where the kernel gives no stamps (not Linux), answers are timed when read,
and ``kernel_stamped`` says so.

Where it waits: the exchange is written as coroutines whose only waits are
an ``Io``'s (a socket ready, a name resolved, a timer). ``ASYNCIO`` waits on
the running asyncio loop (the process's bridge, where an asyncio SDK calls
it); ``loadgen.net.greenwire.HUB`` waits on gevent's hub, for a greenlet's
SDK, which then runs the whole exchange itself, without handing it to
another thread. The sockets, stamps and deadlines are the same either way.

Length: one HTTP/1.1 client (connection, TLS over memory BIOs, answer
parsing, stamps and the per-origin pool); its parts share the connection state
and are read together when a timing question comes up.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import socket
import ssl
import struct
import time
import urllib.parse
import weakref
from typing import Optional

import errno

import httptools

from loadgen.net import exchange, tcp_info
from loadgen.net.exchange import Exchange, NotSent
from loadgen.result import GENERATOR_ERRNOS, GeneratorFailure

try:  # the stdlib socket, even where gevent has patched the module: this runs on an asyncio loop,
    # and gevent's cooperative socket would add a Python wrapper to every call for nothing
    from gevent.monkey import get_original

    _socket_class = get_original("socket", "socket")
except ImportError:  # pragma: no cover - gevent is a dependency
    _socket_class = socket.socket

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; SCM_TIMESTAMPNS is the same number
_ANCILLARY_SIZE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")
_READ_SIZE = 64 * 1024
_DNS_TTL_S = 60.0
HTTP2_ENV = "LOADGEN_WIRE_HTTP2"


def http2_setting() -> str:
    """``LOADGEN_WIRE_HTTP2``: how a client made with ``http2=wireh2.Origin`` speaks: ``off`` (the default,
    or ``0``: HTTP/1.1 everywhere), ``alpn`` (HTTP/2 when the server picks it over TLS, HTTP/1.1 in
    cleartext) or ``prior`` (``1``: by ALPN over TLS, and with prior knowledge in cleartext too).

    Why HTTP/1.1 by default: each exchange then has a connection of its own, and its answer a kernel
    stamp of its own. On a shared HTTP/2 connection answers that wait unread share one stamp, and the
    emulator dates requests by the connection's latest segment: at 2,000 creates per process the
    create's measurement error was p99 56-139 ms over HTTP/2 against 2.4 ms over HTTP/1.1
    (BENCHMARKS.md §10). HTTP/2 is for when the connection budget demands it: 10,000 creates in
    flight over TLS took 100 connections instead of 10,000, at a quarter of the CPU."""
    value = os.environ.get(HTTP2_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "prior"):
        return "prior"
    if value == "alpn":
        return "alpn"
    if value in ("", "0", "false", "no", "off"):
        return "off"
    raise ValueError(f"{HTTP2_ENV}={value!r}: expected 0 (HTTP/1.1, the default), alpn (HTTP/2 over TLS) "
                     "or 1 (HTTP/2 over TLS and in cleartext)")


def _speaks_http2(origin_maker, io: "Io", scheme: str) -> bool:
    """Whether a client given ``origin_maker`` (wireh2.Origin, or None) speaks HTTP/2 to a ``scheme`` origin:
    offered by ALPN over TLS, or with prior knowledge in cleartext, as ``http2_setting`` says; only on
    asyncio (wireh2's transport is asyncio's)."""
    if origin_maker is None or not isinstance(io, AsyncioIo):
        return False
    setting = http2_setting()
    return setting != "off" and (scheme == "https" or setting == "prior")


class WireError(Exception):
    """Base of this client's errors; the names match httpx's so callers can map them one to one."""


class ConnectError(WireError):
    pass


class ConnectTimeout(WireError, TimeoutError):
    pass


class ReadTimeout(WireError, TimeoutError):
    pass


class WriteError(WireError):
    pass


class ReadError(WireError):
    pass


class RemoteProtocolError(WireError):
    pass


class GeneratorError(WireError, GeneratorFailure):
    """This host could not make the connection for its own reasons (descriptors, ports, buffers)."""


class _Expired(Exception):
    """A read's deadline passed with nothing more waiting in the socket."""


class WireResponse:
    """One answer, with the times of its exchange (epoch seconds)."""

    __slots__ = ("status", "headers", "content", "sent_at", "answered_at", "connect_s", "setup_s", "kernel_stamped",
                 "syn_retransmits", "late")

    def __init__(self, status, headers, content, sent_at, answered_at, connect_s, setup_s, kernel_stamped,
                 syn_retransmits=0, late=False):
        self.status = status
        self.headers = headers  # list of (name, value) str pairs, as received
        self.content = content
        self.sent_at = sent_at
        self.answered_at = answered_at
        self.connect_s = connect_s  # 0.0 on a reused connection
        self.setup_s = setup_s  # the same set-up on the wire, free of our queueing; 0.0 when reused
        self.kernel_stamped = kernel_stamped
        self.syn_retransmits = syn_retransmits  # SYNs the new connection needed again; 0 when reused
        self.late = late  # answered after the deadline (kept only when the phase lingers for late answers)


_LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff 1, l_linger 0}: close() resets


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class Io:
    """How a client waits. Every wait is a coroutine that returns once it is over: on an asyncio loop it
    suspends the task; on gevent's hub (``loadgen.net.greenwire.HubIo``) it switches the greenlet out
    and returns without ever suspending the coroutine."""

    def loop_key(self):
        """What the pooled connections belong to (a loop, a hub in one process): a change empties a pool."""
        raise NotImplementedError

    async def wait(self, fd: int, writable: bool, until: Optional[float]) -> None:
        """Until ``fd`` is readable (writable), or ``until`` (epoch seconds) has passed, whichever is first."""
        raise NotImplementedError

    async def resolve(self, host: str, port: int, until: Optional[float]) -> list:
        """getaddrinfo's answer for a stream socket; TimeoutError past ``until``."""
        raise NotImplementedError

    def call_later(self, delay: float, fn) -> object:
        """Run ``fn()`` after ``delay`` seconds, where this Io waits."""
        raise NotImplementedError


class AsyncioIo(Io):
    """Waits on the running asyncio loop."""

    def loop_key(self):
        return asyncio.get_running_loop()

    async def wait(self, fd: int, writable: bool, until: Optional[float]) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        timer = None if until is None else loop.call_later(max(0.0, until - time.time()), _wake, future)
        add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
        try:
            add(fd, _wake, future)
            await future
        finally:
            remove(fd)
            if timer is not None:
                timer.cancel()

    async def resolve(self, host: str, port: int, until: Optional[float]) -> list:
        loop = asyncio.get_running_loop()
        if until is None:
            return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        async with asyncio.timeout(max(0.0, until - time.time())):
            return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    def call_later(self, delay: float, fn) -> object:
        return asyncio.get_running_loop().call_later(delay, fn)


ASYNCIO = AsyncioIo()


class _Connection:
    """A non-blocking socket read with recvmsg, optionally under TLS."""

    __slots__ = ("io", "sock", "fd", "stamped", "tls", "tls_in", "tls_out", "_stamp", "_buffer", "setup_s",
                 "idle_since", "syn_retransmits")

    def __init__(self, io: Io, sock: socket.socket, stamped: bool, buffer: memoryview, connect_called: float):
        self.io = io
        self._buffer = buffer  # the client's read buffer: reads are copied out at their size, never
        # allocated at the largest size and shrunk (which fragments the heap: +15 KiB RSS per held sandbox)
        self.sock = sock
        self.fd = sock.fileno()
        self.stamped = stamped
        self.tls: Optional[ssl.SSLObject] = None
        self.tls_in = self.tls_out = None
        self._stamp = 0.0
        self.setup_s, self.syn_retransmits = handshake(sock, connect_called)
        self.idle_since = 0.0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def close_idle(self) -> None:
        """Close a connection that carries nothing (idle in the pool, or one too many to pool) without
        leaving this host a TIME_WAIT socket: a reset instead of a FIN (SO_LINGER 0).

        Why: the side that closes first keeps the connection's port in TIME_WAIT for 60 s, and a
        burst closes thousands of connections a second. Against one address the ephemeral port range
        (28,232 ports by default) then fills with TIME_WAIT sockets, and the kernel searches most of
        the range on every connect(): at 8,333 sandboxes in one process that search was 55 % of the
        process's CPU, two-thirds of it system time (BENCHMARKS.md §7). Only a connection with
        no request outstanding is reset: the server has answered everything it was sent, so nothing
        is lost; a connection closed mid-exchange gets the orderly close (``close``), so a request
        already sent (a kill) is still read by the server."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        self.close()

    async def _wait(self, writable: bool, until: Optional[float] = None) -> None:
        """Until the socket is ready, or ``until`` (epoch seconds) has passed, whichever is first."""
        await self.io.wait(self.fd, writable, until)

    async def send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._wait(True)
                continue
            except OSError as exc:
                raise WriteError(f"write failed: {exc}") from exc
            view = view[sent:]

    async def recv_raw(self, until: Optional[float] = None) -> bytes:
        """The next bytes from the socket; their arrival time is left in ``_stamp``.

        With ``until``: what is already waiting is always read first; only when
        nothing is and ``until`` has passed does it raise ``_Expired``."""
        while True:
            try:
                size, ancillary, _flags, _addr = self.sock.recvmsg_into((self._buffer,), _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                if until is not None and time.time() >= until:
                    raise _Expired() from None
                await self._wait(False, until)
                continue
            except OSError as exc:
                raise ReadError(f"read failed: {exc}") from exc
            stamp = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    stamp = seconds + nanoseconds * 1e-9
            self._stamp = stamp if stamp is not None else time.time()
            return self._buffer[:size].tobytes()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.tls_in, self.tls_out, server_hostname=server_hostname)
        first_flight_at = None
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flight = self.tls_out.read()
                if first_flight_at is None:
                    first_flight_at = time.time()
                await self.send_raw(flight)
                data = await self.recv_raw()
                if not data:
                    raise ConnectError("the server closed the connection during the TLS handshake")
                self.tls_in.write(data)
            except ssl.SSLError as exc:
                raise ConnectError(f"TLS handshake failed: {exc}") from exc
        if first_flight_at is not None:
            self.setup_s += max(0.0, self._stamp - first_flight_at)
        pending = self.tls_out.read()
        if pending:
            await self.send_raw(pending)

    def wire_bytes(self, plaintext: bytes) -> bytes:
        """What to hand the kernel for ``plaintext`` (encrypted first, so the send itself is all that is timed)."""
        if self.tls is None:
            return plaintext
        self.tls.write(plaintext)
        return self.tls_out.read()

    async def read(self, until: Optional[float] = None) -> bytes:
        """Application bytes (b"" at the end of the stream); ``_stamp`` is the latest segment's arrival.
        ``until``: as for ``recv_raw``."""
        if self.tls is None:
            return await self.recv_raw(until)
        while True:
            try:
                size = self.tls.read(_READ_SIZE, self._buffer)
                return self._buffer[:size].tobytes()
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise ReadError(f"TLS read failed: {exc}") from exc
            data = await self.recv_raw(until)
            if data:
                self.tls_in.write(data)
            else:
                self.tls_in.write_eof()

    def idle_and_open(self) -> bool:
        """True if a pooled connection can carry a request: the server has not closed it or sent
        anything unasked (TLS session tickets excepted)."""
        try:
            size = self.sock.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not size or self.tls is None:
            return False
        self.tls_in.write(self._buffer[:size])
        try:
            self.tls.read(_READ_SIZE, self._buffer)
        except ssl.SSLWantReadError:
            return True  # only handshake records (tickets) were waiting
        except ssl.SSLError:
            return False
        return False


class _Answer:
    """httptools callbacks for one response (interim 1xx answers skipped)."""

    __slots__ = ("parser", "headers", "body", "headers_done", "complete", "trailing", "keep_alive")

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list = []
        self.body: list = []
        self.headers_done = self.complete = self.trailing = self.keep_alive = False

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True  # bytes after the answer: the connection cannot be reused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers, self.body, self.headers_done = [], [], False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the callback returns)

    def delimited_by_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return "content-length" not in names and "transfer-encoding" not in names


class WireClient:
    """Requests to one origin (``scheme://host[:port][/prefix]``) over a pool of keep-alive connections.

    Not thread-safe. Pooled connections belong to the loop that opened them: when
    called from another loop (a new ``asyncio.run``), the pool starts afresh. ``io``:
    where it waits (``ASYNCIO``, or ``loadgen.net.greenwire.HUB``)."""

    def __init__(self, base_url: str, *, ssl_context: Optional[ssl.SSLContext] = None, max_idle: int = 1000,
                 buffer: Optional[memoryview] = None, io: Io = ASYNCIO, http2=None):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {parts.scheme}://{parts.hostname}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        default_port = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default_port
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.max_idle = max_idle
        self._http2 = _speaks_http2(http2, io, parts.scheme)
        self._h2_origin = http2  # what makes the origin's HTTP/2 side (wireh2.Origin), given by the caller
        self._h2 = None  # made on the first exchange
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = ssl_context or default_ssl_context(h2=self._http2)
        self._idle: collections.deque = collections.deque()
        self._buffer = buffer if buffer is not None else memoryview(bytearray(_READ_SIZE))
        self._io = io
        self._loop = None
        self._addresses: list = []
        self._addresses_at = 0.0

    async def request(self, method: str, target: str, headers: dict, body: Optional[bytes] = None,
                      timeout: Optional[float] = None) -> WireResponse:
        """One exchange. ``headers`` are sent as given (plus host and, with a body, content-length).

        Inside a lifecycle phase (``loadgen.net.exchange``), the phase's budget
        applies; otherwise ``timeout`` (seconds) bounds the connect from its
        first SYN and the answer from the request's wire start. Raises
        ConnectError, ConnectTimeout, WriteError, ReadError, ReadTimeout,
        RemoteProtocolError, GeneratorError or NotSent. The exchange is
        recorded on the current phase, answered or not."""
        if self._http2:
            answer = await self._origin().exchange(method, target, headers, body, timeout, False)
            if answer is not None:
                return answer
        sending = await self._send(method, target, headers, body, timeout)
        conn, reading, answer = sending.conn, sending.reading, _Answer()
        try:
            while not answer.complete:
                await self._feed(conn, answer, reading, sending.phase)
            late = self._judge(reading, sending.phase)
        except BaseException as exc:
            mapped = sending.fail(exc)
            if mapped is None:
                raise
            raise mapped from None
        self._release(conn, answer)
        sending.record(reading.answered_at, late)
        content = b"".join(answer.body) if len(answer.body) != 1 else answer.body[0]
        return WireResponse(answer.parser.get_status_code(), answer.headers, content, sending.sent_at,
                            reading.answered_at, sending.connect_s, sending.setup_s, conn.stamped, sending.syn, late)

    async def stream(self, method: str, target: str, headers: dict, body: Optional[bytes] = None,
                     timeout: Optional[float] = None) -> "WireStream":
        """One exchange whose answer is handed over as it arrives (SSE, long chunked bodies).

        Returns once the answer's head is in, with the body to read through
        ``WireStream.read``; the same deadlines, errors and recording as
        ``request``. The exchange counts as answered when the last bytes the
        caller read arrived (see ``WireStream``; over HTTP/2, ``wireh2.H2Stream``)."""
        if self._http2:
            answer = await self._origin().exchange(method, target, headers, body, timeout, True)
            if answer is not None:
                return answer
        sending = await self._send(method, target, headers, body, timeout)
        answer = _Answer()
        try:
            while not answer.headers_done and not answer.complete:
                await self._feed(sending.conn, answer, sending.reading, sending.phase)
            late = self._judge(sending.reading, sending.phase)
        except BaseException as exc:
            mapped = sending.fail(exc)
            if mapped is None:
                raise
            raise mapped from None
        return WireStream(self, sending, answer, late)

    async def _send(self, method: str, target: str, headers: dict, body: Optional[bytes],
                    timeout: Optional[float]) -> "_Sending":
        """A connection (pooled or new) with the request on it; the deadlines the answer is judged by."""
        phase = exchange.current()
        sending = _Sending(self, phase)
        budget = sending.budget = phase.timeout_s if phase is not None and phase.timeout_s is not None else timeout
        try:
            send_by = phase.send_deadline() if phase is not None else None
            if send_by is not None and time.time() > send_by:
                raise NotSent(f"the generator held the request for {time.time() - phase.started:.1f} s, past the "
                              f"phase's {phase.timeout_s:g} s deadline, before it could send it")
            connect_started = time.time()
            conn = sending.conn = self._reuse()
            if conn is None:
                started_by = phase.wire_started if phase is not None and phase.wire_started is not None else None
                connect_deadline = None if budget is None else (started_by or connect_started) + budget
                conn = sending.conn = await self._connect(connect_deadline)
                sending.connect_s = time.time() - connect_started
                sending.setup_s, sending.syn = conn.setup_s, conn.syn_retransmits
            sending.step = "write"
            payload = conn.wire_bytes(self._head(method, target, headers, body) + (body or b""))
            sent_at = sending.sent_at = time.time()
            wire_started = sent_at - sending.setup_s
            if phase is not None:
                phase.began(wire_started)
                deadline = phase.verdict_deadline(wire_started, timeout)
                give_up = None if deadline is None else deadline + phase.linger_s
            else:
                deadline = give_up = None if timeout is None else wire_started + timeout
            sending.reading = _Reading(deadline, give_up)
            await conn.send_raw(payload)
            sending.step = "read"
        except BaseException as exc:
            mapped = sending.fail(exc)
            if mapped is None:
                raise
            raise mapped from None
        return sending

    def _release(self, conn: "_Connection", answer: "_Answer") -> None:
        """Back to the pool if the answer ended cleanly on a connection that stays open, else closed."""
        if not (answer.complete and answer.keep_alive and not answer.trailing):
            conn.close()
        elif len(self._idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close_idle()

    def close(self) -> None:
        self.reset_idle()
        if self._h2 is not None:
            self._h2.close()

    def reset_idle(self) -> None:
        """Close the idle HTTP/1.1 connections by reset (``_Connection.close_idle``): no TIME_WAIT left."""
        while self._idle:
            self._idle.pop().close_idle()

    def close_idle(self, older_than_s: float) -> int:
        """Close the connections idle for longer than ``older_than_s``; returns how many are left
        (HTTP/2 connections with streams open included)."""
        deadline = time.monotonic() - older_than_s
        while self._idle and self._idle[0].idle_since < deadline:  # the oldest are on the left
            self._idle.popleft().close_idle()
        return len(self._idle) + (self._h2.close_idle(older_than_s) if self._h2 is not None else 0)

    @property
    def http2_connections(self) -> int:
        """HTTP/2 connections open (or opening) to the origin."""
        return len(self._h2.conns) if self._h2 is not None else 0

    def _origin(self):
        if self._h2 is None:
            self._h2 = self._h2_origin(self, prior_knowledge=self.scheme == "http")
        if self._h2.h1:
            self._http2 = False  # the server chose HTTP/1.1 by ALPN: so be it, from now on
        return self._h2

    def _park(self, conn: "_Connection") -> None:
        """A new connection on which the server chose HTTP/1.1: to the pool, for the next exchange."""
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    # -- internals -------------------------------------------------------------

    def _head(self, method: str, target: str, headers: dict, body: Optional[bytes]) -> bytes:
        lines = [f"{method} {self.prefix}{target} HTTP/1.1", f"host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
        if body and not any(name.lower() == "content-length" for name in headers):
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _reuse(self) -> Optional[_Connection]:
        loop = self._io.loop_key()
        if loop != self._loop:
            self.close()
            self._loop = loop
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed idle
            if conn.idle_and_open():
                return conn
            conn.close_idle()
        return None

    async def _resolve(self, deadline: Optional[float]) -> list:
        if not self._addresses or time.monotonic() - self._addresses_at > _DNS_TTL_S:
            try:
                infos = await self._io.resolve(self.host, self.port, deadline)
            except OSError as exc:
                raise ConnectError(f"cannot resolve {self.host}: {exc}") from exc
            self._addresses = [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]
            self._addresses_at = time.monotonic()
        return self._addresses

    async def _connect(self, deadline: Optional[float] = None) -> _Connection:
        last_error: Optional[BaseException] = None
        addresses = await self._resolve(deadline)
        for family, address in addresses:
            try:
                sock = _socket_class(family, socket.SOCK_STREAM)
            except OSError as exc:
                raise _generator_or(exc, ConnectError, f"cannot open a socket for {self.host_header}") from exc
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    stamped = True
                except OSError:
                    stamped = False
                connect_called = time.time()  # connect() sends the first SYN at once
                await self._connect_socket(sock, address, deadline)
            except OSError as exc:
                sock.close()
                if exc.errno in GENERATOR_ERRNOS:
                    raise GeneratorError(f"cannot connect to {self.host_header}: {exc}") from exc
                last_error = exc
                continue
            except BaseException:
                sock.close()
                raise
            conn = _Connection(self._io, sock, stamped, self._buffer, connect_called)
            if self._ssl is not None:
                try:
                    await conn.start_tls(self._ssl, self.host)
                except BaseException:
                    conn.close()
                    raise
            return conn
        raise ConnectError(f"cannot connect to {self.host_header}: {last_error}")

    async def _connect_socket(self, sock: socket.socket, address, deadline: Optional[float]) -> None:
        """connect() without blocking; at the deadline, a handshake the kernel completed still counts."""
        err = sock.connect_ex(address)
        if err in (0, errno.EISCONN):
            return
        if err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
            raise OSError(err, os.strerror(err))
        fd = sock.fileno()
        while True:
            await self._io.wait(fd, True, deadline)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            if tcp_info.read_u8(sock, tcp_info.STATE) in (tcp_info.ESTABLISHED, None):
                return
            if deadline is not None and time.time() >= deadline:
                raise ConnectTimeout(f"connect to {self.host_header}: no handshake within the deadline")

    async def _feed(self, conn: _Connection, answer: "_Answer", reading: "_Reading", phase) -> None:
        """One read from the socket into the answer's parser, stamped in ``reading``.

        At the deadline with nothing waiting: the provider's timeout; a
        lingering phase (a create) keeps reading until ``give_up`` for a late
        answer. A close-delimited answer completes at the close."""
        try:
            data = await conn.read(reading.until)
        except _Expired:
            if phase is not None:
                phase.time_is_up()
            if reading.give_up is not None and reading.until is not None and reading.give_up > reading.until:
                reading.until = reading.give_up  # no answer in time: a timeout, but a late answer is still worth having
                return
            raise ReadTimeout(f"no complete answer from {self.host_header} within the deadline") from None
        if not data:
            if answer.headers_done and answer.delimited_by_close():
                answer.complete = True  # (keep_alive stays False: the connection is not reused)
                return
            raise RemoteProtocolError("the server closed the connection without a complete answer"
                                      if reading.answered_at is not None else
                                      "the server closed the connection without answering")
        reading.answered_at = conn._stamp
        try:
            answer.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise RemoteProtocolError("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            raise RemoteProtocolError(f"malformed answer: {exc}") from None

    def _judge(self, reading: "_Reading", phase) -> bool:
        """Whether the bytes read so far came after the deadline (by their kernel stamp): then the
        provider's timeout, raised unless the phase lingers for a late answer. Returns ``late``."""
        deadline, answered_at = reading.deadline, reading.answered_at
        if deadline is None or answered_at is None or answered_at <= deadline:
            return False
        if phase is not None:
            phase.time_is_up()
        if reading.give_up is None or reading.give_up <= deadline:
            raise ReadTimeout(f"the answer from {self.host_header} came after the deadline")
        return True


class _Reading:
    """An answer's deadlines, and the kernel's stamp of its latest bytes."""

    __slots__ = ("deadline", "give_up", "until", "answered_at")

    def __init__(self, deadline: Optional[float], give_up: Optional[float]):
        self.deadline = deadline
        self.give_up = give_up
        self.until = deadline
        self.answered_at: Optional[float] = None


class _Sending:
    """One exchange in flight: its connection, when it went out, and how a failure is recorded."""

    __slots__ = ("client", "phase", "conn", "sent_at", "setup_s", "syn", "connect_s", "reading", "budget", "step",
                 "recorded")

    def __init__(self, client: "WireClient", phase):
        self.client = client
        self.phase = phase
        self.conn: Optional[_Connection] = None
        self.sent_at: Optional[float] = None
        self.setup_s, self.syn, self.connect_s = 0.0, 0, 0.0
        self.reading: Optional[_Reading] = None
        self.budget = None
        self.step = "connect"
        self.recorded: Optional[Exchange] = None

    def record(self, answered_at: Optional[float], late: bool) -> None:
        """The exchange on the phase, as answered by ``answered_at`` (None: not answered); called again
        (a stream handing out more bytes), it updates the one record."""
        recorded = self.recorded
        if recorded is not None:
            recorded.answered, recorded.late = answered_at, late
        elif self.phase is not None:
            recorded = self.recorded = Exchange(self.sent_at, answered_at, self.setup_s, self.syn, late=late)
            self.phase.record(recorded)

    def fail(self, exc: BaseException) -> Optional[BaseException]:
        """Close the connection and record the unanswered exchange (if it was sent); the error to raise
        instead of ``exc`` (a bare timeout, named for where it happened), or None to raise ``exc``."""
        if self.conn is not None:
            self.conn.close()
        if self.sent_at is not None:
            self.record(None, isinstance(exc, ReadTimeout))
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not isinstance(exc, WireError):
            host = self.client.host_header
            if self.step == "connect":
                return ConnectTimeout(f"connect to {host} timed out")
            return ReadTimeout(f"no complete answer from {host} in {self.budget} s")
        return None


class WireStream:
    """An answer read as it arrives: ``status`` and ``headers`` at once, the body by ``read``.

    What "answered" means for a stream: the kernel's stamp of the last bytes
    the caller took. A caller that reads to the end (an SSE stream the server
    closes, a chunked body) gets the stamp of the body's last bytes; one that
    stops as soon as it has what it needs (the event with the exit code) gets
    the stamp of the bytes that carried it, however long the server then
    keeps the stream open. Deadlines are judged on the same stamps, chunk by
    chunk. The exchange is on the phase from the head on, and its answer
    time moves with every read, so it is right even before the stream is
    closed (an SDK that stops iterating an async generator closes it only
    when the generator is collected). Closing reads what is already waiting
    in the socket, without waiting for more, and the connection goes back to
    the pool only if the whole answer was in by then."""

    __slots__ = ("_client", "_sending", "_answer", "_done", "status", "headers", "sent_at", "answered_at",
                 "connect_s", "setup_s", "kernel_stamped", "syn_retransmits", "late")

    def __init__(self, client: WireClient, sending: _Sending, answer: _Answer, late: bool):
        self._client, self._sending, self._answer = client, sending, answer
        self._done = False
        self.status = answer.parser.get_status_code()
        self.headers = answer.headers
        self.sent_at = sending.sent_at
        self.answered_at = sending.reading.answered_at  # the head's, until body bytes are read
        self.connect_s, self.setup_s, self.syn_retransmits = sending.connect_s, sending.setup_s, sending.syn
        self.kernel_stamped = sending.conn.stamped
        self.late = late
        sending.record(self.answered_at, late)

    @property
    def complete(self) -> bool:
        """The whole answer is in (nothing left to read from the socket)."""
        return self._answer.complete

    async def read(self) -> bytes:
        """The next body bytes; b"" at the end of the answer."""
        answer, sending = self._answer, self._sending
        if self._done:
            return b""
        try:
            while not answer.body and not answer.complete:
                await self._client._feed(sending.conn, answer, sending.reading, sending.phase)
            if answer.body:
                chunk = b"".join(answer.body) if len(answer.body) != 1 else answer.body[0]
                answer.body.clear()
                self.answered_at = sending.reading.answered_at
                self.late = self._client._judge(sending.reading, sending.phase) or self.late
                sending.record(self.answered_at, self.late)
                return chunk
        except BaseException as exc:
            self._done = True
            mapped = sending.fail(exc)
            if mapped is None:
                raise
            raise mapped from None
        self._finish()
        return b""

    async def aclose(self) -> None:
        """Stop reading: the exchange stays answered as of the last bytes read."""
        if self._done:
            return
        answer, conn = self._answer, self._sending.conn
        try:
            while not answer.complete:  # only what is already waiting: the rest of the answer is not needed
                answer.body.clear()
                try:
                    data = await conn.read(0.0)
                except _Expired:
                    break
                if not data:
                    break
                answer.parser.feed_data(data)
        except Exception:  # noqa: BLE001 - the caller has what it needed; the connection is just not reused
            answer.complete = False
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self._answer.complete:
            self._client._release(self._sending.conn, self._answer)
        else:
            self._sending.conn.close()


def handshake(sock: socket.socket, connect_called: float) -> tuple[float, int]:
    """(set-up seconds, SYN retransmissions) of a just-connected socket, as the kernel saw them.

    The set-up runs from the connect call (the first SYN) to the handshake's
    completion, which TCP_INFO dates by the age of the last ACK received (the
    SYN-ACK; jiffy resolution), so SYNs the server dropped and the kernel sent
    again are in it. Without TCP_INFO: the handshake's round trip, or 0."""
    now = time.time()
    ack_age_ms, rtt_us, retrans = tcp_info.read_fields(sock, tcp_info.LAST_ACK_RECV_MS, tcp_info.RTT_US,
                                                       tcp_info.TOTAL_RETRANS)
    rtt = (rtt_us or 0) / 1e6
    if ack_age_ms is None:
        return rtt, 0
    setup = (now - ack_age_ms / 1000.0) - connect_called
    return max(setup, rtt), int(retrans or 0)


def _generator_or(exc: OSError, other: type, message: str) -> WireError:
    if exc.errno in GENERATOR_ERRNOS:
        return GeneratorError(f"{message}: {exc}")
    return other(f"{message}: {exc}")


class WirePool:
    """WireClients for many origins (a sandbox's agent is a host of its own) sharing one read buffer.

    One client per origin; for ``https`` without an ``ssl_context`` of the pool's own, one per
    origin and per the roots ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name when the request is made.
    Idle connections older than ``idle_expiry_s`` are closed by a sweep on the loop, and clients
    left with none are dropped: a held sandbox does not keep a connection, an fd and its buffers
    through a long hold. ``io``: where its exchanges wait (``ASYNCIO``: the running asyncio loop;
    ``greenwire.HUB``: gevent's hub, see ``loadgen.net.greenwire.pool``)."""

    def __init__(self, *, max_idle_per_origin: int = 64, idle_expiry_s: float = 30.0,
                 ssl_context: Optional[ssl.SSLContext] = None, io: Io = ASYNCIO, http2=None):
        self.io = io
        self.max_idle_per_origin = max_idle_per_origin
        self.http2 = http2  # a control plane's pool: wireh2.Origin, for HTTP/2 where asked and offered (see WireClient)
        self.idle_expiry_s = idle_expiry_s
        self._ssl = ssl_context
        self._buffer = memoryview(bytearray(_READ_SIZE))
        self._clients: dict = {}
        self._sweeping = False
        self._sweeper = None  # the sweep's timer (kept: a hub's timer must stay referenced)
        self._loop = None
        _pools.add(self)

    async def request(self, method: str, url: str, headers: dict, body: Optional[bytes] = None,
                      timeout: Optional[float] = None) -> WireResponse:
        """WireClient.request on the client of ``url``'s origin (an absolute http(s) URL)."""
        client, target = self._client_and_target(url)
        return await client.request(method, target, headers, body, timeout)

    async def stream(self, method: str, url: str, headers: dict, body: Optional[bytes] = None,
                     timeout: Optional[float] = None) -> WireStream:
        """WireClient.stream on the client of ``url``'s origin."""
        client, target = self._client_and_target(url)
        return await client.stream(method, target, headers, body, timeout)

    def client(self, url: str) -> WireClient:
        """The client of ``url``'s origin (its path is ignored)."""
        return self._client_and_target(url)[0]

    def _client_and_target(self, url: str):
        # "scheme:", "", "host[:port]", "path?query": a split, not a URL parse, on every request
        scheme, _, netloc, *rest = url.split("/", 3)
        loop = self.io.loop_key()
        if loop != self._loop:  # a new loop (a new asyncio.run, a fork): nothing of the old one carries over
            self.close()
            self._loop, self._sweeping = loop, False
        # per origin and, where the roots come from the environment, per roots: a server that took an
        # earlier one's address (an emulator restarted on its port) may have its own CA, named by then
        key = (scheme, netloc) if scheme != "https:" or self._ssl is not None \
            else (scheme, netloc, _roots_named_by_environment())
        client = self._clients.get(key)
        if client is None:
            ssl_context = self._ssl
            if scheme == "https:" and ssl_context is None:
                ssl_context = _shared_default_context(_speaks_http2(self.http2, self.io, "https"))
            client = self._clients[key] = WireClient(
                f"{scheme}//{netloc}", ssl_context=ssl_context, max_idle=self.max_idle_per_origin, buffer=self._buffer,
                io=self.io, http2=self.http2)
            if not self._sweeping:
                self._sweeping = True
                self._sweeper = self.io.call_later(self.idle_expiry_s / 2, self._sweep)
        return client, "/" + (rest[0] if rest else "")

    def _sweep(self) -> None:
        for key, client in list(self._clients.items()):
            if not client.close_idle(self.idle_expiry_s):
                del self._clients[key]  # (a request in flight holds its connection, not the client)
        if self._clients:
            self._sweeper = self.io.call_later(self.idle_expiry_s / 2, self._sweep)
        else:
            self._sweeping = False

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def reset_idle(self) -> None:
        """Reset every idle HTTP/1.1 connection of every origin (WireClient.reset_idle)."""
        for client in list(self._clients.values()):
            client.reset_idle()


# Every WirePool of the process, for the reset at its exit.
_pools: "weakref.WeakSet[WirePool]" = weakref.WeakSet()


@atexit.register
def _reset_idle_at_exit() -> None:
    """At the process's exit, reset the idle HTTP/1.1 connections every pool still keeps.

    Why: a pool keeps up to ``max_idle_per_origin`` idle connections per origin (e2b's control
    plane: twice the sandboxes of the process), and the exit would otherwise close each with a
    FIN, leaving this host one TIME_WAIT socket per connection for 60 s: the next run towards the
    same address from this host would start with its ephemeral ports full of them (see
    ``_Connection.close_idle``). Idle connections carry nothing, so nothing is lost. Nothing runs
    on the pools' loops any more at this point; HTTP/2 connections (a few per control plane) are
    left to the exit."""
    for pool in list(_pools):
        try:
            pool.reset_idle()
        except Exception:  # noqa: BLE001 - the exit goes on
            pass


def default_ssl_context(h2: bool = False) -> ssl.SSLContext:
    """Certificate checks as httpx makes them, ALPN http/1.1 (with ``h2``: h2 first, then http/1.1): the
    roots of ``SSL_CERT_FILE`` (or ``SSL_CERT_DIR``) when set, as for httpx, urllib3 and OpenSSL (how an
    emulator under ``--tls`` is trusted), else certifi's. A new context each call."""
    key = _roots_named_by_environment()
    if key[0]:
        context = ssl.create_default_context(cafile=key[0])
    elif key[1]:
        context = ssl.create_default_context(capath=key[1])
    else:
        try:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - httpx depends on certifi
            context = ssl.create_default_context()
    context.set_alpn_protocols(["h2", "http/1.1"] if h2 else ["http/1.1"])
    return context


def _roots_named_by_environment() -> tuple:
    return os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None


_shared_contexts: dict = {}


def _shared_default_context(h2: bool = False) -> ssl.SSLContext:
    """default_ssl_context(h2), one per set of roots, shared by the pools: each costs ~20 ms of CPU to build."""
    key = _roots_named_by_environment() + (h2,)
    context = _shared_contexts.get(key)
    if context is None:
        context = _shared_contexts[key] = default_ssl_context(h2)
    return context
