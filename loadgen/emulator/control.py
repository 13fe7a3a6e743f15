"""Ground truth under /_emulator/: what the server saw, for tests and reports.

No SDK calls these paths. They let a test say, for every sandbox, "the
generator measured X; the server saw Y": every create request gets one record,
failed ones included, with server-side timestamps (epoch seconds, time.time()).
"""

from __future__ import annotations

import os
import time

import orjson

from loadgen.emulator.request import Request

PREFIX = b"/_emulator/"


def handle(emulator, req: Request) -> None:
    core = emulator.core
    path, method = req.path, req.method
    if path == b"/_emulator/stats" and method == b"GET":
        stats = core.stats()
        stats["server"] = {
            "pid": os.getpid(),
            "port": emulator.port,
            "faces": [f.name for f in emulator.faces],
            "connections": emulator.http.connections,
            "connections_total": emulator.http.connections_total,
            "connections_by_protocol": dict(emulator.http.connections_by_protocol),
            "h2_refused_streams": emulator.http.h2_refused_streams,
            "scheme": emulator.http.scheme,
            "ca_file": emulator.tls.ca_file if emulator.tls is not None else None,
            "bad_http": emulator.http.bad_requests,
            "cpu_s": time.process_time(),
            "uptime_s": time.monotonic() - emulator.started_monotonic,
            "overload": emulator.overload.snapshot(),
        }
        req.respond(200, orjson.dumps(stats))
    elif path == b"/_emulator/sandboxes" and method == b"GET":
        lines = [orjson.dumps(sb.to_dict()) for sb in core.records]
        body = b"\n".join(lines) + (b"\n" if lines else b"")
        req.respond(200, body, b"application/x-ndjson")
    elif path == b"/_emulator/reset" and method == b"POST":
        core.reset()
        emulator.overload.reset()
        req.respond(200, b'{"ok":true}')
    elif path == b"/_emulator/health":
        req.respond(200, b'{"ok":true}')
    elif path == b"/_emulator/too-big":
        req.respond(413, b'{"code":413,"message":"request body too large"}')
    else:
        req.respond(404, b'{"code":404,"message":"unknown /_emulator/ endpoint; see stats, sandboxes, reset"}')
