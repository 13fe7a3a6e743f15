"""HTTP/2 for wirehttp's control-plane origins: h2's framing on wiregrpc's stamped transport.

Why: over HTTP/1.1 every create in flight holds a connection of its own: at
10,000 concurrent creates over TLS that is 10,000 handshakes, sockets,
descriptors and ephemeral ports toward one API address (50,000 per host do not
fit Linux's default port range at all), where HTTP/2 needs one connection per
hundred streams (BENCHMARKS.md §10). So a ``WireClient`` made with
``http2=wireh2.Origin`` (a control plane: one API host that every sandbox of the
process shares), when asked (``LOADGEN_WIRE_HTTP2=alpn`` or ``1``; the
default keeps every origin on HTTP/1.1), offers ``h2`` by ALPN over TLS and
speaks whatever the server picks; over cleartext it speaks HTTP/2 with prior
knowledge only with ``LOADGEN_WIRE_HTTP2=1``. Data planes
(a sandbox's own host) stay on HTTP/1.1: one connection each either way.

Timing is wirehttp's, per stream. The connection runs on
``wiregrpc.StampedTransport``, which already times HTTP/2 streams for modal:
reads are cut just past each frame that ends a stream (over TLS, each record)
by a reader thread of its own, so an answer's time is the kernel's receive
stamp of the segment that carried its END_STREAM, even when many streams'
answers land while the loop is busy; what one loop step writes goes out in one
send, and a request's time is that send's (the one that carried its
END_STREAM). Deadlines are the phase's (``loadgen.net.exchange``) from each
stream's wire start, judged on those stamps: at the deadline, what is already
waiting in the socket is read first; a lingering phase (a create) keeps the
stream for a late answer until ``linger_s`` more, then resets it. A request the
generator could not send before the phase's send deadline is not sent.

The server's limits hold: a connection carries at most
``min(SETTINGS_MAX_CONCURRENT_STREAMS, streams_per_connection)`` streams (100
until the server's SETTINGS say otherwise), and another connection is opened
when every one is full; a stream the server refuses (REFUSED_STREAM, or above
a GOAWAY's last stream id) was not processed and is sent again on another
connection, unrecorded; any other RST_STREAM is that exchange's
``RemoteProtocolError`` alone; flow control is h2's (request bodies wait for
the window, received data is acknowledged as it is read). One stream is one
answer: an answer is read whole (``request``) or as it arrives (``stream``:
``H2Stream``, with wirehttp's ``WireStream`` interface and meaning of
"answered").

A new connection's set-up (TCP, TLS, and the server's SETTINGS, as the
kernel saw them) is the exchange's that opened it; requests that arrive while
it is being made wait for it instead of opening their own. Its first
requests go out once the server's SETTINGS are in: within its stream limit,
and after the SETTINGS ACK (a server, the emulator among them, that dates a
request by its connection's latest segment would otherwise date the whole
first batch by that ACK).
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from loadgen.net import exchange, wiregrpc
from loadgen.net.exchange import Exchange, NotSent
from loadgen.net.wirehttp import (ConnectError, ConnectTimeout, ReadError, ReadTimeout, RemoteProtocolError, WireError,
                                  WireResponse)

STREAMS_PER_CONNECTION = 100  # the client's own cap; the RFC's recommended minimum for servers, and h2's default
_WINDOW = 1 << 20  # each stream's receive window (an answer never waits for our WINDOW_UPDATE below a MiB)
_CONNECTION_WINDOW = 16 << 20
_RETRIES = 8  # refused streams sent again before the exchange fails
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"))
_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
_REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
_CANCEL = h2.errors.ErrorCodes.CANCEL


class _ClientState(h2.connection.H2Connection):
    """h2's connection state, with the concurrent-stream limit left to the pool (which counts its streams).

    h2 checks the limit by walking every stream on each new one (and raises
    where the pool would rather open another connection); here closed streams
    are forgotten once per 256 new streams instead."""

    _new_streams = 0

    @property
    def open_outbound_streams(self) -> int:
        self._new_streams += 1
        if not self._new_streams % 256:
            self._open_streams(1)  # forget closed streams
        return 0


class _Stream:
    """One exchange on a connection: its times, its deadlines and what has arrived of its answer."""

    __slots__ = ("conn", "id", "phase", "timeout", "setup_s", "syn", "connect_s", "sent_at", "deadline",
                 "give_up", "timer", "status", "headers", "body", "ended", "answered_at", "error", "refused",
                 "late", "waiter", "recorded", "retired", "pending")

    def __init__(self, conn: "_Connection", phase, timeout, setup_s: float, syn: int, connect_s: float):
        self.conn, self.phase, self.timeout = conn, phase, timeout
        self.setup_s, self.syn, self.connect_s = setup_s, syn, connect_s
        self.id = 0
        self.sent_at: Optional[float] = None
        self.deadline = self.give_up = None
        self.timer = None
        self.status: Optional[int] = None
        self.headers: list = []
        self.body: list = []
        self.ended = self.refused = self.late = self.retired = False
        self.answered_at: Optional[float] = None
        self.error: Optional[BaseException] = None
        self.waiter: Optional[asyncio.Future] = None
        self.recorded: Optional[Exchange] = None
        self.pending: Optional[memoryview] = None  # request body bytes still waiting for the flow-control window

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the request went out ---------------------------------------------------
    def sent(self, at: float) -> None:
        """The send that carried the request's END_STREAM was made at ``at``: the request's time, and
        the start of its deadline."""
        self.sent_at = at
        wire_started = at - self.setup_s
        phase = self.phase
        if phase is not None:
            phase.began(wire_started)
            self.deadline = phase.verdict_deadline(wire_started, self.timeout)
            self.give_up = None if self.deadline is None else self.deadline + phase.linger_s
        elif self.timeout is not None:
            self.deadline = self.give_up = wire_started + self.timeout
        if self.deadline is not None and not self.retired:
            self.timer = self.conn.loop.call_later(max(0.0, self.deadline - time.time()), self._deadline_passed)

    def _deadline_passed(self) -> None:
        self.timer = None
        if not self.retired:  # an answer that arrived in time but was not read yet is the answer
            self.conn.read_then(self._judge_deadline)

    def _judge_deadline(self) -> None:
        if self.retired:
            return
        self.late = True
        if self.phase is not None:
            self.phase.time_is_up()
        if self.give_up is not None and self.give_up > self.deadline and time.time() < self.give_up:
            self.timer = self.conn.loop.call_later(max(0.0, self.give_up - time.time()), self._give_up)
        else:
            self.conn.abandon(self, ReadTimeout(f"no complete answer from {self.conn.origin.host} within the deadline"))

    def _give_up(self) -> None:
        self.timer = None
        if not self.retired:
            self.conn.read_then(lambda: self.retired or self.conn.abandon(
                self, ReadTimeout(f"no complete answer from {self.conn.origin.host} within the deadline")))

    # -- verdicts and records ------------------------------------------------------
    def judge(self) -> bool:
        """Whether the bytes taken so far came after the deadline (by their kernel stamp): then the
        provider's timeout, raised unless the phase lingers for a late answer. Returns ``late``."""
        deadline, answered_at = self.deadline, self.answered_at
        if deadline is None or answered_at is None or answered_at <= deadline:
            return False
        if self.phase is not None:
            self.phase.time_is_up()
        if self.give_up is None or self.give_up <= deadline:
            raise ReadTimeout(f"the answer from {self.conn.origin.host} came after the deadline")
        return True

    def record(self, answered_at: Optional[float], late: bool) -> None:
        recorded = self.recorded
        if recorded is not None:
            recorded.answered, recorded.late = answered_at, late
        elif self.phase is not None and self.sent_at is not None:
            recorded = self.recorded = Exchange(self.sent_at, answered_at, self.setup_s, self.syn, late=late)
            self.phase.record(recorded)

    def fail(self, exc: BaseException) -> BaseException:
        """The exchange ends unanswered (the stream reset if still open); the error to raise."""
        self.conn.abandon(self, None)
        self.record(None, isinstance(exc, ReadTimeout) or self.late)
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not isinstance(exc, WireError):
            return ReadTimeout(f"no complete answer from {self.conn.origin.host} in time")
        return exc

    def response(self) -> WireResponse:
        content = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        return WireResponse(self.status, self.headers, content, self.sent_at, self.answered_at, self.connect_s,
                            self.setup_s, self.conn.stamped, self.syn, self.late)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection (h2's state) on a StampedTransport, and its streams."""

    def __init__(self, origin: "Origin", loop):
        self.origin, self.loop = origin, loop
        self.state = _ClientState(config=_CONFIG)
        self.state.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
        })
        self.streams: dict = {}
        self.capacity = origin.capacity_hint()  # the requests that wait for this connection's SETTINGS
        self.active = 0  # streams reserved or open
        self.usable = True  # takes new streams (no GOAWAY, not closing, not lost)
        self.idle_since = time.monotonic()
        self.ready: asyncio.Future = loop.create_future()  # None: HTTP/2; "h1": the server chose HTTP/1.1;
        # an exception: the connection could not be made
        self.transport = None
        self.wired = None  # wirehttp's connection under the transport
        self.stamped = True
        self.lost = False
        self.settled: Optional[asyncio.Future] = None  # the server's first SETTINGS came (None) or not (an error)
        self.settled_at = 0.0
        self._blocked: list = []  # streams whose request body waits for the flow-control window

    # -- set-up -----------------------------------------------------------------
    async def open(self, deadline: Optional[float], prior_knowledge: bool) -> None:
        """Connect (TCP, TLS with ALPN), then start HTTP/2 on the stamped transport; ``ready`` says how."""
        origin = self.origin
        try:
            wired = await origin.client._connect(deadline)
        except BaseException as exc:  # noqa: BLE001 - told to every request waiting for this connection
            self.usable = False
            origin.forget(self)
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not isinstance(exc, WireError):
                exc = ConnectTimeout(f"connect to {origin.host} timed out")
            if not self.ready.done():
                self.ready.set_result(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        chosen = wired.tls.selected_alpn_protocol() if wired.tls is not None else ("h2" if prior_knowledge else None)
        if chosen != "h2":
            self.usable = False
            origin.forget(self)
            origin.chose_h1(wired)
            self.ready.set_result("h1")
            return
        self.wired, self.stamped = wired, wired.stamped
        self.settled = self.loop.create_future()
        transport = wiregrpc.StampedTransport(self.loop, wired, self, None, keep_ends=False)
        self.connection_made(transport)
        preface_at = time.time()  # (sent at the end of this loop step)
        transport.start()  # (what TLS decrypted with its last flight first: the server's SETTINGS, maybe)
        # The first requests wait for the server's SETTINGS: they are sent within its stream limit, and
        # after the SETTINGS ACK rather than before it (a server that dates a request by its connection's
        # latest segment would otherwise date a whole first batch by the ACK). The set-up includes it.
        try:
            if deadline is None:
                outcome = await self.settled
            else:
                async with asyncio.timeout(max(0.0, deadline - time.time())):
                    outcome = await self.settled
        except TimeoutError:
            outcome = ConnectTimeout(f"connect to {origin.host}: no HTTP/2 SETTINGS within the deadline")
        if outcome is not None:
            self.usable = False
            origin.forget(self)
            transport.abort()
            self.ready.set_result(outcome)
            return
        wired.setup_s += max(0.0, self.settled_at - preface_at)
        self.ready.set_result(None)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.state.initiate_connection()
        self.state.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        self.flush()

    # -- asyncio.Protocol --------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            events = self.state.receive_data(data)
        except h2.exceptions.H2Error as exc:
            self._broken(RemoteProtocolError(f"malformed HTTP/2 from {self.origin.host}: {exc}"))
            return
        stamp = self.transport.stamp
        streams = self.streams
        for event in events:
            kind = event.__class__
            if kind is h2.events.DataReceived:
                stream = streams.get(event.stream_id)
                if event.flow_controlled_length:
                    self.state.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if stream is not None:
                    stream.body.append(event.data)
                    stream.answered_at = stamp
                    stream.wake()
            elif kind is h2.events.StreamEnded:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.ended = True
                    stream.answered_at = stamp
                    self.retire(stream)
                    stream.wake()
            elif kind is h2.events.ResponseReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    headers = []
                    for name, value in event.headers:
                        if name[:1] == b":":
                            if name == b":status":
                                stream.status = int(value)
                        else:
                            headers.append((name.decode("latin-1"), value.decode("latin-1")))
                    stream.headers = headers
                    stream.answered_at = stamp
                    stream.wake()
            elif kind is h2.events.StreamReset:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    if event.error_code == _REFUSED and stream.status is None:
                        stream.refused = True  # not processed: sent again elsewhere
                    else:
                        stream.error = RemoteProtocolError(
                            f"the server reset the stream ({_code_name(event.error_code)})")
                    self.retire(stream)
                    stream.wake()
            elif kind is h2.events.RemoteSettingsChanged:
                limit = self.state.remote_settings.max_concurrent_streams
                self.origin.server_limit = limit
                self.capacity = min(self.origin.streams_per_connection, limit)
                if not self.settled.done():
                    self.settled_at = stamp
                    self.settled.set_result(None)
                self._unblock()
            elif kind is h2.events.WindowUpdated:
                self._unblock()
            elif kind is h2.events.ConnectionTerminated:
                self._goaway(event.last_stream_id or 0, event.error_code)
        self.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = True
        self.usable = False
        self.origin.forget(self)
        if self.settled is not None and not self.settled.done():
            self.settled.set_result(ConnectError(f"{self.origin.host} closed the connection before its HTTP/2 "
                                                 f"SETTINGS" + (f": {exc}" if exc else "")))
        for stream in list(self.streams.values()):
            if stream.sent_at is None:
                stream.refused = True  # never left this host: safe to send again
            elif exc is not None:
                stream.error = ReadError(f"read failed: {exc}")
            else:
                stream.error = RemoteProtocolError(
                    "the server closed the connection without a complete answer" if stream.status is not None
                    else "the server closed the connection without answering")
            self.retire(stream)
            stream.wake()

    def pause_writing(self) -> None:
        pass  # (the transport's backlog grows; every request is small)

    def resume_writing(self) -> None:
        pass

    # -- streams ----------------------------------------------------------------
    def start(self, stream: _Stream, head: list, body: Optional[bytes]) -> None:
        """Open ``stream`` with the request on it; its time is that of the send that ends it."""
        state = self.state
        try:
            stream.id = state.get_next_available_stream_id()
            state.send_headers(stream.id, head, end_stream=not body)
        except h2.exceptions.NoAvailableStreamIDError:
            self.usable = False
            stream.refused = True
            self.active -= 1
            stream.retired = True
            return
        self.streams[stream.id] = stream
        if body:
            stream.pending = memoryview(body)
            if not self._send_body(stream):
                self._blocked.append(stream)
        else:
            self._ended(stream)
        self.flush()

    def _send_body(self, stream: _Stream) -> bool:
        """As much of the request body as the window takes; True once it is all out (END_STREAM sent)."""
        state = self.state
        pending = stream.pending
        while pending:
            room = min(state.local_flow_control_window(stream.id), state.max_outbound_frame_size, len(pending))
            if room <= 0:
                stream.pending = pending
                return False
            state.send_data(stream.id, pending[:room].tobytes(), end_stream=room == len(pending))
            pending = pending[room:]
        stream.pending = None
        self._ended(stream)
        return True

    def _ended(self, stream: _Stream) -> None:
        transport = self.transport
        self.flush()
        transport.when_written(stream.id, stream.sent)
        transport.end_written(stream)

    def _unblock(self) -> None:
        if self._blocked:
            blocked, self._blocked = self._blocked, []
            for stream in blocked:
                if not stream.retired and not self._send_body(stream):
                    self._blocked.append(stream)

    def retire(self, stream: _Stream) -> None:
        """The stream holds no slot any more (answered, reset, given up)."""
        if stream.retired:
            return
        stream.retired = True
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        self.streams.pop(stream.id, None)
        self.active -= 1
        if not self.active:
            self.idle_since = time.monotonic()
            if not self.usable and not self.lost:
                self.close()  # drained after a GOAWAY

    def abandon(self, stream: _Stream, exc: Optional[BaseException]) -> None:
        """Stop the stream (RST_STREAM CANCEL if still open); with ``exc``, that is its error."""
        if not stream.retired:
            if stream.id and not self.lost:
                try:
                    self.state.reset_stream(stream.id, _CANCEL)
                except h2.exceptions.H2Error:
                    pass
                self.flush()
            self.retire(stream)
        if exc is not None:
            stream.error = stream.error or exc
            stream.wake()

    def read_then(self, callback) -> None:
        """``callback`` once what is waiting in the socket now has been read and delivered."""
        if self.lost:
            callback()
        else:
            self.transport._read_then(callback)

    def _goaway(self, last_stream_id: int, error_code) -> None:
        self.usable = False
        self.origin.forget(self)
        for stream in list(self.streams.values()):
            if stream.id > last_stream_id:
                stream.refused = True  # not processed (RFC 9113 §6.8): sent again elsewhere
                self.retire(stream)
                stream.wake()
        if not self.active:
            self.close()

    def _broken(self, exc: BaseException) -> None:
        for stream in list(self.streams.values()):
            stream.error = exc
            self.retire(stream)
            stream.wake()
        self.usable = False
        self.origin.forget(self)
        self.transport.abort()

    def flush(self) -> None:
        data = self.state.data_to_send()
        if data and not self.lost:
            self.transport.write(data)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None and not self.lost:
            try:
                self.state.close_connection()
                self.flush()
            except h2.exceptions.H2Error:
                pass
            self.transport.close()
        self.lost = True


def _code_name(code) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


class Origin:
    """A WireClient's HTTP/2 connections to its origin (while the server keeps choosing HTTP/2)."""

    def __init__(self, client, prior_knowledge: bool, streams_per_connection: int = STREAMS_PER_CONNECTION):
        self.client = client
        self.host = client.host_header
        self.prior_knowledge = prior_knowledge
        self.streams_per_connection = streams_per_connection
        self.conns: list = []
        self.h1 = False  # the server chose HTTP/1.1 by ALPN: the client speaks that from now on
        self.loop = None
        self.opened = 0  # connections opened (HTTP/2 or not), for the pool's counts
        self.server_limit: Optional[int] = None  # the latest SETTINGS_MAX_CONCURRENT_STREAMS the server sent

    def capacity_hint(self) -> int:
        """Streams a new connection may carry before its own SETTINGS come: what the server said last on
        another connection, else 100 (the RFC's recommended minimum; a stream above the real limit is
        refused, and sent again)."""
        limit = self.server_limit if self.server_limit is not None else 100
        return max(1, min(self.streams_per_connection, limit))

    # -- connections ----------------------------------------------------------------
    def forget(self, conn: _Connection) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    def chose_h1(self, wired) -> None:
        self.h1 = True
        self.client._park(wired)  # the connection serves HTTP/1.1 exchanges

    def _pick(self, loop) -> tuple:
        """(a connection with a free stream, whether this request opens it)."""
        for conn in reversed(self.conns):  # the newest first: the older ones drain and expire
            if conn.usable and conn.active < conn.capacity:
                conn.active += 1
                return conn, False
        conn = _Connection(self, loop)
        conn.active = 1
        self.conns.append(conn)
        self.opened += 1
        return conn, True

    def close(self) -> None:
        for conn in list(self.conns):
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a connection of a loop that is gone: its socket, at least
                if conn.wired is not None:
                    conn.wired.close()
        self.conns.clear()

    def close_idle(self, older_than_s: float) -> int:
        """Close connections without streams for longer than ``older_than_s``; returns how many are left."""
        limit = time.monotonic() - older_than_s
        for conn in list(self.conns):
            if not conn.active and conn.ready.done() and conn.idle_since < limit:
                self.forget(conn)
                conn.close()
        return len(self.conns)

    # -- exchanges -------------------------------------------------------------------
    async def exchange(self, method: str, target: str, headers: dict, body: Optional[bytes],
                       timeout: Optional[float], streaming: bool):
        """A WireResponse (or, ``streaming``, an H2Stream once the head is in); None when the server
        turned out to choose HTTP/1.1 (the caller sends it on that). Errors as WireClient.request's."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.close()
            self.loop = loop
        phase = exchange.current()
        budget = phase.timeout_s if phase is not None and phase.timeout_s is not None else timeout
        send_by = phase.send_deadline() if phase is not None else None
        if send_by is not None and time.time() > send_by:
            raise NotSent(f"the generator held the request for {time.time() - phase.started:.1f} s, past the "
                          f"phase's {phase.timeout_s:g} s deadline, before it could send it")
        started = time.time()
        started_by = phase.wire_started if phase is not None and phase.wire_started is not None else None
        connect_deadline = None if budget is None else (started_by or started) + budget
        head = self._head(method, target, headers, body)
        refusals = 0
        while refusals < _RETRIES:
            conn, opener = self._pick(loop)
            if opener:
                loop.create_task(conn.open(connect_deadline, self.prior_knowledge))
            if not conn.ready.done():
                await self._wait_ready(conn, connect_deadline)
            outcome = conn.ready.result()
            if outcome == "h1":
                return None
            if outcome is not None:
                raise outcome.__class__(*outcome.args) if isinstance(outcome, WireError) else outcome
            if conn.lost or not conn.usable or len(conn.streams) >= conn.capacity:
                conn.active -= 1  # lost, told GOAWAY, or its SETTINGS allow fewer streams than waited for it
                refusals += conn.capacity <= 0  # (a server that allows none for now: not for ever)
                continue
            setup_s = syn = 0
            connect_s = 0.0
            if opener:
                setup_s, syn, connect_s = conn.wired.setup_s, conn.wired.syn_retransmits, time.time() - started
            stream = _Stream(conn, phase, timeout, setup_s, syn, connect_s)
            conn.start(stream, head, body)
            try:
                while not (stream.refused or stream.error is not None or stream.ended
                           or (streaming and stream.status is not None)):
                    stream.waiter = loop.create_future()
                    await stream.waiter
                if stream.refused:
                    refusals += 1
                    continue
                if stream.error is not None:
                    raise stream.error
                stream.late = stream.judge()
            except BaseException as exc:
                raise stream.fail(exc) from None
            if streaming:
                return H2Stream(stream)
            stream.record(stream.answered_at, stream.late)
            return stream.response()
        raise RemoteProtocolError(f"{self.host} refused the stream {_RETRIES} times")

    async def _wait_ready(self, conn: _Connection, deadline: Optional[float]) -> None:
        if deadline is None:
            await asyncio.shield(conn.ready)
            return
        try:
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                await asyncio.shield(conn.ready)
        except TimeoutError:
            if not conn.ready.done():
                conn.active -= 1
                raise ConnectTimeout(f"connect to {self.host}: no connection within the deadline") from None
        except BaseException:
            if not conn.ready.done():
                conn.active -= 1
            raise

    def _head(self, method: str, target: str, headers: dict, body: Optional[bytes]) -> list:
        client = self.client
        head = [(b":method", method.encode("latin-1")), (b":scheme", client.scheme.encode("latin-1")),
                (b":authority", client.host_header.encode("latin-1")),
                (b":path", (client.prefix + target).encode("latin-1"))]
        has_length = False
        for name, value in headers.items():
            key = name.lower()
            if key in _HOP_BY_HOP or (key == "te" and value.lower() != "trailers"):
                continue
            has_length = has_length or key == "content-length"
            head.append((key.encode("latin-1"), str(value).encode("latin-1")))
        if body and not has_length:
            head.append((b"content-length", str(len(body)).encode("latin-1")))
        return head


class H2Stream:
    """An HTTP/2 answer read as it arrives, as ``wirehttp.WireStream`` reads an HTTP/1.1 one: ``status``
    and ``headers`` at once, the body by ``read``; "answered" is the kernel's stamp of the last bytes the
    caller took, and the exchange is on the phase from the head on. Closing an unfinished answer resets
    its stream (the connection carries on)."""

    __slots__ = ("_stream", "_done", "status", "headers", "sent_at", "answered_at", "connect_s", "setup_s",
                 "kernel_stamped", "syn_retransmits", "late")

    def __init__(self, stream: _Stream):
        self._stream = stream
        self._done = False
        self.status, self.headers = stream.status, stream.headers
        self.sent_at, self.answered_at = stream.sent_at, stream.answered_at
        self.connect_s, self.setup_s, self.syn_retransmits = stream.connect_s, stream.setup_s, stream.syn
        self.kernel_stamped = stream.conn.stamped
        self.late = stream.late
        stream.record(self.answered_at, self.late)

    @property
    def complete(self) -> bool:
        return self._stream.ended

    async def read(self) -> bytes:
        stream = self._stream
        if self._done:
            return b""
        try:
            while not stream.body and not stream.ended and stream.error is None:
                stream.waiter = asyncio.get_running_loop().create_future()
                await stream.waiter
            if stream.body:
                chunk = b"".join(stream.body) if len(stream.body) != 1 else stream.body[0]
                stream.body.clear()
                self.answered_at = stream.answered_at
                self.late = stream.judge() or self.late
                stream.record(self.answered_at, self.late)
                return chunk
            if stream.error is not None:
                raise stream.error
        except BaseException as exc:
            self._done = True
            raise stream.fail(exc) from None
        self._done = True
        return b""

    async def aclose(self) -> None:
        """Stop reading: the exchange stays answered as of the last bytes read."""
        if not self._done:
            self._done = True
            self._stream.conn.abandon(self._stream, None)
