"""gRPC-Web on the emulator's HTTP listener: the modal face's RPCs over HTTP/1.1 (and HTTP/2, TLS).

Why: modal's SDK speaks gRPC, which needs HTTP/2, and the baseline client
loadgen's costs are measured against (Locust's FastHttpUser) speaks only
HTTP/1.1. gRPC-Web is gRPC's own mapping onto plain HTTP requests, so with
it FastHttpUser can make exactly the exchanges modal's adapter makes: the
same RPC paths, the same protobuf messages in the same length-prefixed
frames, one request and one answer per RPC (bench/_harness.py's
``BENCH_WIRE=modal``). The handlers are the modal face's own, so the
sandboxes, faults and records are those of its gRPC port.

The wire (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md):
``POST /<service>/<method>`` with ``content-type: application/grpc-web+proto``
(or ``application/grpc-web``), the request's metadata as headers and its
message as one frame (a zero flag byte, a 4-byte big-endian length, the
message). The answer is ``200`` with every reply message as such a frame,
then one trailer frame (flag ``0x80``) holding ``grpc-status``,
``grpc-message`` and, for statuses with details, ``grpc-status-details-bin``,
as HTTP/1.1 header lines. A request whose framing is wrong is answered
``grpc-status: 13`` (INTERNAL), as a gRPC server answers a malformed message.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from typing import Optional

import grpclib.const
from grpclib import GRPCError, Status

CONTENT_TYPES = (b"application/grpc-web+proto", b"application/grpc-web")
TRAILER_FLAG = 0x80


def is_grpc_web(req) -> bool:
    content_type = (req.header(b"content-type") or b"").split(b";", 1)[0].strip()
    return req.method == b"POST" and content_type in CONTENT_TYPES


def frame(payload: bytes, flag: int = 0) -> bytes:
    """One gRPC length-prefixed frame."""
    return bytes((flag,)) + len(payload).to_bytes(4, "big") + payload


def trailers(status: Status, message: str = "", details: Optional[bytes] = None) -> bytes:
    """The trailer frame that ends every gRPC-Web answer."""
    lines = b"grpc-status: %d\r\n" % status.value
    if message:
        lines += b"grpc-message: " + urllib.parse.quote(message, safe=" ").encode() + b"\r\n"
    if details:
        lines += b"grpc-status-details-bin: " + base64.b64encode(details).rstrip(b"=") + b"\r\n"
    return frame(lines, TRAILER_FLAG)


class WebStream:
    """What the modal face's handlers use of a grpclib server stream, for one gRPC-Web request."""

    def __init__(self, req, request_type):
        self._req = req
        self._request_type = request_type
        self.metadata = {name.decode("latin-1"): value.decode("latin-1") for name, value in req.headers.items()}
        self.replies: list = []
        self._loadgen_arrival = req.received_at()  # the face's _arrival() reads it
        self.cancelled = False

    async def recv_message(self):
        body = self._req.body
        if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            raise GRPCError(Status.INTERNAL, "malformed gRPC-Web request frame")
        return self._request_type.FromString(body[5:])

    async def send_message(self, message) -> None:
        self.replies.append(frame(message.SerializeToString()))

    async def cancel(self) -> None:
        self.cancelled = True


async def serve(req, handler: grpclib.const.Handler, details_codec) -> None:
    """Run one gRPC handler on a gRPC-Web request and answer it exactly once."""
    stream = WebStream(req, handler.request_type)
    status, message, details = Status.OK, "", None
    try:
        await handler.func(stream)
    except GRPCError as exc:
        status, message = exc.status, exc.message or ""
        if exc.details:
            details = details_codec.encode(exc.status, exc.message, exc.details)
    except asyncio.CancelledError:
        req.reset()
        raise
    except Exception as exc:  # a bug in a handler: still one answer, as grpclib's server would give
        status, message = Status.UNKNOWN, f"emulator internal error: {type(exc).__name__}"
    if stream.cancelled:  # the face's "reset" fault: the request is broken off
        req.reset()
        return
    req.respond(200, b"".join(stream.replies) + trailers(status, message, details),
                content_type=b"application/grpc-web+proto")
