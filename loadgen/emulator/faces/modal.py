"""The modal face: modal's gRPC API (HTTP/2, grpclib) on its own listener.

modal speaks gRPC, not HTTP/1.1, so this face runs a grpclib server on a
second port of the same emulator process, on the same event loop and over
the same core as the HTTP listener. Building the face (which the server does
inside `Emulator.start`, on the running loop) binds that port at once; the
gRPC URL is then found through the HTTP listener:

    GET <emulator-url>/modal/grpc   ->  {"url": "http://127.0.0.1:PORT", "port": PORT}  (https under --tls)
    GET <emulator-url>/modal/stats  ->  {"rpcs": {name: count}, "unimplemented": {name: count},
                                         "grpc_url": ..., "connections": N, "connections_total": M}

so the HTTP side needs nothing of its own beyond handing this face its TLS
context (`listens`); `/_emulator/` ground truth (stats, sandboxes,
reset) covers modal sandboxes like any other. The HTTP listener also
answers the same RPCs as gRPC-Web (`loadgen/emulator/grpcweb.py`), so that
an HTTP/1.1-only client (the FastHttpUser baseline of bench/) can make the
exchanges modal's SDK makes.

One listener serves both services the SDK calls: the control plane
(`modal.client.ModalClient`) and the per-worker task command router
(`modal.task_command_router.TaskCommandRouter`), whose address the create
reply gives. Only the RPCs that modal 1.6.x uses for create → exec → wait →
terminate are implemented (see RPCS); any other answers UNIMPLEMENTED, which
is how a new SDK that needs more shows up.

Faults, as the real service shows them:
- create 5xx         -> INTERNAL
- rate limit/capacity -> RESOURCE_EXHAUSTED with a modal RPCRetryPolicy detail
                        (retry_after_secs), which the SDK would obey unless
                        told not to (MODAL_MAX_THROTTLE_WAIT=0)
- hang               -> the create is never answered
- reset              -> RST_STREAM on that request's HTTP/2 stream (every
                        sandbox of a client process shares one connection, so
                        a TCP reset would take the other requests with it)
- readiness fail     -> exit code 1 with a stderr line, or (stream_error mode)
                        INTERNAL on the stdio read and the wait
- died / killed      -> the task command router answers NOT_FOUND for the
                        task; an exec in flight when the sandbox ends is
                        answered NOT_FOUND too
- kill fail          -> INTERNAL; terminating a sandbox that already ended is
                        a no-op that succeeds (modal's documented behaviour)

Ids: the core's sandbox id `iXXXX` is `sb-iXXXX` on the wire and its task is
`ta-iXXXXV` (the V marks a V2 sandbox's task), so ground truth joins by
stripping the prefix (`core_id()`).

Length: the gRPC face implements every RPC the pinned SDK calls, each a few
lines; they share the id mapping and error statuses below and read best together.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import shlex
import socket
import time
import urllib.request
from typing import Any, Dict, Optional

import grpclib.const
import grpclib.server
import h2.settings
from grpclib import GRPCError, Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.protocol import Connection, EventsProcessor, H2Protocol, _set_nodelay
from h2.connection import H2Connection
from h2.settings import SettingCodes

from loadgen.emulator import core as C
from loadgen.emulator import grpcweb
from loadgen.emulator.request import Request, kernel_arrival
from loadgen.emulator.http2 import max_streams  # the SDK multiplexes a whole process over one connection
from loadgen.net import wiregrpc

HOST = "127.0.0.1"
BACKLOG = 65535  # the kernel caps it at net.core.somaxconn
CONTROL = "/modal.client.ModalClient/"
ROUTER = "/modal.task_command_router.TaskCommandRouter/"
# The RPCs the pinned SDK (modal 1.6.x) calls for one sandbox's life, and a
# few it calls when it has to (JWT refresh, task id lookup, exec poll).
RPCS = (
    CONTROL + "ClientHello",
    CONTROL + "AppGetOrCreate",
    CONTROL + "EnvironmentGetOrCreate",
    CONTROL + "ImageGetOrCreate",
    CONTROL + "AuthTokenGet",
    CONTROL + "SandboxCreateV2",
    CONTROL + "SandboxGetTaskIdV2",
    CONTROL + "SandboxGetCommandRouterAccess",
    CONTROL + "SandboxTerminateV2",
    ROUTER + "TaskExecStart",
    ROUTER + "TaskExecStdioRead",
    ROUTER + "TaskExecWait",
    ROUTER + "TaskExecPoll",
)
_ERROR_STATUS = {"unavailable": Status.UNAVAILABLE, "internal": Status.INTERNAL,
                 "deadline_exceeded": Status.DEADLINE_EXCEEDED, "not_found": Status.NOT_FOUND}


def core_id(modal_id: str) -> str:
    """`sb-iXXXX` or `ta-iXXXXV` -> the core's `iXXXX`."""
    if modal_id.startswith(("sb-", "ta-")):
        modal_id = modal_id[3:]
        if modal_id.endswith("V"):
            modal_id = modal_id[:-1]
    return modal_id


