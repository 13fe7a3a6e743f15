"""The codesandbox face: the Together Sandbox management API ("bartender") and
the in-sandbox agent's exec API, as the `together-sandbox` SDK (4.1.1) calls them.

Management API (`TOGETHER_BASE_URL` + `/v1`, header `Authorization: Bearer <key>`):
- `POST /v1/sandboxes` creates. The answer is held until the core has decided
  the create (its latency, limits and faults all land on this call, as for
  e2b), then 201 with the sandbox `starting`; the SDK then calls
- `POST /v1/sandboxes/{id}/wait`, which answers 200 with the settled sandbox:
  `running` with its agent's URL and token, or `terminated` with a reason.
- `POST /v1/sandboxes/{id}/terminate` answers 200 `terminating` (the SDK then
  waits again and gets `terminated`).
- `GET /v1/sandboxes/{id}` describes, `GET /v1/sandboxes` lists (empty page).

Sandbox ids are UUIDs on this wire (the SDK parses them), derived from the
core's id with uuid5, so they are as reproducible as the core's.

The agent: each sandbox's `agent.url` is this emulator's own address plus
`/csb-agent/{id}` (built from the request's Host header), so the SDK's
per-sandbox client stays on 127.0.0.1. Under it, with `Authorization: Bearer
<agent token>`:
- `POST /api/v1/execs` `{"command","args","autostart"}` answers 201 with the
  exec (`id`, `pid`, ...) once the core has started the command;
- `GET /api/v1/stream/execs/{exec}/io` is an SSE stream (`text/event-stream`,
  chunked): one `data: {"type","output","sequence","timestamp"}` event per
  output chunk, then one with `exitCode`, then the stream ends.

Paths are distinct from the e2b face's (`/sandboxes`, `/v2/sandboxes`, envd
routed by `E2b-Sandbox-Id`): this face claims only `/v1/sandboxes...` and
`/csb-agent/...` and returns False for everything else, so both faces can
share one emulator process in either order.

How the core's outcomes look here (guesses where the real service's exact
answer is undocumented are marked in docs/providers_codesandbox.md):
- rate limit / capacity: 429 `{"code","message","errors"}` with Retry-After;
- create 5xx: 500; reset: TCP RST; hang: no answer;
- kill failure: 500 on terminate (the sandbox stays up);
- a command on a sandbox that is gone: the agent's edge answers 502
  `{"code":502,"message"}`; a command whose sandbox ends mid-stream: the
  stream's connection is reset; a stream error (readiness_fail_mode
  `stream_error`): the stream ends without an exit code.
- bad input: 400, missing/wrong key: 401, unknown sandbox: 404.

Length: one provider's whole wire protocol (control plane, agent execs and
their SSE stream, and the error shapes of each), kept together so that it can
be checked against the SDK in one reading.
"""

from __future__ import annotations

import datetime
import itertools
import time
import uuid
from typing import Dict, Optional
from urllib.parse import parse_qs

import orjson

from loadgen.emulator.faces import json_object, refusal
from loadgen.emulator import core as C
from loadgen.emulator.request import Request

PROJECT_ID = "emulator"
AGENT_VERSION = "emulator"
AGENT_PREFIX = b"/csb-agent/"
API_PREFIX = b"/v1/sandboxes"
SSE = b"text/event-stream"
GIB = 1024 ** 3
NO_TTL_LIFETIME_S = 365 * 86400.0  # no ttl: the sandbox never terminates on its own
_NS = uuid.UUID("6a0c5b8e-2f57-4b8e-9a8f-6c0d3f1e7a11")
_DEFAULT_SNAPSHOT = str(uuid.uuid5(_NS, "default-snapshot"))

_GONE_REASON = {C.KILLED: "termination_requested", C.EXPIRED: "autoterminated", C.DIED: "crashed"}


def public_id(core_id: str) -> str:
    """The UUID this face shows for the core's sandbox id (ground truth joins on it)."""
    return str(uuid.uuid5(_NS, core_id))


def _api_err(status: int, code: str, message: str, errors: Optional[list] = None) -> bytes:
    return orjson.dumps({"code": code, "message": message, "errors": errors or []})


