"""The e2b face: e2b's REST control plane and envd's Connect process API.

Control plane (header `X-API-KEY`): `POST /sandboxes` and `POST /v2/sandboxes`
create, `DELETE /sandboxes/{id}` kills, `GET /sandboxes/{id}` describes.

Data plane (envd, routed by the `E2b-Sandbox-Id` header because one server
stands for both `E2B_API_URL` and `E2B_SANDBOX_URL`):
`POST /process.Process/Start` is a Connect server stream with the JSON codec:
frames of 1 flag byte, a 4-byte big-endian length and JSON; the reply is a
start event, data events, an end event, then an end-of-stream frame (flag 2)
holding `{}` or `{"error": ...}`. `GET /health` answers 204.

Errors are shaped like the real service's, because the point is that the SDK
raises what it raises in production:
- a sandbox that is gone (killed, expired, died, or never existed) is answered
  by e2b's edge proxy with 502 `{"sandboxId","message":"The sandbox was not
  found","code":502}`; the SDK turns that into `SandboxNotRunningException`.
- REST errors are `{"code": N, "message": "..."}`; 429 carries Retry-After.
"""

from __future__ import annotations

import base64
import datetime
import struct
from typing import Any, Optional

import orjson

from loadgen.emulator.faces import json_object, refusal
from loadgen.emulator import core as C
from loadgen.emulator.request import Request

ENVD_VERSION = "0.6.4"
CLIENT_ID = "emulator"
JSON = b"application/json"
CONNECT_JSON = b"application/connect+json"
_END_OK = b"\x02\x00\x00\x00\x02{}"
_HEADER = struct.Struct(">BI")


def _err(code: int, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message})


def _frame(obj: Any, flags: int = 0) -> bytes:
    data = orjson.dumps(obj)
    return _HEADER.pack(flags, len(data)) + data


def _end_error(code: str, message: str) -> bytes:
    return _frame({"error": {"code": code, "message": message}}, 2)


def _not_found_502(sandbox_id: str) -> bytes:
    return orjson.dumps({"sandboxId": sandbox_id, "message": "The sandbox was not found", "code": 502})


def command_text(process: dict) -> str:
    """The shell command an envd StartRequest runs (`bash -l -c CMD` -> CMD)."""
    cmd = process.get("cmd") or ""
    args = process.get("args") or []
    if not isinstance(args, list):
        raise ValueError("process.args must be a list")
    if cmd.endswith("sh") and "-c" in args:
        i = args.index("-c")
        if i + 1 < len(args):
            return str(args[i + 1])
    return " ".join([str(cmd)] + [str(a) for a in args])