def sandbox_id_of(cid: str) -> str:
    return "sb-" + cid


def task_id_of(cid: str) -> str:
    return "ta-" + cid + "V"


def grpc_url_of(emulator_url: str, timeout: float = 10.0) -> str:
    """The gRPC URL of the modal face of the emulator serving at `emulator_url`."""
    with urllib.request.urlopen(emulator_url.rstrip("/") + "/modal/grpc", timeout=timeout) as resp:
        return json.loads(resp.read())["url"]


def _arrival(stream) -> float:
    """When the kernel took in the request's last byte (read once its message was received): the core's
    latencies then run from the arrival, not from when this loop got to it."""
    stamp = getattr(stream, "_loadgen_arrival", None)
    if stamp is not None:
        return stamp
    transport = getattr(stream._stream, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    return kernel_arrival(sock) if sock is not None else time.time()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: dict) -> str:
    """A JWT-shaped token: the SDK reads `exp` to know when to refresh; nobody checks the signature."""
    head = _b64(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}.{_b64(hashlib.sha256((head + body).encode()).digest()[:16])}"


class _DetailsCodec(StatusDetailsCodecBase):
    """Status details as modal's server sends them: a modal RPCStatus whose details
    are Anys with the `type.modal.com/` prefix (what the SDK's custom codec decodes)."""

    def encode(self, status, message, details) -> bytes:
        from modal_proto import api_pb2

        proto = api_pb2.RPCStatus(code=status.value, message=message or "")
        for detail in details or ():
            proto.details.add().Pack(detail, type_url_prefix="type.modal.com/")
        return proto.SerializeToString()

    def decode(self, status, message, data):  # pragma: no cover - server side never decodes
        return None


class _Protocol(H2Protocol):
    """grpclib's server protocol, advertising `max_streams` (unlimited by default) instead of h2's 100.

    Same as H2Protocol.connection_made (grpclib 0.4.9), except for the local
    settings sent in the connection preface."""

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)
        h2_conn = H2Connection(config=self.h2_config)
        h2_conn.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
        })
        h2_conn.initiate_connection()
        initial = h2_conn.local_settings.initial_window_size
        conn_delta = self.config.http2_connection_window_size - initial
        stream_delta = self.config.http2_stream_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if stream_delta:
            h2_conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: self.config.http2_stream_window_size})
        self.connection = Connection(h2_conn, transport, config=self.config)
        self.connection.flush()
        self.connection.initialize()
        self.processor = EventsProcessor(self.handler, self.connection)
        self.face_connections[0] += 1
        self.face_connections[1] += 1

    def connection_lost(self, exc) -> None:
        self.face_connections[0] -= 1
        super().connection_lost(exc)


class _Server(grpclib.server.Server):
    def __init__(self, handlers, counter, **kw):
        super().__init__(handlers, **kw)
        self._counter = counter

    async def start_stamped(self, sock: socket.socket, ssl=None) -> None:
        """Server.start on loadgen.net.wiregrpc's server: each request's arrival is the kernel's stamp of
        its last byte (``wiregrpc.arrival``), even when the SDK multiplexes a process's creates on one
        connection (TCP_INFO would give them all the latest segment's time)."""
        self._server = wiregrpc.StampedServer(sock, self._protocol_factory, ssl)
        self._server_closed_fut = self._loop.create_future()

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = grpclib.server.Handler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        protocol = _Protocol(handler, self._config, self._h2_config)
        protocol.face_connections = self._counter
        protocol.max_streams = self.max_streams
        return protocol