def _agent_err(status: int, message: str) -> bytes:
    return orjson.dumps({"code": status, "message": message})


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def command_text(command: str, args: list) -> str:
    """The shell command an exec runs: `bash -lc CMD` -> CMD, else the argv joined."""
    base = command.rsplit("/", 1)[-1]
    if base in ("sh", "bash", "dash", "zsh", "ash") and len(args) >= 2:
        for i, arg in enumerate(args[:-1]):
            if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
                return str(args[i + 1])
    return " ".join([command] + [str(a) for a in args])


class _Box:
    """What the face keeps per sandbox beside the core's record."""

    __slots__ = ("core_id", "cpu", "memory_bytes", "ttl", "snapshot_id", "tags", "created", "started", "origin")

    def __init__(self, core_id: str, cpu: float, memory_bytes: int, ttl: Optional[int], snapshot_id: str,
                 tags: dict, created: float, started: Optional[float], origin: str):
        self.core_id = core_id
        self.origin = origin
        self.cpu = cpu
        self.memory_bytes = memory_bytes
        self.ttl = ttl
        self.snapshot_id = snapshot_id
        self.tags = tags
        self.created = created
        self.started = started


class _ExecState:
    """One exec: its buffered SSE events until a stream takes them."""

    __slots__ = ("exec_id", "box_id", "events", "done", "broken", "stream", "seq", "entry")

    def __init__(self, exec_id: str, box_id: str):
        self.entry: Optional[dict] = None  # the core's record of the command (ground truth)
        self.exec_id = exec_id
        self.box_id = box_id
        self.events: list = []  # (sequence, encoded SSE event)
        self.done = False  # an exit code was recorded
        self.broken: Optional[str] = None  # error code when the exec ended without one
        self.stream: Optional[Request] = None
        self.seq = 0