class E2BFace:
    name = "e2b"

    def __init__(self, core: C.Core):
        self.core = core

    # -- routing -------------------------------------------------------------

    def handle(self, req: Request) -> bool:
        sandbox_id = req.headers.get(b"e2b-sandbox-id")
        path = req.path
        if sandbox_id is not None or path.startswith(b"/process.") or path.startswith(b"/filesystem."):
            self._envd(req, sandbox_id)
            return True
        method = req.method
        if path == b"/v2/sandboxes" or path == b"/sandboxes":
            if method == b"POST":
                if self._authorized(req):
                    self._create(req)
                return True
            if method == b"GET":  # list: not emulated beyond an empty answer
                if self._authorized(req):
                    req.respond(200, b"[]")
                return True
            req.respond(405, _err(405, "method not allowed"))
            return True
        if path.startswith(b"/sandboxes/"):
            if not self._authorized(req):
                return True
            rest = path[len(b"/sandboxes/"):].decode("utf-8", "replace")
            if "/" not in rest and method == b"DELETE":
                self._kill(req, rest)
            elif "/" not in rest and method == b"GET":
                self._info(req, rest)
            else:
                self.core.note_error("not_found")
                req.respond(404, _err(404, f"no route for {method.decode()} {path.decode('utf-8', 'replace')}"))
            return True
        return False

    def _authorized(self, req: Request) -> bool:
        if self.core.settings["require_api_key"] and not req.headers.get(b"x-api-key"):
            self.core.note_error("unauthorized")
            req.respond(401, _err(401, "Invalid API key, it must be sent in the X-API-KEY header"))
            return False
        return True

    # -- control plane -------------------------------------------------------

    def _bad(self, req: Request, message: str) -> None:
        self.core.note_error("bad_request")
        req.respond(400, _err(400, message))

    def _create(self, req: Request) -> None:
        body, problem = json_object(req.body)
        if problem:
            return self._bad(req, problem)
        template = body.get("templateID")
        if not isinstance(template, str) or not template:
            return self._bad(req, "templateID is required and must be a string")
        timeout = body.get("timeout")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
                return self._bad(req, "timeout must be a non-negative integer (seconds)")
            if timeout > self.core.max_lifetime_s:
                return self._bad(req, f"timeout cannot be greater than {int(self.core.max_lifetime_s // 3600)} hours")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict)
                                     or not all(isinstance(v, str) for v in metadata.values())):
            return self._bad(req, "metadata must be an object of string values")
        env_vars = body.get("envVars")
        if env_vars is not None and not isinstance(env_vars, dict):
            return self._bad(req, "envVars must be an object")
        self.core.create(self.name, metadata, template, timeout, lambda out: self._created(req, out),
                         received_at=req.received_at())

    def _created(self, req: Request, out: C.CreateOutcome) -> None:
        sb = out.sandbox
        kind = out.kind
        if kind == C.OK:
            if sb.token is None:
                sb.token = "ea" + sb.sandbox_id[1:]
            sb.status = 201
            req.respond(201, orjson.dumps({
                "sandboxID": sb.sandbox_id,
                "templateID": sb.template,
                "clientID": CLIENT_ID,
                "envdVersion": ENVD_VERSION,
                "envdAccessToken": sb.token,
                "alias": sb.template,
            }))
        elif kind == C.REJECTED:
            sb.status = 429
            what, header = refusal(out)
            req.respond(429, _err(429, f"Rate limit exceeded: {what} reached"), extra_headers=header)
        elif kind == C.ERROR:
            sb.status = 500
            req.respond(500, _err(500, "Failed to create sandbox: internal error (emulated fault)"))
        elif kind == C.RESET:
            req.reset()

    def _kill(self, req: Request, sandbox_id: str) -> None:
        def done(out: C.KillOutcome) -> None:
            if out.kind == C.OK:
                req.respond(204)
            elif out.kind == C.ERROR:
                req.respond(500, _err(500, "Failed to kill sandbox: internal error (emulated fault)"))
            else:
                req.respond(404, _err(404, f"sandbox \"{sandbox_id}\" not found"))

        self.core.kill(sandbox_id, done, received_at=req.received_at())

    def _info(self, req: Request, sandbox_id: str) -> None:
        kind, sb = self.core.get(sandbox_id)
        if kind != C.OK:
            req.respond(404, _err(404, f"sandbox \"{sandbox_id}\" not found"))
            return
        started = sb.t_answered or sb.t_received
        req.respond(200, orjson.dumps({
            "templateID": sb.template, "sandboxID": sb.sandbox_id, "clientID": CLIENT_ID,
            "startedAt": _iso(started), "endAt": _iso(started + sb.lifetime_s),
            "envdVersion": ENVD_VERSION, "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 1024,
            "state": "running", "metadata": sb.metadata or {}, "alias": sb.template,
        }))

    # -- data plane (envd) -----------------------------------------------------

    def _envd(self, req: Request, raw_id: Optional[bytes]) -> None:
        if raw_id is None:
            self._bad(req, "missing E2b-Sandbox-Id header: cannot route the request to a sandbox")
            return
        sandbox_id = raw_id.decode("utf-8", "replace")
        path = req.path
        if path == b"/process.Process/Start":
            self._start(req, sandbox_id)
        elif path == b"/health":
            kind, _ = self.core.get(sandbox_id)
            if kind == C.OK:
                req.respond(204)
            else:
                req.respond(502, _not_found_502(sandbox_id))
        else:
            kind, _ = self.core.get(sandbox_id)
            if kind != C.OK:
                req.respond(502, _not_found_502(sandbox_id))
            else:
                req.respond(404, orjson.dumps({"code": "unimplemented", "message": f"{path.decode()} is not emulated"}))

    def _start(self, req: Request, sandbox_id: str) -> None:
        ctype = req.headers.get(b"content-type", b"")
        if not ctype.startswith(CONNECT_JSON):
            req.respond(415, _err(415, "content-type must be application/connect+json"),
                        extra_headers=b"accept-post: application/connect+json\r\n")
            return
        sb = self.core.by_id.get(sandbox_id)
        if sb is not None and sb.state == C.RUNNING and sb.token is not None \
                and req.headers.get(b"x-access-token", b"").decode("utf-8", "replace") != sb.token:
            self.core.note_error("unauthorized")
            req.respond(401, orjson.dumps({"code": "unauthenticated", "message": "invalid access token"}))
            return
        body = req.body
        try:
            if len(body) < 5:
                raise ValueError("request is not a Connect envelope")
            flags, length = _HEADER.unpack_from(body)
            if flags & 1:
                raise ValueError("compressed requests are not supported")
            if len(body) != 5 + length:
                raise ValueError("envelope length does not match the body")
            msg = orjson.loads(body[5:])
            process = msg.get("process") if isinstance(msg, dict) else None
            if not isinstance(process, dict):
                raise ValueError("StartRequest.process is required")
            command = command_text(process)
        except (ValueError, struct.error) as e:  # orjson.JSONDecodeError is a ValueError
            self.core.note_error("bad_request")
            req.start_stream(200, CONNECT_JSON)
            req.end_stream(_end_error("invalid_argument", f"malformed StartRequest: {e}"))
            return
        self.core.exec(sandbox_id, command, lambda ev: self._exec_event(req, sandbox_id, ev),
                       received_at=req.received_at())

    def _exec_event(self, req: Request, sandbox_id: str, ev: C.ExecEvent) -> None:
        kind = ev.kind
        if kind == C.STARTED:
            req.start_stream(200, CONNECT_JSON, _frame({"event": {"start": {"pid": ev.pid}}}))
        elif kind == C.ENDED:
            r = ev.result
            out = []
            if r.stdout:
                out.append(_frame({"event": {"data": {"stdout": base64.b64encode(r.stdout).decode()}}}))
            if r.stderr:
                out.append(_frame({"event": {"data": {"stderr": base64.b64encode(r.stderr).decode()}}}))
            end = {"exitCode": r.exit_code, "exited": True, "status": f"exit status {r.exit_code}"}
            if r.exit_code != 0:
                end["error"] = f"exit status {r.exit_code}"
            out.append(_frame({"event": {"end": end}}))
            out.append(_END_OK)
            req.end_stream(b"".join(out))
        elif kind == C.ERROR:
            if req.state == 0:
                req.start_stream(200, CONNECT_JSON)
            req.end_stream(_end_error(ev.code, ev.message))
        else:  # NOT_FOUND or GONE: e2b's edge proxy answers for the missing sandbox
            req.respond(502, _not_found_502(sandbox_id))


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