class _Exec:
    """One command: its start and its end, as futures the RPCs await."""

    __slots__ = ("cid", "epoch", "started", "done", "result", "error", "gone", "entry")

    def __init__(self, cid: str, epoch: int, loop: asyncio.AbstractEventLoop):
        self.cid = cid
        self.epoch = epoch
        self.entry: Optional[dict] = None  # the core's record of the command (ground truth's `execs`)
        self.started = loop.create_future()
        self.done = loop.create_future()
        self.result = None
        self.error = None  # (Status, message)
        self.gone = False


class ModalFace:
    name = "modal"
    listens = True  # a gRPC port of its own, on the emulator's address and with its TLS (see server.Emulator)

    def __init__(self, core: C.Core, port: int = 0, host: str = HOST, ssl=None):
        from modal_proto import api_grpc, api_pb2, task_command_router_grpc, task_command_router_pb2

        self.core = core
        self.pb = api_pb2
        self.sr = task_command_router_pb2
        self._bases = (api_grpc.ModalClientBase, task_command_router_grpc.TaskCommandRouterBase)
        self.loop = asyncio.get_running_loop()  # faces are built in Emulator.start, on the serving loop
        self.rpcs: Dict[str, int] = collections.Counter()
        self.connections = [0, 0]  # gRPC connections open now, and ever accepted
        self.apps: Dict[str, str] = {}
        self.images: Dict[str, str] = {}  # image id -> what it was built from (the template)
        self.execs: Dict[str, _Exec] = {}
        self.execs_by_sandbox: Dict[str, list] = {}
        self._epoch = core.epoch
        self._builder_version = _image_builder_version()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.grpc_port = sock.getsockname()[1]
        self.grpc_url = f"{'https' if ssl is not None else 'http'}://{host}:{self.grpc_port}"
        self._details_codec = _DetailsCodec()
        self._web_handlers = self.__mapping__()  # the same handlers, for gRPC-Web on the HTTP listener
        self.server = _Server([self], self.connections, status_details_codec=self._details_codec)
        self.server.max_streams = max_streams(core.settings)
        # Connections arriving before create_server has run wait in the listen backlog.
        # (grpclib's own default backlog is 100: a burst of router connections would
        # overflow it and wait out the kernel's 1 s SYN retransmission.)
        self._started = self.loop.create_task(self.server.start_stamped(sock, ssl=ssl))

    async def stop(self) -> None:
        await self._started
        self.server.close()
        await self.server.wait_closed()

    # -- the HTTP side: discovery and RPC counts ---------------------------------

    def handle(self, req: Request) -> bool:
        if req.path == b"/modal/grpc":
            req.respond(200, json.dumps({"url": self.grpc_url, "port": self.grpc_port}).encode())
            return True
        if req.path.startswith((CONTROL.encode(), ROUTER.encode())) and grpcweb.is_grpc_web(req):
            handler = self._web_handlers.get(req.path.decode("latin-1"))
            if handler is None:
                handler = grpclib.const.Handler(self._counted(req.path.decode("latin-1"), self._unimplemented),
                                                None, None, None)
            self.loop.create_task(grpcweb.serve(req, handler, self._details_codec))
            return True
        if req.path == b"/modal/stats":
            rpcs = {k: v for k, v in self.rpcs.items() if k in RPCS}
            others = {k: v for k, v in self.rpcs.items() if k not in RPCS}
            req.respond(200, json.dumps({"grpc_url": self.grpc_url, "connections": self.connections[0],
                                         "connections_total": self.connections[1],
                                         "rpcs": rpcs, "unimplemented": others}).encode())
            return True
        return False

    # -- the gRPC side -------------------------------------------------------------

    def __mapping__(self) -> Dict[str, grpclib.const.Handler]:
        mapping = {}
        for base in self._bases:
            # The generated base class knows each method's cardinality and types.
            stub = type("_Types", (base,), {n: (lambda self, stream: None) for n in base.__abstractmethods__})()
            for path, h in stub.__mapping__().items():
                method = getattr(self, path.rsplit("/", 1)[1]) if path in RPCS else self._unimplemented
                mapping[path] = grpclib.const.Handler(self._counted(path, method), h.cardinality,
                                                      h.request_type, h.reply_type)
        return mapping

    async def _unimplemented(self, stream) -> None:
        """Every other RPC of both services: counted (so a new SDK's needs show in /modal/stats), then refused."""
        raise GRPCError(Status.UNIMPLEMENTED, "not emulated by loadgen's modal face")

    def _counted(self, path: str, method):
        rpcs = self.rpcs

        async def handler(stream) -> None:
            rpcs[path] += 1
            recv = stream.recv_message

            async def recv_message():  # the request's arrival, taken as its message is (every RPC's, once)
                message = await recv()
                stamp = wiregrpc.arrival(stream)
                if stamp is not None:
                    stream._loadgen_arrival = stamp
                return message

            stream.recv_message = recv_message
            await method(stream)

        return handler

    def _check_token(self, stream) -> None:
        if not self.core.settings["require_api_key"]:
            return
        md = stream.metadata or {}
        if not md.get("x-modal-token-id") or not md.get("x-modal-token-secret"):
            self.core.note_error("unauthorized")
            raise GRPCError(Status.UNAUTHENTICATED, "Token missing. Could not authenticate client.")

    def _fresh(self) -> None:
        """After a core reset, forget the commands of the old epoch."""
        if self._epoch != self.core.epoch:
            self._epoch = self.core.epoch
            self.execs.clear()
            self.execs_by_sandbox.clear()

    # -- control plane -------------------------------------------------------------

    async def ClientHello(self, stream) -> None:
        await stream.recv_message()
        self._check_token(stream)
        await stream.send_message(self.pb.ClientHelloResponse(image_builder_version=self._builder_version))

    async def AppGetOrCreate(self, stream) -> None:
        req = await stream.recv_message()
        self._check_token(stream)
        app_id = self.apps.get(req.app_name)
        if app_id is None:
            if req.object_creation_type != self.pb.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"App '{req.app_name}' not found")
            app_id = self.apps[req.app_name] = "ap-" + hashlib.sha1(req.app_name.encode()).hexdigest()[:22]
        await stream.send_message(self.pb.AppGetOrCreateResponse(app_id=app_id))

    async def EnvironmentGetOrCreate(self, stream) -> None:
        req = await stream.recv_message()
        self._check_token(stream)
        name = req.deployment_name or "main"
        settings = self.pb.EnvironmentSettings(image_builder_version=self._builder_version)
        await stream.send_message(self.pb.EnvironmentGetOrCreateResponse(
            environment_id="en-" + hashlib.sha1(name.encode()).hexdigest()[:22],
            metadata=self.pb.EnvironmentMetadata(name=name, settings=settings)))

    async def ImageGetOrCreate(self, stream) -> None:
        req = await stream.recv_message()
        self._check_token(stream)
        image = req.image
        ref = "\n".join(image.dockerfile_commands)
        if ref.startswith("FROM ") and "\n" not in ref:
            ref = ref[5:].strip()
        image_id = "im-" + hashlib.sha1(image.SerializeToString(deterministic=True)).hexdigest()[:22]
        self.images[image_id] = ref
        ok = self.pb.GenericResult(status=self.pb.GenericResult.GENERIC_STATUS_SUCCESS)
        await stream.send_message(self.pb.ImageGetOrCreateResponse(image_id=image_id, result=ok))

    async def AuthTokenGet(self, stream) -> None:
        await stream.recv_message()
        self._check_token(stream)
        await stream.send_message(self.pb.AuthTokenGetResponse(
            token=_jwt({"sub": "emulator", "exp": int(time.time()) + 3600})))

    async def SandboxCreateV2(self, stream) -> None:
        req = await stream.recv_message()
        received_at = _arrival(stream)
        self._check_token(stream)
        definition = req.definition
        lifetime = definition.timeout_secs or None
        if lifetime is not None and lifetime > self.core.max_lifetime_s:
            self.core.note_error("bad_request")
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"timeout must be at most {int(self.core.max_lifetime_s)} seconds")
        tags = {t.tag_name: t.tag_value for t in req.tags}
        template = self.images.get(definition.image_id, definition.image_id or None)
        answer = self.loop.create_future()
        self.core.create(self.name, tags or None, template, lifetime,
                         lambda out: answer.done() or answer.set_result(out), received_at=received_at)
        out: C.CreateOutcome = await answer  # a hang is a future nobody resolves
        sb = out.sandbox
        if out.kind == C.OK:
            sb.status = "OK"
            cid = sb.sandbox_id
            await stream.send_message(self.pb.SandboxCreateV2Response(
                sandbox_id=sandbox_id_of(cid), task_id=task_id_of(cid),
                command_router_access=self._router_access(sb),
                metadata=self.pb.SandboxHandleMetadata(app_id=req.app_id)))
            wiregrpc.when_answered(stream, lambda t: setattr(sb, "t_answered", t))  # as it went out
        elif out.kind == C.REJECTED:
            sb.status = "RESOURCE_EXHAUSTED"
            what = "create rate limit" if out.fault == C.F_RATE_LIMITED else "concurrent sandbox limit"
            policy = self.pb.RPCRetryPolicy(retry_after_secs=max(0.1, min(out.retry_after_s, 3600.0)))
            raise GRPCError(Status.RESOURCE_EXHAUSTED, f"Sandbox {what} reached (emulated)", [policy])
        elif out.kind == C.ERROR:
            sb.status = "INTERNAL"
            raise GRPCError(Status.INTERNAL, "Failed to create sandbox: internal error (emulated fault)")
        else:  # RESET: break this request's stream, as a proxy dropping it would
            sb.status = "RST_STREAM"
            await stream.cancel()

    def _router_access(self, sb: C.Sandbox):
        if sb.token is None:
            sb.token = _jwt({"sub": task_id_of(sb.sandbox_id),
                             "exp": int(sb.t_received + sb.lifetime_s + 3600)})
        return self.pb.CommandRouterAccess(url=self.grpc_url, jwt=sb.token)

    async def SandboxGetCommandRouterAccess(self, stream) -> None:
        req = await stream.recv_message()
        self._check_token(stream)
        kind, sb = self.core.get(core_id(req.sandbox_id or req.task_id))
        if kind != C.OK:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {req.sandbox_id or req.task_id} not found")
        access = self._router_access(sb)
        await stream.send_message(self.pb.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt))

    async def SandboxGetTaskIdV2(self, stream) -> None:
        req = await stream.recv_message()
        self._check_token(stream)
        cid = core_id(req.sandbox_id)
        sb = self.core.by_id.get(cid)
        if sb is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {req.sandbox_id} not found")
        resp = self.pb.SandboxGetTaskIdResponse(task_id=task_id_of(cid))
        if sb.state != C.RUNNING:
            resp.task_result.CopyFrom(self.pb.GenericResult(status=self.pb.GenericResult.GENERIC_STATUS_TERMINATED))
        await stream.send_message(resp)

    async def SandboxTerminateV2(self, stream) -> None:
        req = await stream.recv_message()
        received_at = _arrival(stream)
        self._check_token(stream)
        cid = core_id(req.sandbox_id)
        answer = self.loop.create_future()
        self.core.kill(cid, lambda out: answer.done() or answer.set_result(out), received_at=received_at)
        out: C.KillOutcome = await answer
        if out.kind == C.OK:
            self._forget(cid)
            await stream.send_message(self.pb.SandboxTerminateResponse())
            if out.sandbox is not None and out.sandbox.t_kill_answered is not None:  # as it went out
                wiregrpc.when_answered(stream, lambda t, sb=out.sandbox: setattr(sb, "t_kill_answered", t))
        elif out.kind == C.GONE:  # "a no-op if the Sandbox has already finished running"
            self._forget(cid)
            done = self.pb.GenericResult(status=self.pb.GenericResult.GENERIC_STATUS_TERMINATED)
            await stream.send_message(self.pb.SandboxTerminateResponse(existing_result=done))
        elif out.kind == C.ERROR:
            raise GRPCError(Status.INTERNAL, "Failed to terminate sandbox: internal error (emulated fault)")
        else:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {req.sandbox_id} not found")

    def _forget(self, cid: str) -> None:
        for exec_id in self.execs_by_sandbox.pop(cid, ()):
            self.execs.pop(exec_id, None)

    # -- task command router ---------------------------------------------------------

    def _task(self, stream, task_id: str) -> C.Sandbox:
        """The running sandbox of a task, after the router's own auth (the JWT from create)."""
        cid = core_id(task_id)
        sb = self.core.by_id.get(cid)
        if sb is None or sb.state != C.RUNNING:
            raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")
        auth = (stream.metadata or {}).get("authorization", "")
        if sb.token is not None and auth != "Bearer " + sb.token:
            self.core.note_error("unauthorized")
            raise GRPCError(Status.UNAUTHENTICATED, "invalid or expired command router token")
        return sb

    async def TaskExecStart(self, stream) -> None:
        req = await stream.recv_message()
        received_at = _arrival(stream)
        self._fresh()
        sb = self._task(stream, req.task_id)
        cid = sb.sandbox_id
        args = list(req.command_args)
        if not args:
            raise GRPCError(Status.INVALID_ARGUMENT, "command_args must not be empty")
        if len(args) >= 3 and args[0].rsplit("/", 1)[-1] in ("sh", "bash") and args[1] in ("-c", "-lc"):
            command = args[2]
        else:
            command = shlex.join(args)
        ex = self.execs.get(req.exec_id)
        if ex is None:  # the exec id is the SDK's idempotency key: a retried start is the same command
            ex = self.execs[req.exec_id] = _Exec(cid, self.core.epoch, self.loop)
            self.execs_by_sandbox.setdefault(cid, []).append(req.exec_id)
            self.core.exec(cid, command, lambda ev: self._exec_event(ex, ev), received_at=received_at)
            if sb.execs and sb.execs[-1]["command"] == command:
                ex.entry = sb.execs[-1]
        if not await asyncio.shield(ex.started):
            raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id} not found")
        await stream.send_message(self.sr.TaskExecStartResponse())
        self._served(ex, stream)

    def _served(self, ex: _Exec, stream) -> None:
        """Keep, in the command's record, when each of its RPCs arrived and when its answer's last
        frame went out (`rpcs`): a modal command is three of them, and the server's time for it is theirs."""
        if ex.entry is not None:
            came = _arrival(stream)
            rpcs = ex.entry.setdefault("rpcs", [])
            wiregrpc.when_answered(stream, lambda t: rpcs.append((came, t)))  # as its answer's end went out

    def _exec_event(self, ex: _Exec, ev: C.ExecEvent) -> None:
        kind = ev.kind
        if kind == C.STARTED:
            if not ex.started.done():
                ex.started.set_result(True)
            return
        if kind == C.ENDED:
            ex.result = ev.result
        else:
            sb = self.core.by_id.get(ex.cid)
            if kind in (C.NOT_FOUND, C.GONE) or sb is None or sb.state != C.RUNNING:
                ex.gone = True  # the task is gone: the router no longer knows it
                ex.error = (Status.NOT_FOUND, f"Task {task_id_of(ex.cid)} not found")
            else:
                ex.error = (_ERROR_STATUS.get(ev.code, Status.UNKNOWN), ev.message)
        if not ex.started.done():
            ex.started.set_result(not ex.gone)
        if not ex.done.done():
            ex.done.set_result(None)

    async def _finished(self, stream, task_id: str, exec_id: str) -> _Exec:
        ex = self.execs.get(exec_id)
        if ex is None or ex.cid != core_id(task_id):
            self._task(stream, task_id)  # NOT_FOUND for a gone task, else the exec is unknown
            raise GRPCError(Status.NOT_FOUND, f"Exec {exec_id} not found")
        await asyncio.shield(ex.done)
        if ex.error is not None:
            raise GRPCError(*ex.error)
        return ex

    async def TaskExecStdioRead(self, stream) -> None:
        req = await stream.recv_message()
        ex = await self._finished(stream, req.task_id, req.exec_id)
        r = ex.result
        data = r.stdout if req.file_descriptor == self.sr.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT else r.stderr
        data = data[req.offset:]
        if data:
            await stream.send_message(self.sr.TaskExecStdioReadResponse(data=data))
        self._served(ex, stream)

    async def TaskExecWait(self, stream) -> None:
        req = await stream.recv_message()
        ex = await self._finished(stream, req.task_id, req.exec_id)
        await stream.send_message(self.sr.TaskExecWaitResponse(code=ex.result.exit_code))
        self._served(ex, stream)

    async def TaskExecPoll(self, stream) -> None:
        req = await stream.recv_message()
        ex = self.execs.get(req.exec_id)
        if ex is None:
            self._task(stream, req.task_id)
            raise GRPCError(Status.NOT_FOUND, f"Exec {req.exec_id} not found")
        if not ex.done.done():
            await stream.send_message(self.sr.TaskExecPollResponse())
            return
        if ex.error is not None:
            raise GRPCError(*ex.error)
        await stream.send_message(self.sr.TaskExecPollResponse(code=ex.result.exit_code))


def _image_builder_version() -> str:
    """The newest image builder version the installed SDK accepts (the server tells
    clients which one to use; an unknown one makes the SDK refuse to build)."""
    try:
        from modal._image import LATEST_IMAGE_BUILDER_VERSION

        return str(LATEST_IMAGE_BUILDER_VERSION)
    except Exception:  # pragma: no cover - modal_proto without the SDK
        return "2024.10"
