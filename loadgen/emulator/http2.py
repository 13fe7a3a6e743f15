"""HTTP/2 on the emulator's port: h2's framing, the faces' Request interface.

A connection becomes HTTP/2 when its first bytes are the client preface
(``PRI * HTTP/2.0``): prior knowledge over cleartext, or after ALPN chose
``h2`` over TLS (http.Connection sees the preface and hands the connection
over). The
framing, HPACK, flow control and the stream state machine are the `h2`
library's; this module only maps its events onto `Request`s, so every face
answers HTTP/2 exactly as it answers HTTP/1.1: `respond` is one HEADERS
frame plus DATA, a streamed answer (Connect, SSE) is HEADERS then one DATA
frame per chunk, and `reset` is RST_STREAM on that stream alone (the other
sandboxes' streams on the connection are untouched, as behind a proxy).

Writes made while a read is being handled go out in one `transport.write`
at its end; writes made later, from timers, go out at once. Answers larger
than the client's flow-control window wait for its WINDOW_UPDATE.

Arrival stamps: a request's `received_at()` is the kernel's age of the
connection's last segment, read when the stream's END_STREAM is handled (in
the same read). That is the request's own segment unless several streams'
requests arrived between two reads of a busy loop; then they share the
latest one's stamp.
"""

from __future__ import annotations

import asyncio
from typing import Dict, List, Optional

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from loadgen.emulator.request import MAX_BODY, TOO_BIG_PATH, Request, kernel_arrival, serve

# h2 advertises 100 concurrent streams per connection by default; a client that
# multiplexes a whole burst over one connection would then queue creates inside
# itself: a limit of the emulator, not of the service being measured. So the
# default is no limit; the `h2_max_streams` setting sets a real one.
MAX_STREAMS = 2 ** 31 - 1


def max_streams(settings: dict) -> int:
    return settings.get("h2_max_streams") or MAX_STREAMS
_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection"))
# Header validation off both ways: ours are well-formed, and a client's malformed header is only a
# header no face finds (the framing, HPACK and stream states are still h2's to enforce).
# It was a tenth of the emulator's CPU per request.
_CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                                    normalize_outbound_headers=False, validate_inbound_headers=False)


class _ServerState(h2.connection.H2Connection):
    """h2's connection state, with the concurrent-stream limit enforced per stream, not per connection.

    h2 answers a HEADERS frame beyond SETTINGS_MAX_CONCURRENT_STREAMS by
    closing the whole connection (GOAWAY), which breaks every other stream on
    it; RFC 9113 §5.1.2 makes it a stream error, and servers answer
    RST_STREAM(REFUSED_STREAM), which a client may retry: Http2Connection does
    that. h2's check is also O(open streams) per new stream (it walks every
    stream, forgetting the closed ones); here that walk runs once per 256 new
    streams."""

    _new_streams = 0

    @property
    def open_inbound_streams(self) -> int:
        self._new_streams += 1
        if not self._new_streams % 256:
            self._open_streams(1)  # forget closed streams
        return 0


def _header_lines(extra: bytes) -> List[tuple]:
    """The faces' extra header lines (b"name: value\\r\\n"...) as HTTP/2 header pairs."""
    out = []
    for line in extra.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() not in _HOP_BY_HOP:
            out.append((name.strip().lower(), value.strip()))
    return out


