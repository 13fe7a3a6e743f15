"""Wiring: one core, its faces, the ground-truth endpoints, one HTTP server.

`Emulator` runs on whatever event loop calls `start()`; `serve()` is the
blocking entry point of `loadgen emulate` (uvloop, signal handling, the URL
line on stdout). With `tls` (a tls.ServerTLS), every listener serves TLS: the
HTTP port (HTTP/2 or HTTP/1.1 by ALPN) and modal's gRPC port alike.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

from loadgen.emulator import control
from loadgen.emulator.core import Core
from loadgen.emulator.faces import load_face
from loadgen.emulator.http import HttpServer
from loadgen.emulator.http2 import max_streams
from loadgen.emulator.overload import OverloadMonitor
from loadgen.emulator.request import Request
from loadgen.emulator.tls import ServerTLS

HOST = "127.0.0.1"  # the default; `loadgen emulate --host ADDR` serves other machines too
BACKLOG = 65535  # the kernel caps it at net.core.somaxconn


class Emulator:
    def __init__(self, settings: Dict[str, Any], faces: Sequence[str] = ("e2b",), host: str = HOST,
                 tls: Optional[ServerTLS] = None):
        self.settings = settings
        self.host = host
        self.face_names = tuple(faces)
        self.core: Optional[Core] = None
        self.faces: list = []
        self.tls = tls
        self.http = HttpServer(self.handle, ssl=tls.context if tls is not None else None)
        self.http.h2_max_streams = max_streams(settings)
        self.port = 0
        self.started_monotonic = time.monotonic()
        self.overload = OverloadMonitor()

    @property
    def url(self) -> str:
        return f"{self.http.scheme}://{self.host}:{self.port}"

    async def start(self, port: int = 0, backlog: int = BACKLOG) -> str:
        loop = asyncio.get_running_loop()
        self.core = Core(self.settings, loop.call_later, loop.time)
        self.faces = [self._face(load_face(name)) for name in self.face_names]
        self.port = await self.http.start(self.host, port, backlog)
        self.overload.listeners = [self.http.sock]
        self.overload.start()
        return self.url

    def _face(self, face_class):
        # a face with a listener of its own (modal's gRPC port) listens on the same address, TLS alike
        if getattr(face_class, "listens", False):
            return face_class(self.core, host=self.host, ssl=self.http.ssl)
        return face_class(self.core)

    async def stop(self) -> None:
        self.overload.stop()
        await self.http.stop()
        for face in self.faces:  # faces with listeners of their own (modal's gRPC port)
            stop = getattr(face, "stop", None)
            if stop is not None:
                await stop()

    def handle(self, req: Request) -> None:
        if req.path.startswith(control.PREFIX):
            control.handle(self, req)
            return
        for face in self.faces:
            if face.handle(req):
                return
        self.core.note_error("not_found")
        req.respond(404, b'{"code":404,"message":"not found"}')


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


def serve(settings: Dict[str, Any], port: int = 0, faces: Sequence[str] = ("e2b",),
          on_ready: Optional[Callable[[str], None]] = None, host: str = HOST, tls: bool = False,
          ca_file: Optional[str] = None) -> int:
    """Serve until SIGINT or SIGTERM; print the URL line once listening.

    With `tls`, a CA and a server certificate (naming `host` too) are made
    first; the CA goes to `ca_file`, or else to a temporary directory removed
    at exit, and then stderr says where, and how to point the SDKs at it."""
    from loadgen.host import raise_descriptor_limit

    raise_descriptor_limit()  # a connection per client's sandbox in flight: never the emulator's limit first
    server_tls = ServerTLS([host], ca_file) if tls else None
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    emulator = Emulator(settings, faces, host, tls=server_tls)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        url = await emulator.start(port)
        if server_tls is not None and ca_file is None:  # a CA file the caller named needs no telling where
            ca = server_tls.ca_file
            sys.stderr.write(f"loadgen emulate: TLS; CA certificate {ca}\n  trust it with SSL_CERT_FILE={ca} "
                             f"(Python: ssl, httpx, urllib3, grpclib under loadgen's adapters), "
                             f"REQUESTS_CA_BUNDLE={ca}, NODE_EXTRA_CA_CERTS={ca}\n")
            sys.stderr.flush()
        if on_ready is not None:
            on_ready(url)
        else:
            sys.stdout.write(url + "\n")
            sys.stdout.flush()
        await stop.wait()
        await emulator.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        if server_tls is not None:
            server_tls.cleanup()
    return 0
