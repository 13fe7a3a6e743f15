"""One request as the faces see it, whatever protocol carried it.

A face reads `method`, `path`, `query`, `headers` (lower-case names, bytes)
and `body`, and answers exactly once: `respond(...)`, or a streamed answer
(`start_stream`, `write_chunk`..., `end_stream`), or `reset()`. How that looks
on the wire is the protocol's: http.Http1Request writes HTTP/1.1 bytes,
http2.StreamRequest frames on an HTTP/2 stream.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Callable, Dict, Optional

from loadgen.net import tcp_info

MAX_BODY = 4 * 1024 * 1024
TOO_BIG_PATH = b"/_emulator/too-big"  # where a request whose body is over MAX_BODY is sent instead


def kernel_arrival(sock) -> float:
    """When the kernel took in the connection's latest data segment (epoch seconds); now where there is no TCP_INFO."""
    now = time.time()
    age_ms = tcp_info.read_u32(sock, tcp_info.LAST_DATA_RECV_MS)
    return now if age_ms is None else now - age_ms / 1000.0


class Request:
    """One parsed request and the means to answer it (exactly once)."""

    __slots__ = ("conn", "method", "path", "query", "headers", "body", "keep_alive", "state")

    # state: 0 = not answered, 1 = streaming, 2 = answered
    def __init__(self, conn, method: bytes, url: bytes, headers: Dict[bytes, bytes], body: bytes, keep_alive: bool):
        self.conn = conn
        self.method = method
        path, _, query = url.partition(b"?")
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.state = 0

    @property
    def closed(self) -> bool:
        return self.conn.transport is None

    @property
    def scheme(self) -> str:
        """"https" when the emulator serves TLS, else "http": for the URLs a face hands out."""
        return self.conn.server.scheme

    def respond(self, status: int, body: bytes = b"", content_type: bytes = b"application/json",
                extra_headers: bytes = b"") -> None:
        """The whole answer. `extra_headers` are header lines, each ending in CRLF."""
        raise NotImplementedError

    def start_stream(self, status: int, content_type: bytes, first_chunk: bytes = b"") -> None:
        """Start a streamed answer; `first_chunk` rides along with the headers."""
        raise NotImplementedError

    def write_chunk(self, data: bytes) -> None:
        raise NotImplementedError

    def end_stream(self, last_chunk: bytes = b"") -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Break this request off as a failing network would (the protocol says how)."""
        raise NotImplementedError

    def header(self, name: bytes) -> Optional[bytes]:
        return self.headers.get(name)

    def received_at(self) -> float:
        """When the kernel took in this request's last bytes (epoch seconds), however late the loop read them.

        Why: the emulator's service time is the reference a client's measurement
        is judged against (bench/measurement_error.py), so it must not include
        the emulator's own queueing. TCP_INFO's tcpi_last_data_recv gives the
        age of the connection's latest segment to a jiffy (1-4 ms); for a
        request dispatched from data_received (all but pipelined ones) that
        segment is this request's. Falls back to now where there is no TCP_INFO."""
        return self.conn.last_data_at()


Handler = Callable[[Request], None]


def serve(handler: Handler, req: Request) -> None:
    """Run the handler on one request; a handler that raises still gets its request answered (500)."""
    try:
        handler(req)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        if req.state == 0:
            req.respond(500, b'{"code":500,"message":"emulator internal error"}')
        elif req.state == 1:
            req.end_stream()