class CodeSandboxFace:
    name = "codesandbox"

    def __init__(self, core: C.Core):
        self.core = core
        self.boxes: Dict[str, _Box] = {}  # sandbox UUID -> _Box
        self.execs: Dict[str, _ExecState] = {}
        self._exec_ids = itertools.count(1)

    # -- routing -------------------------------------------------------------

    def handle(self, req: Request) -> bool:
        path = req.path
        if path.startswith(AGENT_PREFIX):
            self._agent(req, path[len(AGENT_PREFIX):])
            return True
        if path == API_PREFIX or path.startswith(API_PREFIX + b"/"):
            self._api(req, path[len(API_PREFIX):])
            return True
        return False

    # -- management API --------------------------------------------------------

    def _api(self, req: Request, rest: bytes) -> None:
        if not self._authorized(req):
            return
        method = req.method
        if rest in (b"", b"/"):
            if method == b"POST":
                self._create(req)
            elif method == b"GET":
                req.respond(200, orjson.dumps({"data": [], "next_cursor": None}))
            else:
                req.respond(405, _api_err(405, "method_not_allowed", "method not allowed"))
            return
        parts = rest.decode("utf-8", "replace").strip("/").split("/")
        sandbox_id = parts[0]
        action = parts[1] if len(parts) == 2 else None
        if len(parts) > 2 or (action is not None and action not in ("wait", "terminate")):
            self._not_found_route(req)
            return
        box = self.boxes.get(sandbox_id)
        if action is None and method == b"GET":
            self._describe(req, sandbox_id, box)
        elif action == "wait" and method == b"POST":
            sb = self._describe(req, sandbox_id, box)
            if sb is not None:
                self.core.note_wait(sb, req.received_at())  # the create's (or terminate's) second exchange
        elif action == "terminate" and method == b"POST":
            self._terminate(req, sandbox_id, box)
        else:
            self._not_found_route(req)

    def _not_found_route(self, req: Request) -> None:
        self.core.note_error("not_found")
        req.respond(404, _api_err(404, "not_found",
                                  f"no route for {req.method.decode()} {req.path.decode('utf-8', 'replace')}"))

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get(b"authorization", b"")
        if self.core.settings["require_api_key"] and not (auth.startswith(b"Bearer ") and len(auth) > 7):
            self.core.note_error("unauthorized")
            req.respond(401, _api_err(401, "unauthorized", "missing or invalid API key (Authorization: Bearer)"))
            return False
        return True

    def _bad(self, req: Request, parameter: str, message: str) -> None:
        self.core.note_error("bad_request")
        req.respond(400, _api_err(400, "invalid_request", message,
                                  [{"parameter": parameter, "code": "invalid", "message": message}]))

    def _create(self, req: Request) -> None:
        body, problem = json_object(req.body, empty={})
        if problem:
            return self._bad(req, "body", problem)
        snapshot_id = body.get("snapshot_id")
        alias = body.get("snapshot_alias")
        if snapshot_id is not None:
            try:
                snapshot_id = str(uuid.UUID(str(snapshot_id)))
            except ValueError:
                return self._bad(req, "snapshot_id", "snapshot_id must be a UUID")
        if alias is not None and (not isinstance(alias, str) or not alias):
            return self._bad(req, "snapshot_alias", "snapshot_alias must be a non-empty string")
        cpu = body.get("cpu", 1.0)
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not 0.1 <= cpu <= 16:
            return self._bad(req, "cpu", "cpu must be a number between 0.1 and 16")
        memory = body.get("memory_bytes", 2 * GIB)
        if isinstance(memory, bool) or not isinstance(memory, int) or not GIB <= memory <= 8 * GIB * max(cpu, 1):
            return self._bad(req, "memory_bytes", "memory_bytes must be between 1 GB and 8 GB per requested CPU")
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
            return self._bad(req, "ttl", "ttl must be a non-negative integer (seconds) or null")
        tags = body.get("tags")
        if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
            return self._bad(req, "tags", "tags must be an object of string values")
        template = alias or snapshot_id
        snapshot = snapshot_id or (str(uuid.uuid5(_NS, alias)) if alias else _DEFAULT_SNAPSHOT)
        lifetime = NO_TTL_LIFETIME_S if ttl is None else float(ttl)
        origin = self._origin(req)
        self.core.create(self.name, tags, template, lifetime,
                         lambda out: self._created(req, out, cpu, memory, ttl, snapshot, tags or {}, origin),
                         received_at=req.received_at())

    def _origin(self, req: Request) -> str:
        """The origin the create came to (scheme://host:port): the agent is served there too."""
        host = req.headers.get(b"host")
        if host:
            return f"{req.scheme}://{host.decode('latin-1')}"
        transport = req.conn.transport
        sock = transport.get_extra_info("sockname") if transport is not None else None
        return f"{req.scheme}://{sock[0]}:{sock[1]}" if sock else f"{req.scheme}://127.0.0.1"

    def _created(self, req: Request, out: C.CreateOutcome, cpu, memory, ttl, snapshot, tags, origin) -> None:
        sb = out.sandbox
        kind = out.kind
        if kind == C.OK:
            sid = public_id(sb.sandbox_id)
            if sb.token is None:
                sb.token = "csbat_" + uuid.uuid5(_NS, "token|" + sb.sandbox_id).hex
            now = sb.t_answered
            self.boxes[sid] = _Box(sb.sandbox_id, cpu, memory, ttl, snapshot, tags, sb.t_received, now, origin)
            sb.status = 201
            req.respond(201, orjson.dumps(self._model(sid, self.boxes[sid], sb, "starting",
                                                      "cold_start_requested", agent=False)))
        elif kind == C.REJECTED:
            sb.status = 429
            what, header = refusal(out)
            req.respond(429, _api_err(429, "rate_limited", f"Rate limit exceeded: {what} reached"),
                        extra_headers=header)
        elif kind == C.ERROR:
            sb.status = 500
            req.respond(500, _api_err(500, "internal_error",
                                      "failed to create sandbox: internal error (emulated fault)"))
        elif kind == C.RESET:
            req.reset()

    def _model(self, sid: str, box: _Box, sb: Optional[C.Sandbox], status: str, reason: str,
               agent: bool) -> dict:
        ended = sb.t_ended if sb is not None else None
        token = sb.token if (agent and sb is not None) else None
        url = f"{box.origin}/csb-agent/{sid}" if agent else None
        return {
            "id": sid,
            "organization_id": None,
            "project_id": PROJECT_ID,
            "status": status,
            "snapshot_id": box.snapshot_id,
            "cpu": box.cpu,
            "memory_bytes": box.memory_bytes,
            "agent": {"version": AGENT_VERSION, "token": token, "url": url},
            "ttl": box.ttl,
            "tags": box.tags,
            "termination_policy": None,
            "created_at": _iso(box.created),
            "started_at": _iso(box.started) if status != "starting" else None,
            "terminated_at": _iso(ended) if status == "terminated" else None,
            "status_reason": reason,
            "resized_at": None,
            "recovery_at": None,
            "updated_at": _iso(ended or box.started or box.created),
        }

    def _describe(self, req: Request, sid: str, box: Optional[_Box]) -> Optional[C.Sandbox]:
        """GET and wait: the sandbox as it is now (the core settles creates before answering them).
        Returns the core's sandbox it described, if any."""
        if box is None:
            self.core.note_error("not_found")
            req.respond(404, _api_err(404, "not_found", f"sandbox {sid!r} not found"))
            return None
        kind, sb = self.core.get(box.core_id)
        if kind == C.OK:
            req.respond(200, orjson.dumps(self._model(sid, box, sb, "running", "cold_started", agent=True)))
        elif kind == C.GONE:
            req.respond(200, orjson.dumps(self._model(sid, box, sb, "terminated",
                                                      _GONE_REASON.get(sb.state, "termination_requested"),
                                                      agent=False)))
        else:  # the core forgot it (a reset)
            req.respond(404, _api_err(404, "not_found", f"sandbox {sid!r} not found"))
        return sb

    def _terminate(self, req: Request, sid: str, box: Optional[_Box]) -> None:
        if box is None:
            self.core.note_error("not_found")
            req.respond(404, _api_err(404, "not_found", f"sandbox {sid!r} not found"))
            return
        if req.body:
            _, problem = json_object(req.body)
            if problem:
                return self._bad(req, "body", problem)

        def done(out: C.KillOutcome) -> None:
            sb = out.sandbox
            if out.kind == C.OK:
                req.respond(200, orjson.dumps(self._model(sid, box, sb, "terminating", "termination_requested",
                                                          agent=False)))
            elif out.kind == C.ERROR:
                req.respond(500, _api_err(500, "internal_error",
                                          "failed to terminate sandbox: internal error (emulated fault)"))
            elif out.kind == C.GONE:  # already terminated: terminate is idempotent
                req.respond(200, orjson.dumps(self._model(sid, box, sb, "terminated",
                                                          _GONE_REASON.get(sb.state, "termination_requested"),
                                                          agent=False)))
            else:
                req.respond(404, _api_err(404, "not_found", f"sandbox {sid!r} not found"))

        self.core.kill(box.core_id, done, received_at=req.received_at())

    # -- the agent ---------------------------------------------------------------

    def _agent(self, req: Request, rest: bytes) -> None:
        sid_b, _, sub = rest.partition(b"/")
        sid = sid_b.decode("utf-8", "replace")
        box = self.boxes.get(sid)
        if box is None:
            self.core.note_error("not_found")
            req.respond(404, _agent_err(404, f"no sandbox agent at {sid!r}"))
            return
        path = b"/" + sub
        method = req.method
        exec_id = None
        if path.startswith(b"/api/v1/stream/execs/") and path.endswith(b"/io") and method == b"GET":
            exec_id = path[len(b"/api/v1/stream/execs/"):-len(b"/io")].decode("utf-8", "replace")
        sb = self.core.by_id.get(box.core_id)
        if sb is None or sb.state != C.RUNNING:
            state = self.execs.get(exec_id) if exec_id is not None else None
            if state is None or not state.done:
                # the VM is gone: its agent's edge has nothing to forward to. (A
                # command that completed before that still delivers its result,
                # as the core's model has it: a sandbox dies *after* a command.)
                req.respond(502, _agent_err(502, f"sandbox {sid} is not running"))
                return
        auth = req.headers.get(b"authorization", b"")
        if sb is None or auth != b"Bearer " + (sb.token or "").encode():
            self.core.note_error("unauthorized")
            req.respond(401, _agent_err(401, "invalid agent token"))
            return
        if path == b"/api/v1/execs" and method == b"POST":
            self._exec(req, sid, box)
        elif exec_id is not None:
            self._stream(req, sid, exec_id)
        else:
            self.core.note_error("not_found")
            req.respond(404, _agent_err(404, f"{method.decode()} {path.decode('utf-8', 'replace')} is not emulated"))

    def _agent_bad(self, req: Request, message: str) -> None:
        self.core.note_error("bad_request")
        req.respond(400, _agent_err(400, message))

    def _exec(self, req: Request, sid: str, box: _Box) -> None:
        body, problem = json_object(req.body)
        if problem:
            return self._agent_bad(req, problem)
        command = body.get("command")
        args = body.get("args", [])
        if not isinstance(command, str) or not command:
            return self._agent_bad(req, "command is required and must be a string")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return self._agent_bad(req, "args must be a list of strings")
        if body.get("autostart") is False or body.get("pty") is True:
            req.respond(501, _agent_err(501, "only autostarted, non-PTY execs are emulated"))
            return
        state = _ExecState(f"exec-{next(self._exec_ids)}", sid)
        text = command_text(command, args)
        sb = self.core.by_id.get(box.core_id)
        known = len(sb.execs) if sb is not None else 0
        self.core.exec(box.core_id, text, lambda ev: self._exec_event(req, sid, state, command, args, ev),
                       received_at=req.received_at())
        if sb is not None and len(sb.execs) > known:
            state.entry = sb.execs[-1]

    def _exec_event(self, req: Request, sid: str, state: _ExecState, command: str, args: list,
                    ev: C.ExecEvent) -> None:
        kind = ev.kind
        if kind == C.STARTED:
            self.execs[state.exec_id] = state
            req.respond(201, orjson.dumps({"id": state.exec_id, "command": command, "args": args,
                                           "status": "running", "pid": ev.pid, "pty": False, "exitCode": 0}))
        elif kind == C.ENDED:
            r = ev.result
            now = _iso(time.time())
            if r.stdout:
                self._event(state, {"type": "stdout", "output": r.stdout.decode("utf-8", "replace"), "timestamp": now})
            if r.stderr:
                self._event(state, {"type": "stderr", "output": r.stderr.decode("utf-8", "replace"), "timestamp": now})
            self._event(state, {"type": "stdout", "output": "", "timestamp": now, "exitCode": r.exit_code})
            state.done = True
            self._flush(state)
        elif kind == C.ERROR:
            if req.state == 0:  # the sandbox ended before the command started
                req.respond(502, _agent_err(502, f"sandbox {sid} is not running"))
                return
            state.broken = ev.code
            self._flush(state)
        else:  # NOT_FOUND or GONE
            req.respond(502, _agent_err(502, f"sandbox {sid} is not running"))

    def _event(self, state: _ExecState, data: dict) -> None:
        state.seq += 1
        data["sequence"] = state.seq
        state.events.append((state.seq, b"data: " + orjson.dumps(data) + b"\n\n"))

    def _flush(self, state: _ExecState) -> None:
        """Send what a waiting stream has not seen; end it when the exec is over."""
        stream = state.stream
        if stream is None:
            return
        if state.events:
            stream.write_chunk(b"".join(e for _, e in state.events))
            state.events = []
        if state.done:
            stream.end_stream()
            self.execs.pop(state.exec_id, None)
        elif state.broken is not None:
            self.execs.pop(state.exec_id, None)
            if state.broken == "unavailable":
                stream.reset()  # the VM went away under the stream
            else:
                stream.end_stream()  # ends without an exit code

    def _stream(self, req: Request, sid: str, exec_id: str) -> None:
        state = self.execs.get(exec_id)
        if state is None or state.box_id != sid:
            self.core.note_error("not_found")
            req.respond(404, _agent_err(404, f"exec {exec_id!r} not found"))
            return
        if state.stream is not None:
            req.respond(409, _agent_err(409, f"exec {exec_id!r} is already being streamed"))
            return
        last = None
        if req.query:
            values = parse_qs(req.query.decode("latin-1")).get("lastSequence")
            if values:
                try:
                    last = int(values[0])
                except ValueError:
                    return self._agent_bad(req, "lastSequence must be an integer")
        if last is not None:
            state.events = [(s, e) for s, e in state.events if s > last]
        state.stream = req
        req.start_stream(200, SSE)
        ended_before = state.done
        self._flush(state)
        if ended_before and state.entry is not None:
            # the command ended before its output was asked for: delivering it is the exec's second
            # exchange, kept in the ground truth (`stream`: [received, answered]) beside the command's
            now, arrived = self.core._arrival(req.received_at())
            state.entry["stream"] = [arrived, now]
