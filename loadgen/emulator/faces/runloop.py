"""The runloop face: Runloop's devbox REST API (`/v1/devboxes...`).

Header `Authorization: Bearer <key>`. Every path starts with `/v1/devboxes`,
which no other face uses.

- `POST /v1/devboxes/create_and_await_running` (and `POST /v1/devboxes`)
  creates; the reply is a DevboxView in status `running` once the core's
  create latency has passed, so the SDK never needs its long polls.
  `metadata` is the core's metadata, `launch_parameters.keep_alive_time_seconds`
  the lifetime (Runloop's default 1 h, at most 48 h), `blueprint_name` /
  `blueprint_id` / `snapshot_id` the template.
- `GET /v1/devboxes/{id}` and `POST /v1/devboxes/{id}/wait_for_status`
  `{"statuses","timeout_seconds"}` describe the devbox (the second answers at
  once: the status never changes except by ending).
- `POST /v1/devboxes/{id}/execute` `{"command","command_id","optimistic_timeout"}`
  answers a DevboxAsyncExecutionDetailView: `status` `completed` with
  `exit_status`, `stdout`, `stderr` when the command ends within
  `optimistic_timeout` (default 25 s), else `running`, and then
  `POST /v1/devboxes/{id}/executions/{execution_id}/wait_for_status`
  long-polls it (408 when its `timeout_seconds` pass first, as Runloop does).
- `POST /v1/devboxes/{id}/shutdown` ends the devbox: 200 and the DevboxView in
  status `shutdown`.

Errors are `{"error_code"?,"message"}` with the status the SDK maps to its
exception classes: 401 without a bearer token, 400 for a bad body, 404 for a
devbox that does not exist or is no longer running (shut down, failed,
expired: what execute and shutdown meet), 429 with `Retry-After` over a
limit, 500 for an injected fault (create, command stream error, shutdown),
502 when a devbox ends under a running command.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Optional

import orjson

from loadgen.emulator.faces import json_object, refusal
from loadgen.emulator import core as C
from loadgen.emulator.request import Request

PREFIX = b"/v1/devboxes"
DEFAULT_KEEP_ALIVE_S = 3600
MAX_KEEP_ALIVE_S = 172800
DEFAULT_OPTIMISTIC_S = 25
MAX_LONG_POLL_S = 25


def _err(message: str, code: Optional[str] = None) -> bytes:
    body: Dict[str, Any] = {"message": message}
    if code:
        body["error_code"] = code
    return orjson.dumps(body)


def _nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _nonneg_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


class _Execution:
    """A command answered `running`: kept until its result is fetched."""

    __slots__ = ("devbox_id", "view", "waiters")

    def __init__(self, devbox_id: str, view: dict):
        self.devbox_id = devbox_id
        self.view = view
        self.waiters: list = []


class RunloopFace:
    name = "runloop"

    def __init__(self, core: C.Core):
        self.core = core
        self.executions: Dict[str, _Execution] = {}
        self._exec_seq = 0

    # -- routing -------------------------------------------------------------

    def handle(self, req: Request) -> bool:
        path = req.path
        if path != PREFIX and not path.startswith(PREFIX + b"/"):
            return False
        if not self._authorized(req):
            return True
        method = req.method
        rest = path[len(PREFIX):].decode("utf-8", "replace").strip("/")
        parts = rest.split("/") if rest else []
        if not parts:
            if method == b"POST":
                self._create(req)
            elif method == b"GET":  # list: not emulated beyond an empty page
                req.respond(200, b'{"devboxes":[],"has_more":false,"total_count":0}')
            else:
                req.respond(405, _err("method not allowed"))
        elif parts == ["create_and_await_running"] and method == b"POST":
            self._create(req)
        elif len(parts) == 1 and method == b"GET":
            self._retrieve(req, parts[0])
        elif len(parts) == 2 and method == b"POST" and parts[1] == "wait_for_status":
            self._retrieve(req, parts[0], check_body=True)
        elif len(parts) == 2 and method == b"POST" and parts[1] == "execute":
            self._execute(req, parts[0])
        elif len(parts) == 2 and method == b"POST" and parts[1] == "shutdown":
            self._shutdown(req, parts[0])
        elif len(parts) == 4 and method == b"POST" and parts[1] == "executions" and parts[3] == "wait_for_status":
            self._wait_for_command(req, parts[0], parts[2])
        else:
            self.core.note_error("not_found")
            req.respond(404, _err(f"no route for {method.decode()} {path.decode('utf-8', 'replace')}", "not_found"))
        return True

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get(b"authorization", b"")
        if self.core.settings["require_api_key"] and not (auth.startswith(b"Bearer ") and len(auth) > 7):
            self.core.note_error("unauthorized")
            req.respond(401, _err("Missing or invalid bearer token", "unauthenticated"))
            return False
        return True

    def _bad(self, req: Request, message: str) -> None:
        self.core.note_error("bad_request")
        req.respond(400, _err(message, "bad_request"))

    # -- devboxes --------------------------------------------------------------

    def _create(self, req: Request) -> None:
        body, problem = json_object(req.body, empty={})
        if problem:
            return self._bad(req, problem)
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict)
                                     or not all(isinstance(v, str) for v in metadata.values())):
            return self._bad(req, "metadata must be an object of string values")
        launch = body.get("launch_parameters")
        if launch is not None and not isinstance(launch, dict):
            return self._bad(req, "launch_parameters must be an object")
        keep_alive = (launch or {}).get("keep_alive_time_seconds")
        if keep_alive is not None:
            if not _nonneg_int(keep_alive) or keep_alive == 0:
                return self._bad(req, "launch_parameters.keep_alive_time_seconds must be a positive integer")
            if keep_alive > MAX_KEEP_ALIVE_S:
                return self._bad(req, f"launch_parameters.keep_alive_time_seconds must be at most {MAX_KEEP_ALIVE_S}")
        template = None
        for key in ("blueprint_id", "blueprint_name", "snapshot_id"):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, str) or not value:
                    return self._bad(req, f"{key} must be a non-empty string")
                if template is not None:
                    return self._bad(req, "only one of snapshot_id, blueprint_id, blueprint_name may be given")
                template = value
        lifetime = float(keep_alive if keep_alive is not None else DEFAULT_KEEP_ALIVE_S)
        self.core.create(self.name, metadata, template, lifetime,
                         lambda out: self._created(req, out, body), received_at=req.received_at())

    def _view(self, sb: C.Sandbox, status: Optional[str] = None, body: Optional[dict] = None) -> dict:
        created = sb.t_answered or sb.t_received
        if status is None:
            status = self._status_of(sb)
        launch = {"keep_alive_time_seconds": int(sb.lifetime_s)}
        view = {
            "id": sb.sandbox_id, "status": status, "capabilities": [],
            "create_time_ms": int(created * 1000), "launch_parameters": launch,
            "metadata": sb.metadata or {}, "state_transitions": [
                {"status": "provisioning", "transition_time_ms": int(sb.t_received * 1000)},
                {"status": "running", "transition_time_ms": int(created * 1000)},
            ],
            "name": (body or {}).get("name"),
            "initiator_type": "api",
        }
        if sb.template is not None:
            view["blueprint_id"] = sb.template
        if status in ("shutdown", "failure"):
            view["end_time_ms"] = int((sb.t_ended or time.time()) * 1000)
            view["state_transitions"].append({"status": status, "transition_time_ms": view["end_time_ms"]})
            if status == "failure":
                view["failure_reason"] = "execution_failed"
            elif sb.state == C.EXPIRED:
                view["shutdown_reason"] = "keep_alive_timeout"
            else:
                view["shutdown_reason"] = "api_shutdown"
        return view

    def _status_of(self, sb: C.Sandbox) -> str:
        if sb.state == C.RUNNING:
            return "running"
        return "failure" if sb.state == C.DIED else "shutdown"

    def _created(self, req: Request, out: C.CreateOutcome, body: dict) -> None:
        sb = out.sandbox
        kind = out.kind
        if kind == C.OK:
            sb.status = 200
            req.respond(200, orjson.dumps(self._view(sb, "running", body)))
        elif kind == C.REJECTED:
            sb.status = 429
            what, header = refusal(out, noun="devbox")
            req.respond(429, _err(f"Too many requests: {what} reached", "rate_limited"), extra_headers=header)
        elif kind == C.ERROR:
            sb.status = 500
            req.respond(500, _err("Failed to create devbox: internal error (emulated fault)", "internal"))
        elif kind == C.RESET:
            req.reset()

    def _not_found(self, req: Request, devbox_id: str) -> None:
        req.respond(404, _err(f"Devbox {devbox_id} not found", "not_found"))

    def _retrieve(self, req: Request, devbox_id: str, check_body: bool = False) -> None:
        if check_body:
            body, problem = json_object(req.body, empty={})
            if problem:
                return self._bad(req, problem)
            if not isinstance(body.get("statuses"), list) or not body["statuses"]:
                return self._bad(req, "statuses must be a non-empty list")
        kind, sb = self.core.get(devbox_id)
        if kind == C.NOT_FOUND:
            return self._not_found(req, devbox_id)
        req.respond(200, orjson.dumps(self._view(sb)))

    def _shutdown(self, req: Request, devbox_id: str) -> None:
        def done(out: C.KillOutcome) -> None:
            if out.kind == C.OK:
                req.respond(200, orjson.dumps(self._view(out.sandbox, "shutdown")))
            elif out.kind == C.ERROR:
                req.respond(500, _err("Failed to shut down devbox: internal error (emulated fault)", "internal"))
            else:
                self._not_found(req, devbox_id)

        self.core.kill(devbox_id, done, received_at=req.received_at())

    # -- commands --------------------------------------------------------------

    def _execute(self, req: Request, devbox_id: str) -> None:
        body, problem = json_object(req.body, empty={})
        if problem:
            return self._bad(req, problem)
        if not isinstance(body.get("command"), str) or not body["command"]:
            return self._bad(req, "command is required")
        optimistic = body.get("optimistic_timeout")
        if optimistic is None:
            optimistic = DEFAULT_OPTIMISTIC_S
        elif not _nonneg_number(optimistic) or optimistic > MAX_LONG_POLL_S:
            return self._bad(req, f"optimistic_timeout must be between 0 and {MAX_LONG_POLL_S} seconds")
        command_id = body.get("command_id")
        if command_id is not None and not isinstance(command_id, str):
            return self._bad(req, "command_id must be a string")
        self._exec_seq += 1
        execution_id = command_id or f"exe_{self._exec_seq:x}"
        state = {"answered": False, "execution": None, "timer": None}
        running = {"devbox_id": devbox_id, "execution_id": execution_id, "status": "running"}

        def on_timeout() -> None:
            state["timer"] = None
            if not state["answered"]:
                state["answered"] = True
                state["execution"] = self.executions[execution_id] = _Execution(devbox_id, running)
                req.respond(200, orjson.dumps(running))

        def on_event(ev: C.ExecEvent) -> None:
            if ev.kind == C.STARTED:
                return
            status, payload = self._exec_result(devbox_id, execution_id, ev)
            if not state["answered"]:
                state["answered"] = True
                if state["timer"] is not None:
                    state["timer"].cancel()
                req.respond(status, payload)
                return
            execution = state["execution"]
            if execution is not None:
                execution.view = (status, payload)
                waiters, execution.waiters = execution.waiters, []
                for waiter in waiters:
                    waiter()

        self.core.exec(devbox_id, body["command"], on_event, received_at=req.received_at())
        if not state["answered"]:
            state["timer"] = asyncio.get_running_loop().call_later(optimistic, on_timeout)

    def _exec_result(self, devbox_id: str, execution_id: str, ev: C.ExecEvent):
        if ev.kind == C.ENDED:
            r = ev.result
            return 200, orjson.dumps({
                "devbox_id": devbox_id, "execution_id": execution_id, "status": "completed",
                "exit_status": r.exit_code, "stdout": r.stdout.decode("utf-8", "replace"),
                "stderr": r.stderr.decode("utf-8", "replace"), "stdout_truncated": False,
                "stderr_truncated": False,
            })
        if ev.kind == C.ERROR:
            if ev.code == "unavailable":
                return 502, _err(ev.message, "devbox_unavailable")
            return 500, _err(f"command failed to run: {ev.message}", "internal")
        return 404, _err(f"Devbox {devbox_id} not found or not running", "not_found")

    def _wait_for_command(self, req: Request, devbox_id: str, execution_id: str) -> None:
        body, problem = json_object(req.body, empty={})
        if problem:
            return self._bad(req, problem)
        if not isinstance(body.get("statuses"), list) or not body["statuses"]:
            return self._bad(req, "statuses must be a non-empty list")
        wait_s = body.get("timeout_seconds")
        if wait_s is None:
            wait_s = MAX_LONG_POLL_S
        elif not _nonneg_number(wait_s):
            return self._bad(req, "timeout_seconds must be a non-negative number")
        wait_s = min(float(wait_s), MAX_LONG_POLL_S)
        execution = self.executions.get(execution_id)
        if execution is None or execution.devbox_id != devbox_id:
            return req.respond(404, _err(f"Execution {execution_id} not found", "not_found"))
        wanted = set(body["statuses"])

        def answer() -> bool:
            view = execution.view
            if isinstance(view, tuple):  # the result: status and body
                self.executions.pop(execution_id, None)
                req.respond(*view)
                return True
            if view.get("status") in wanted:
                req.respond(200, orjson.dumps(view))
                return True
            return False

        if answer():
            return
        timer = None

        def waiter() -> None:
            if timer is not None:
                timer.cancel()
            answer()

        def expired() -> None:
            if waiter in execution.waiters:
                execution.waiters.remove(waiter)
            req.respond(408, _err("timed out waiting for the execution status", "request_timeout"))

        execution.waiters.append(waiter)
        timer = asyncio.get_running_loop().call_later(wait_s, expired)