class StreamRequest(Request):
    """A request on one HTTP/2 stream; answered through the connection's h2 state."""

    __slots__ = ("stream_id",)

    def __init__(self, conn: "Http2Connection", stream_id: int, method: bytes, url: bytes,
                 headers: Dict[bytes, bytes], body: bytes):
        super().__init__(conn, method, url, headers, body, True)
        self.stream_id = stream_id

    @property
    def closed(self) -> bool:
        return self.conn.transport is None or self.stream_id not in self.conn.requests

    def respond(self, status: int, body: bytes = b"", content_type: bytes = b"application/json",
                extra_headers: bytes = b"") -> None:
        if self.state:
            return
        self.state = 2
        headers = [(b":status", b"%d" % status)]
        if body or status not in (204, 304):
            headers += [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if extra_headers:
            headers += _header_lines(extra_headers)
        self.conn.send_headers(self.stream_id, headers, end=not body, flush=not body)
        if body:
            self.conn.send_data(self.stream_id, body, end=True)  # one write for the headers and the body
        self.conn.finished(self)

    def start_stream(self, status: int, content_type: bytes, first_chunk: bytes = b"") -> None:
        if self.state:
            return
        self.state = 1
        self.conn.send_headers(self.stream_id, [(b":status", b"%d" % status), (b"content-type", content_type)],
                               end=False, flush=not first_chunk)
        if first_chunk:
            self.conn.send_data(self.stream_id, first_chunk, end=False)

    def write_chunk(self, data: bytes) -> None:
        if self.state == 1 and data:
            self.conn.send_data(self.stream_id, data, end=False)

    def end_stream(self, last_chunk: bytes = b"") -> None:
        if self.state != 1:
            return
        self.state = 2
        self.conn.send_data(self.stream_id, last_chunk, end=True)
        self.conn.finished(self)

    def reset(self) -> None:
        """Abort this stream alone (RST_STREAM INTERNAL_ERROR)."""
        self.state = 2
        self.conn.reset_stream(self.stream_id)
        self.conn.finished(self)


class _Incoming:
    """A stream whose request is still arriving."""

    __slots__ = ("method", "url", "headers", "body", "size", "too_big")

    def __init__(self, method: bytes, url: bytes, headers: Dict[bytes, bytes]):
        self.method, self.url, self.headers = method, url, headers
        self.body: List[bytes] = []
        self.size = 0
        self.too_big = False


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection, taken over from http.Connection after the preface was seen."""

    def __init__(self, server, transport, sock, max_concurrent_streams: int = MAX_STREAMS):
        self.server = server
        self.transport = transport
        self.sock = sock
        self.h2 = _ServerState(config=_CONFIG)
        self.incoming: Dict[int, _Incoming] = {}
        self.requests: Dict[int, StreamRequest] = {}  # dispatched, not yet fully answered
        self._outbox: Dict[int, list] = {}  # stream -> [bytearray, end]: data waiting for window
        self._corked = False
        self._max_streams = max_concurrent_streams

    def start(self, data: bytes) -> None:
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 2 ** 16,
        })
        self.h2.initiate_connection()
        self.data_received(data)

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.transport is not None:
            self.server.connections -= 1
        self.transport = None
        self.requests.clear()
        self.incoming.clear()
        self._outbox.clear()

    def data_received(self, data: bytes) -> None:
        self._corked = True
        try:
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:  # h2 has queued its GOAWAY
                self.server.bad_requests += 1
                self._close()
                return
            for event in events:
                kind = type(event)
                if kind is h2.events.RequestReceived:
                    self._headers(event)
                elif kind is h2.events.DataReceived:
                    self._data(event)
                elif kind is h2.events.StreamEnded:
                    self._ended(event.stream_id)
                elif kind is h2.events.StreamReset:
                    self._forget(event.stream_id)
                elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
                    self._pump_all()
                elif kind is h2.events.ConnectionTerminated:  # the client's GOAWAY: nothing more can be sent
                    self._close()
                    return
        finally:
            self._corked = False
            self.flush()

    def last_data_at(self) -> float:
        return kernel_arrival(self.sock)

    # -- requests ------------------------------------------------------------

    def _headers(self, event) -> None:
        if len(self.incoming) + len(self.requests) >= self._max_streams:
            self.server.h2_refused_streams += 1
            try:  # over the advertised limit (a client may send before our SETTINGS reached it)
                self.h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            return
        headers: Dict[bytes, bytes] = {}
        method = path = b""
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    headers.setdefault(b"host", value)
            else:
                headers[name] = value
        self.incoming[event.stream_id] = _Incoming(method, path, headers)

    def _data(self, event) -> None:
        incoming = self.incoming.get(event.stream_id)
        try:  # hand the window back at once: bodies are buffered whole (up to MAX_BODY)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        if incoming is None:
            return
        incoming.size += len(event.data)
        if incoming.size > MAX_BODY:
            incoming.too_big = True
            incoming.body = []
        elif not incoming.too_big:
            incoming.body.append(event.data)

    def _ended(self, stream_id: int) -> None:
        incoming = self.incoming.pop(stream_id, None)
        if incoming is None:
            return
        body = incoming.body[0] if len(incoming.body) == 1 else b"".join(incoming.body)
        req = StreamRequest(self, stream_id, incoming.method, incoming.url, incoming.headers, body)
        if incoming.too_big:
            req.body = b""
            req.path = TOO_BIG_PATH
        self.requests[stream_id] = req
        serve(self.server.handler, req)

    def _forget(self, stream_id: int) -> None:
        """The client reset the stream: nothing more is sent on it."""
        self.incoming.pop(stream_id, None)
        self._outbox.pop(stream_id, None)
        req = self.requests.pop(stream_id, None)
        if req is not None:
            req.state = 2

    def finished(self, req: StreamRequest) -> None:
        if self.requests.get(req.stream_id) is req and req.stream_id not in self._outbox:
            del self.requests[req.stream_id]

    # -- writing -------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: list, end: bool, flush: bool = True) -> None:
        if self.transport is None:
            return
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        if flush:
            self.flush()

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        if self.transport is None:
            return
        box = self._outbox.get(stream_id)
        if box is None:
            try:
                if len(data) <= min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size):
                    self.h2.send_data(stream_id, data, end_stream=end)
                    self.flush()
                    return
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return
            box = self._outbox[stream_id] = [bytearray(), False]
        box[0] += data
        box[1] = box[1] or end
        self._pump(stream_id)
        self.flush()

    def _pump(self, stream_id: int) -> None:
        """Send what the stream's and the connection's windows allow of its waiting data."""
        box = self._outbox.get(stream_id)
        if box is None:
            return
        buf, end = box
        try:
            while buf:
                size = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size, len(buf))
                if size <= 0:
                    return
                chunk = bytes(buf[:size])
                del buf[:size]
                self.h2.send_data(stream_id, chunk, end_stream=end and not buf)
            if end:
                del self._outbox[stream_id]
                req = self.requests.get(stream_id)
                if req is not None and req.state == 2:
                    del self.requests[stream_id]
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._forget(stream_id)

    def _pump_all(self) -> None:
        for stream_id in list(self._outbox):
            self._pump(stream_id)

    def reset_stream(self, stream_id: int) -> None:
        self._outbox.pop(stream_id, None)
        if self.transport is None:
            return
        try:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.flush()

    def flush(self) -> None:
        if self._corked or self.transport is None:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def _close(self) -> None:
        """Send what h2 has queued (a GOAWAY), then close."""
        if self.transport is None:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)
        self.transport.close()
