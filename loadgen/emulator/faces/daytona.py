"""The daytona face: Daytona's REST API and the toolbox (daemon) process API.

The layout follows Daytona Cloud, where the API lives at
`https://app.daytona.io/api` and the toolbox proxy at
`https://proxy.app.daytona.io/toolbox`: one emulator serves both under two
path prefixes, so the SDK is pointed at `{emulator}/api` and learns the
toolbox address from each sandbox's `toolboxProxyUrl` (`{emulator}/toolbox`).
No other face uses these prefixes.

API (header `Authorization: Bearer <key>`):
- `POST /api/sandbox` creates; the reply is a Sandbox record in state
  `started` (the core's create latency is the time to `started`, so the SDK
  never has to poll). `snapshot`, `labels` (the core's metadata),
  `autoStopInterval` and `ttlMinutes` are read: the lifetime is `ttlMinutes`,
  else `autoStopInterval` (minutes; Daytona's default 15), else unlimited
  (`max_lifetime_s`).
- `GET /api/sandbox/{id}` describes (what the SDK polls while it waits for a
  state); `GET /api/sandbox/{id}/toolbox-proxy-url` gives the toolbox URL.
- `DELETE /api/sandbox/{id}` deletes: 200 and the record in state `destroying`.

Toolbox (same header): `POST /toolbox/{id}/process/execute`
`{"command","timeout"?,"cwd"?,"envs"?}` answers `{"exitCode","result"}`
once the command ends (stdout and stderr together, as the daemon does).

Errors are shaped as Daytona's NestJS API answers them,
`{"statusCode","message","error"}`, because the SDK maps the status to its
exception classes: 401 without a bearer token, 400 for a bad body, 404 for a
sandbox that does not exist (or, on the toolbox, one that is no longer
running), 429 with `Retry-After` over a limit, 500 for an injected fault, 502
when a sandbox ends under a running command. A sandbox that is gone
(deleted, died, expired) describes itself as `destroyed`, `error` or
`stopped`; deleting it again is a 404.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import orjson

from loadgen.emulator.faces import json_object, refusal
from loadgen.emulator import core as C
from loadgen.emulator.request import Request

API = b"/api/sandbox"
TOOLBOX = b"/toolbox/"
ORG_ID = "emulator-org"
TARGET = "us"
DEFAULT_AUTO_STOP_MIN = 15
_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}


def _err(status: int, message: str) -> bytes:
    return orjson.dumps({"statusCode": status, "message": message, "error": _REASONS.get(status, "Error")})


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class DaytonaFace:
    name = "daytona"

    # What a create answers. Tests may set "starting" (on an EmulatorThread's
    # face) to make the SDK poll GET until the sandbox reports `started`.
    create_state = "started"

    def __init__(self, core: C.Core):
        self.core = core

    # -- routing -------------------------------------------------------------

    def handle(self, req: Request) -> bool:
        path = req.path
        if path == API or path.startswith(API + b"/"):
            if self._authorized(req):
                self._api(req, path[len(API):])
            return True
        if path.startswith(TOOLBOX):
            if self._authorized(req):
                self._toolbox(req, path[len(TOOLBOX):])
            return True
        return False

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get(b"authorization", b"")
        if self.core.settings["require_api_key"] and not (auth.startswith(b"Bearer ") and len(auth) > 7):
            self.core.note_error("unauthorized")
            req.respond(401, _err(401, "Unauthorized"))
            return False
        return True

    def _no_route(self, req: Request) -> None:
        self.core.note_error("not_found")
        req.respond(404, _err(404, f"Cannot {req.method.decode()} {req.path.decode('utf-8', 'replace')}"))

    def _api(self, req: Request, rest: bytes) -> None:
        method = req.method
        if rest == b"":
            if method == b"POST":
                self._create(req)
            elif method == b"GET":  # list: not emulated beyond an empty page
                req.respond(200, b'{"items":[],"nextCursor":null}')
            else:
                req.respond(405, _err(405, "method not allowed"))
            return
        parts = rest[1:].decode("utf-8", "replace").split("/")
        sandbox_id = parts[0]
        if len(parts) == 1 and method == b"GET":
            self._info(req, sandbox_id)
        elif len(parts) == 1 and method == b"DELETE":
            self._delete(req, sandbox_id)
        elif len(parts) == 2 and parts[1] == "toolbox-proxy-url" and method == b"GET":
            if sandbox_id not in self.core.by_id:
                return self._not_found(req, sandbox_id)
            req.respond(200, orjson.dumps({"url": self._toolbox_url(req)}))
        else:
            self._no_route(req)

    def _not_found(self, req: Request, sandbox_id: str) -> None:
        req.respond(404, _err(404, f"Sandbox with ID or name {sandbox_id} not found"))

    # -- API -----------------------------------------------------------------

    def _bad(self, req: Request, message: str) -> None:
        self.core.note_error("bad_request")
        req.respond(400, _err(400, message))

    def _create(self, req: Request) -> None:
        body, problem = json_object(req.body)
        if problem:
            return self._bad(req, problem)
        snapshot = body.get("snapshot")
        if snapshot is not None and (not isinstance(snapshot, str) or not snapshot):
            return self._bad(req, "snapshot must be a non-empty string")
        labels = body.get("labels")
        if labels is not None and (not isinstance(labels, dict)
                                   or not all(isinstance(v, str) for v in labels.values())):
            return self._bad(req, "labels must be an object of string values")
        env = body.get("env")
        if env is not None and not isinstance(env, dict):
            return self._bad(req, "env must be an object")
        for key in ("autoStopInterval", "autoArchiveInterval", "ttlMinutes"):
            value = body.get(key)
            if value is not None and not _nonneg_int(value):
                return self._bad(req, f"{key} must be a non-negative integer (minutes)")
        ttl = body.get("ttlMinutes")
        auto_stop = body.get("autoStopInterval")
        if auto_stop is None:
            auto_stop = DEFAULT_AUTO_STOP_MIN
        if ttl:
            lifetime = ttl * 60.0
        elif auto_stop:
            lifetime = auto_stop * 60.0  # no activity is tracked: auto-stop counts from the create
        else:
            lifetime = self.core.max_lifetime_s
        toolbox_url = self._toolbox_url(req)
        self.core.create(self.name, labels, snapshot, lifetime,
                         lambda out: self._created(req, out, body, toolbox_url), received_at=req.received_at())

    def _toolbox_url(self, req: Request) -> str:
        host = req.headers.get(b"host", b"127.0.0.1").decode("ascii", "replace")
        return f"{req.scheme}://{host}/toolbox"

    def _record(self, sb: C.Sandbox, state: str, body: Optional[dict] = None, toolbox_url: str = "") -> dict:
        body = body or {}
        created = sb.t_answered or sb.t_received
        record = {
            "id": sb.sandbox_id, "organizationId": ORG_ID, "name": body.get("name") or sb.sandbox_id,
            "snapshot": sb.template, "user": body.get("user") or "daytona", "env": body.get("env") or {},
            "labels": sb.metadata or {}, "public": bool(body.get("public", False)),
            "networkBlockAll": bool(body.get("networkBlockAll", False)), "kvm": False,
            "target": body.get("target") or TARGET, "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
            "state": state, "desiredState": "destroyed" if state in ("destroying", "destroyed") else "started",
            "autoStopInterval": body.get("autoStopInterval", DEFAULT_AUTO_STOP_MIN),
            "autoArchiveInterval": body.get("autoArchiveInterval", 10080),
            "autoDeleteInterval": body.get("autoDeleteInterval", -1),
            "createdAt": _iso(created), "updatedAt": _iso(sb.t_ended or created),
            "toolboxProxyUrl": toolbox_url, "daemonVersion": "emulator", "runnerId": "emulator-runner",
        }
        if body.get("ttlMinutes"):
            record["autoDestroyAt"] = _iso(created + body["ttlMinutes"] * 60)
        if state == "error":
            record["errorReason"] = "sandbox died (emulated fault)"
        return record

    def _created(self, req: Request, out: C.CreateOutcome, body: dict, toolbox_url: str) -> None:
        sb = out.sandbox
        kind = out.kind
        if kind == C.OK:
            sb.status = 200
            sb.token = toolbox_url  # where its toolbox lives, for later descriptions
            req.respond(200, orjson.dumps(self._record(sb, self.create_state, body, toolbox_url)))
        elif kind == C.REJECTED:
            sb.status = 429
            what, header = refusal(out)
            req.respond(429, _err(429, f"ThrottlerException: Too Many Requests ({what} reached)"),
                        extra_headers=header)
        elif kind == C.ERROR:
            sb.status = 500
            req.respond(500, _err(500, "Failed to create sandbox: internal error (emulated fault)"))
        elif kind == C.RESET:
            req.reset()

    def _state_of(self, sb: C.Sandbox) -> str:
        if sb.state == C.RUNNING:
            return "started"
        return {C.KILLED: "destroyed", C.DIED: "error", C.EXPIRED: "stopped"}.get(sb.state, "error")

    def _info(self, req: Request, sandbox_id: str) -> None:
        kind, sb = self.core.get(sandbox_id)
        if kind == C.NOT_FOUND:
            return self._not_found(req, sandbox_id)
        req.respond(200, orjson.dumps(self._record(sb, self._state_of(sb), None, sb.token or self._toolbox_url(req))))

    def _delete(self, req: Request, sandbox_id: str) -> None:
        def done(out: C.KillOutcome) -> None:
            if out.kind == C.OK:
                sb = out.sandbox
                req.respond(200, orjson.dumps(self._record(sb, "destroying", None, sb.token or "")))
            elif out.kind == C.ERROR:
                req.respond(500, _err(500, "Failed to delete sandbox: internal error (emulated fault)"))
            else:
                self._not_found(req, sandbox_id)

        self.core.kill(sandbox_id, done, received_at=req.received_at())

    # -- toolbox ---------------------------------------------------------------

    def _toolbox(self, req: Request, rest: bytes) -> None:
        sandbox_id, _, op = rest.decode("utf-8", "replace").partition("/")
        if op != "process/execute" or req.method != b"POST":
            kind, _sb = self.core.get(sandbox_id)
            if kind != C.OK:
                return self._sandbox_unavailable(req, sandbox_id)
            return self._no_route(req)
        try:
            body = orjson.loads(req.body) if req.body else None
        except orjson.JSONDecodeError as e:
            return self._bad(req, f"invalid request body: {e}")
        if not isinstance(body, dict) or not isinstance(body.get("command"), str) or not body["command"]:
            return self._bad(req, "command is required")
        timeout = body.get("timeout")
        if timeout is not None and not _nonneg_int(timeout):
            return self._bad(req, "timeout must be a non-negative integer (seconds)")
        self.core.exec(sandbox_id, body["command"], lambda ev: self._exec_event(req, sandbox_id, ev),
                       received_at=req.received_at())

    def _sandbox_unavailable(self, req: Request, sandbox_id: str) -> None:
        req.respond(404, _err(404, f"sandbox {sandbox_id} not found or not running"))

    def _exec_event(self, req: Request, sandbox_id: str, ev: C.ExecEvent) -> None:
        kind = ev.kind
        if kind == C.STARTED:
            return
        if kind == C.ENDED:
            r = ev.result
            output = (r.stdout + r.stderr).decode("utf-8", "replace")
            req.respond(200, orjson.dumps({"exitCode": r.exit_code, "result": output}))
        elif kind == C.ERROR:
            status = 502 if ev.code == "unavailable" else 500
            req.respond(status, _err(status, ev.message))
        else:  # NOT_FOUND or GONE
            self._sandbox_unavailable(req, sandbox_id)
