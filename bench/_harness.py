"""Shared plumbing of the generator benchmarks (bench/lifecycle_cost.py, dispatch_rate.py,
measurement_error.py, memory_per_sandbox.py, burst_10k.py).

Every figure comes from real `locust` processes, started the way a user starts
them, against a real emulator process on 127.0.0.1:

- loadgen: `locust -f locustfiles/local.py --emulator-url URL` (the e2b
  adapter through the real SDK), or a generated locustfile naming another
  provider's SandboxUser;
- the baseline: a generated locustfile whose FastHttpUser makes the same HTTP
  exchanges on the e2b wire (POST /sandboxes with X-API-KEY, two POST
  /process.Process/Start with Connect framing, DELETE /sandboxes/{id}), one
  lifecycle per user, no hold. It records its own measured create latency per
  sandbox index, so the same server-side join works for both.

A process's CPU time is read from its rusage when it is reaped (os.wait4):
user + system, every thread (the asyncio loop and pyqwest's Rust threads
included).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LOCUST = str(Path(sys.executable).with_name("locust"))

BASELINE_LOCUSTFILE = r'''
"""FastHttpUser baseline: the wire exchanges of one sandbox lifecycle, one per user (BENCH_WIRE: e2b's by
default, or daytona's, runloop's, codesandbox's or modal's: the exchanges that provider's adapter makes;
modal's RPCs as gRPC-Web, since FastHttpUser has no HTTP/2)."""
import os, time, uuid
import gevent
import gevent.lock
import orjson
from gevent import monkey
from geventhttpclient import connectionpool
from locust import FastHttpUser, task, constant, events
from locust.runners import MasterRunner, WorkerRunner


def _is_socket_alive(self, sock):
    """geventhttpclient's check that a pooled keep-alive connection is still open, with poll() where it has
    select(): select() refuses descriptors from 1024 on (FD_SETSIZE), and the pool took that refusal for a
    dead connection, so in a process with over ~1,000 users every request after the first opened a new
    connection (2.47 connections a lifecycle at 2,000 users on e2b's wire, 4.43 on modal's), which made the
    baseline pay connection set-ups, and TLS handshakes, that FastHttpUser does not pay below 1,000."""
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        poller = _poll()
        poller.register(fd, _POLLIN)
        return not poller.poll(0)  # readable while idle: the peer closed it, or it holds stray bytes
    except (OSError, ValueError):
        return False


_poll, _POLLIN = monkey.get_original("select", "poll"), 1  # a zero-timeout poll never blocks the hub
connectionpool.ConnectionPool._is_socket_alive = _is_socket_alive

MODE = os.environ.get("BENCH_MODE", "lifecycle")      # lifecycle | create
WIRE = os.environ.get("BENCH_WIRE", "e2b")            # e2b | daytona | runloop | codesandbox | modal
VERSION = b"v20.18.1"
OUT = os.environ.get("BENCH_OUT")                      # per-process jsonl of measured create latencies
START_MSG = b'{"process":{"cmd":"/bin/bash","args":["-l","-c","node -v"]},"stdin":false}'
START_BODY = bytes([0]) + len(START_MSG).to_bytes(4, "big") + START_MSG
RUN_ID = "baseline-%d" % os.getpid()
state = {"next": 0, "done": 0, "failed": 0, "expected": None, "rows": [], "total_done": 0}


@events.test_start.add_listener
def _start(environment, **kw):
    if not isinstance(environment.runner, WorkerRunner):
        state["expected"] = environment.parsed_options.num_users


@events.init.add_listener
def _init(environment, **kw):
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        def on_done(environment, msg, **kw):
            state["total_done"] += msg.data
            if state["total_done"] >= state["expected"]:
                gevent.spawn(runner.quit)
        runner.register_message("bench_done", on_done)


def _finished(environment):
    state["done"] += 1
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message("bench_done", 1)
    elif state["done"] >= state["expected"]:
        gevent.spawn(runner.quit)


@events.quitting.add_listener
def _dump(environment, **kw):
    if OUT and state["rows"]:
        with open(f"{OUT}.{os.getpid()}", "wb") as fh:
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in state["rows"]))


def _verified_context(**_ignored):
    """Over TLS, certificates are checked against SSL_CERT_FILE alone (the emulator's CA), as the adapters do.
    (FastHttpUser's own default is insecure=True: no check at all.)"""
    import gevent.ssl

    return gevent.ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])


class BaselineUser(FastHttpUser):
    wait_time = constant(3600)
    # several emulator URLs (comma-separated): worker i takes the i-th, as loadgen's master assigns them
    host = (lambda urls: urls[int(os.environ.get("BENCH_IDX_BASE", "0")) % len(urls)] if urls[0] else None)(
        os.environ.get("BENCH_HOST", "").split(","))
    if (host or "").startswith("https://"):
        insecure = False
        ssl_context_factory = staticmethod(_verified_context)

    def on_start(self):
        self.idx = int(os.environ.get("BENCH_IDX_BASE", "0")) + state["next"] * int(os.environ.get("BENCH_IDX_STRIDE", "1"))
        state["next"] += 1
        self.did = False

    @task
    def life(self):
        if self.did:
            gevent.sleep(3600)
            return
        self.did = True
        if WIRE != "e2b":
            try:
                getattr(self, WIRE)({"run_id": RUN_ID, "sandbox_idx": str(self.idx)})
            except Exception:
                state["failed"] += 1
            finally:
                _finished(self.environment)
            return
        try:
            body = orjson.dumps({"templateID": "base", "timeout": 3600,
                                 "metadata": {"run_id": RUN_ID, "sandbox_idx": str(self.idx)}})
            t0 = time.time()
            r = self.client.post("/sandboxes", data=body, name="create",
                                 headers={"X-API-KEY": "e2b_bench", "Content-Type": "application/json"})
            t1 = time.time()
            self.created = r.status_code == 201
            info = r.json()
            state["rows"].append({"idx": self.idx, "run_id": RUN_ID, "latency_ms": (t1 - t0) * 1000.0})
            if MODE in ("lifecycle", "hold"):
                sid, token = info["sandboxID"], info["envdAccessToken"]
                for i in range(2):
                    if i == 1 and MODE == "hold":
                        state["held"] = state.get("held", 0) + 1
                        gevent.sleep(float(os.environ.get("BENCH_HOLD", "3")))
                    r = self.client.post("/process.Process/Start", data=START_BODY, name="command", headers={
                        "E2b-Sandbox-Id": sid, "X-Access-Token": token,
                        "Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"})
                    if b"djIwLjE4LjEK" not in r.content:   # base64 of "v20.18.1\n"
                        raise RuntimeError("no version in the command stream")
                self.client.request("DELETE", f"/sandboxes/{sid}", name="destroy", headers={"X-API-KEY": "e2b_bench"})
        except Exception:
            state["failed"] += 1
        finally:
            _finished(self.environment)

    def _post(self, path, body, auth, name, expect=200):
        r = self.client.post(path, data=orjson.dumps(body), name=name,
                             headers={"Authorization": auth, "Content-Type": "application/json"})
        if r.status_code != expect:
            raise RuntimeError(f"{name}: {r.status_code}")
        return r

    def _created(self, t0, t1):
        state["rows"].append({"idx": self.idx, "run_id": RUN_ID, "latency_ms": (t1 - t0) * 1000.0})
        return MODE in ("lifecycle", "hold")

    def daytona(self, labels):
        """POST /api/sandbox, two POST /toolbox/{id}/process/execute, DELETE /api/sandbox/{id}."""
        auth = "Bearer dtn_bench_key"
        t0 = time.time()
        info = self._post("/api/sandbox", {"autoStopInterval": 0, "ttlMinutes": 60, "labels": labels}, auth,
                          "create").json()
        if not self._created(t0, time.time()):
            return
        for _ in range(2):
            r = self._post(f"/toolbox/{info['id']}/process/execute", {"command": "node -v", "timeout": 30}, auth,
                           "command")
            if VERSION not in r.content:
                raise RuntimeError("no version in the answer")
        self.client.request("DELETE", f"/api/sandbox/{info['id']}", name="destroy", headers={"Authorization": auth})

    def runloop(self, metadata):
        """POST create_and_await_running, two POST /execute (answered complete), POST /shutdown."""
        auth = "Bearer rl_bench_key"
        t0 = time.time()
        info = self._post("/v1/devboxes/create_and_await_running",
                          {"launch_parameters": {"keep_alive_time_seconds": 3600}, "metadata": metadata}, auth,
                          "create").json()
        if not self._created(t0, time.time()):
            return
        for _ in range(2):
            r = self._post(f"/v1/devboxes/{info['id']}/execute", {"command": "node -v", "optimistic_timeout": 25},
                           auth, "command")
            if VERSION not in r.content:
                raise RuntimeError("no version in the answer")
        self._post(f"/v1/devboxes/{info['id']}/shutdown", {}, auth, "destroy")

    def codesandbox(self, tags):
        """POST /v1/sandboxes and its /wait; per command POST {agent}/api/v1/execs and the SSE stream of its
        output (read to the end, the exit event); POST /terminate and its /wait."""
        auth = "Bearer csb_bench_key"
        t0 = time.time()
        sid = self._post("/v1/sandboxes", {"ttl": 3600, "tags": tags}, auth, "create", 201).json()["id"]
        agent = self._post(f"/v1/sandboxes/{sid}/wait", {}, auth, "create")
        if not self._created(t0, time.time()):
            return
        agent = agent.json()["agent"]
        path = "/" + agent["url"].split("/", 3)[3]
        token = "Bearer " + agent["token"]
        for _ in range(2):
            exec_id = self._post(path + "/api/v1/execs", {"command": "bash", "args": ["-lc", "node -v"],
                                                          "autostart": True}, token, "command", 201).json()["id"]
            r = self.client.get(f"{path}/api/v1/stream/execs/{exec_id}/io", name="command",
                                headers={"Authorization": token, "Accept": "text/event-stream"})
            if VERSION not in r.content or b'"exitCode"' not in r.content:
                raise RuntimeError("no exit in the stream")
        self._post(f"/v1/sandboxes/{sid}/terminate", {"snapshot": None}, auth, "destroy")
        self._post(f"/v1/sandboxes/{sid}/wait", {}, auth, "destroy")

    def _rpc(self, path, message, headers, name):
        """One gRPC call as gRPC-Web over HTTP/1.1 (the emulator's HTTP listener): the answer's messages."""
        body = message.SerializeToString()
        r = self.client.post(path, data=bytes([0]) + len(body).to_bytes(4, "big") + body, name=name,
                             headers={**headers, "Content-Type": "application/grpc-web+proto"})
        data, replies, status = r.content, [], None
        while data:
            flag, size = data[0], int.from_bytes(data[1:5], "big")
            payload, data = data[5:5 + size], data[5 + size:]
            if flag & 0x80:
                status = dict(line.split(b": ", 1) for line in payload.split(b"\r\n") if line)[b"grpc-status"]
            else:
                replies.append(payload)
        if r.status_code != 200 or status != b"0":
            raise RuntimeError(f"{name}: HTTP {r.status_code}, grpc-status {status}")
        return replies

    def _modal_control(self):
        """The control plane's metadata, as modal's SDK sends it with every call."""
        return {**MODAL_HEADERS, "x-idempotency-key": str(uuid.uuid4()), "x-modal-timestamp": repr(time.time())}

    def modal(self, tags):
        """modal's RPCs, each one gRPC-Web exchange: SandboxCreateV2; per command TaskExecStart,
        TaskExecStdioRead and TaskExecWait on the task command router; SandboxTerminateV2."""
        from modal_proto import api_pb2 as pb, task_command_router_pb2 as sr

        app_id, image_id = _modal_app(self)
        t0 = time.time()
        definition = pb.Sandbox(image_id=image_id, timeout_secs=3600, resources=pb.Resources(gpu_config=pb.GPUConfig()),
                                open_ports=pb.PortSpecs(),
                                network_access=pb.NetworkAccess(network_access_type=pb.NetworkAccess.OPEN))
        request = pb.SandboxCreateV2Request(app_id=app_id, definition=definition,
                                            tags=[pb.SandboxTag(tag_name=k, tag_value=v) for k, v in tags.items()])
        [reply] = self._rpc("/modal.client.ModalClient/SandboxCreateV2", request, self._modal_control(), "create")
        created = pb.SandboxCreateV2Response.FromString(reply)
        if not self._created(t0, time.time()):
            return
        router = {"authorization": "Bearer " + created.command_router_access.jwt, "x-throttle-retry-attempt": "0",
                  "user-agent": MODAL_HEADERS["user-agent"]}
        task_id = created.task_id
        for _ in range(2):
            exec_id = str(uuid.uuid4())
            self._rpc("/modal.task_command_router.TaskCommandRouter/TaskExecStart", sr.TaskExecStartRequest(
                task_id=task_id, exec_id=exec_id, command_args=["node", "-v"],
                stdout_config=sr.TASK_EXEC_STDOUT_CONFIG_PIPE, stderr_config=sr.TASK_EXEC_STDERR_CONFIG_PIPE,
                timeout_secs=30), router, "command")
            out = self._rpc("/modal.task_command_router.TaskCommandRouter/TaskExecStdioRead",
                            sr.TaskExecStdioReadRequest(task_id=task_id, exec_id=exec_id), router, "command")
            if VERSION not in b"".join(sr.TaskExecStdioReadResponse.FromString(m).data for m in out):
                raise RuntimeError("no version in the output")
            [code] = self._rpc("/modal.task_command_router.TaskCommandRouter/TaskExecWait",
                               sr.TaskExecWaitRequest(task_id=task_id, exec_id=exec_id), router, "command")
            if sr.TaskExecWaitResponse.FromString(code).code != 0:
                raise RuntimeError("the command failed")
        self._rpc("/modal.client.ModalClient/SandboxTerminateV2", pb.SandboxTerminateRequest(sandbox_id=created.sandbox_id),
                  self._modal_control(), "destroy")


# The metadata modal's SDK sends on every control-plane call (its version, the platform, the token).
MODAL_HEADERS = {"user-agent": "modal-client/1.6.4 (linux; cpython/3.11)", "te": "trailers",
                 "x-retry-attempt": "0", "x-throttle-retry-attempt": "0", "x-modal-client-version": "1.6.4",
                 "x-modal-client-type": "1", "x-modal-python-version": "3.11", "x-modal-node": "bench",
                 "x-modal-platform": "Linux", "x-modal-token-id": "ak-bench", "x-modal-token-secret": "as-bench"}
_modal_setup = {}


def _modal_app(user):
    """The app and the image, made once per process before the first create (as the adapter's setup does)."""
    if "ids" not in _modal_setup:
        from modal_proto import api_pb2 as pb

        lock = _modal_setup.setdefault("lock", gevent.lock.Semaphore())
        with lock:
            if "ids" not in _modal_setup:
                control = user._modal_control
                [app] = user._rpc("/modal.client.ModalClient/AppGetOrCreate", pb.AppGetOrCreateRequest(
                    app_name="loadgen-baseline", object_creation_type=pb.OBJECT_CREATION_TYPE_CREATE_IF_MISSING),
                    control(), "setup")
                app_id = pb.AppGetOrCreateResponse.FromString(app).app_id
                [image] = user._rpc("/modal.client.ModalClient/ImageGetOrCreate", pb.ImageGetOrCreateRequest(
                    app_id=app_id, image=pb.Image(dockerfile_commands=["FROM base"])), control(), "setup")
                _modal_setup["ids"] = (app_id, pb.ImageGetOrCreateResponse.FromString(image).image_id)
    return _modal_setup["ids"]
'''


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


@dataclass
class ProcResult:
    returncode: int
    cpu_s: float
    max_rss_kb: int
    output: str


@dataclass
class LocustResult:
    wall_s: float
    master: ProcResult
    workers: list = field(default_factory=list)
    run_dir: Optional[Path] = None

    @property
    def cpu_s(self) -> float:
        return self.master.cpu_s + sum(w.cpu_s for w in self.workers)

    @property
    def run_path(self) -> Optional[Path]:
        if self.run_dir is None:
            return None
        runs = [p for p in self.run_dir.iterdir() if p.is_dir()]
        return runs[0] if len(runs) == 1 else None

    def records(self) -> list[dict]:
        from loadgen.rundir import read_records

        return read_records(self.run_path)

    def metrics(self) -> list[dict]:
        from loadgen.rundir import iter_jsonl

        return list(iter_jsonl(self.run_path / "metrics.jsonl"))

    def meta(self) -> dict:
        return orjson.loads((self.run_path / "meta.json").read_bytes())


def _env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env.setdefault("E2B_API_KEY", "e2b_bench_key")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("E2B_DEBUG", None)
    if extra:
        env.update(extra)
    return env


def _spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    fh = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc._bench_log = (fh, log)  # type: ignore[attr-defined]
    return proc


def _reap(proc: subprocess.Popen, timeout: float) -> ProcResult:
    deadline = time.time() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            os.killpg(proc.pid, 9)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    fh, log = proc._bench_log  # type: ignore[attr-defined]
    fh.close()
    return ProcResult(proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                      log.read_text(errors="replace"))


def baseline_locustfile(workdir: Path) -> Path:
    path = workdir / "baseline_fasthttp.py"
    path.write_text(BASELINE_LOCUSTFILE)
    return path


def provider_locustfile(workdir: Path, provider: str) -> Path:
    """A locustfile for any registered provider, pointed at an emulator with --emulator-url."""
    if provider == "e2b":
        return REPO / "locustfiles" / "local.py"
    path = workdir / f"loadgen_{provider}.py"
    path.write_text(
        "from loadgen import SandboxUser\n\n"
        f"class BenchUser(SandboxUser):\n    provider_name = {provider!r}\n")
    return path


# The emulator accepts any credentials; the SDKs insist on having them.
PROVIDER_ENV = {
    "e2b": {"E2B_API_KEY": "e2b_bench_key"},
    "daytona": {"DAYTONA_API_KEY": "dtn_bench_key"},
    "runloop": {"RUNLOOP_API_KEY": "rl_bench_key"},
    "modal": {"MODAL_TOKEN_ID": "ak-bench", "MODAL_TOKEN_SECRET": "as-bench"},
    "codesandbox": {"TOGETHER_API_KEY": "csb_bench_key"},
}


def run_locust(locustfile: Path, users: int, *, args=(), env=None, workers: int = 0, timeout: float = 300,
               run_dir: Optional[Path] = None, spawn_rate: Optional[int] = None, loadgen: bool = True) -> LocustResult:
    """One headless locust run (local, or master + `workers` workers); waits for the end."""
    import socket

    workdir = Path(tempfile.mkdtemp(prefix="lgbench-"))
    run_dir = run_dir or workdir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _env(env)
    cmd = [LOCUST, "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(spawn_rate or users),
           "--only-summary", "--loglevel", "WARNING", *args]
    if loadgen:
        cmd += ["--run-dir", str(run_dir)]
    procs = []
    if workers:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                "--expect-workers", str(workers)]
    t0 = time.time()
    master = _spawn(cmd, env, workdir / "master.log")
    for i in range(workers):
        wenv = dict(env, BENCH_IDX_BASE=str(i), BENCH_IDX_STRIDE=str(workers))
        procs.append(_spawn([LOCUST, "-f", str(locustfile), "--worker", "--master-host", "127.0.0.1",
                             "--master-port", str(port), "--loglevel", "WARNING"], wenv,
                            workdir / f"worker{i}.log"))
    m = _reap(master, timeout)
    wall = time.time() - t0
    ws = [_reap(p, 60) for p in procs]
    return LocustResult(wall, m, ws, run_dir)


def run_baseline(users: int, emulator_url: str, mode: str = "lifecycle", workers: int = 0,
                 timeout: float = 300, hold_s: float = 3.0, env: Optional[dict] = None,
                 wire: str = "e2b") -> tuple[LocustResult, list[dict]]:
    """The FastHttpUser baseline on ``wire`` (a face's exchanges, BASELINE_WIRES); returns the run and its
    per-sandbox measured create latencies."""
    workdir = Path(tempfile.mkdtemp(prefix="lgbase-"))
    out = workdir / "latency.jsonl"
    res = run_locust(baseline_locustfile(workdir), users, env={
        **(env or {}), "BENCH_MODE": mode, "BENCH_OUT": str(out), "BENCH_HOST": emulator_url,
        "BENCH_HOLD": str(hold_s), "BENCH_WIRE": wire}, workers=workers, timeout=timeout, loadgen=False)
    rows = []
    for p in workdir.glob("latency.jsonl.*"):
        rows += [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
    return res, rows


# Variants of an adapter, measured side by side: (adapter, environment).
VARIANTS = {
    # the e2b adapter with its lean paths off: the SDK as shipped (before issue 8)
    "e2b-plain": ("e2b", {"LOADGEN_E2B_PLAIN_SDK": "1", "LOADGEN_GC_THRESHOLD": "default"}),
    # the lean e2b adapter with its control plane on the SDK's pyqwest pool, clock read on the loop
    "e2b-pyqwest": ("e2b", {"LOADGEN_E2B_TRANSPORT": "pyqwest"}),
    # the e2b adapter keeping an idle data-plane connection per held sandbox, as it does against
    # the real service (one envd host per sandbox) but not against the emulator (one host)
    "e2b-idle-kept": ("e2b", {"E2B_MAX_KEEPALIVE_CONNECTIONS": "100000"}),
    # the modal adapter on grpclib's own asyncio transport, timed around the SDK call (no wire stamps)
    "modal-sdk": ("modal", {"LOADGEN_MODAL_TRANSPORT": "sdk"}),
    # the modal adapter's SDK calls through synchronicity's wrappers (.aio), as a user's code makes them
    "modal-plain": ("modal", {"LOADGEN_MODAL_PLAIN_SDK": "1"}),
    # the modal adapter with the lifecycle's burst GC thresholds instead of loadgen.net.gcpauses' short pauses
    "modal-burst-gc": ("modal", {"LOADGEN_GC_THRESHOLD": "100000,50,1000"}),
    # ... and its wire reader thread at the OS's scheduling, not SCHED_FIFO
    "modal-cfs-reader": ("modal", {"LOADGEN_GC_THRESHOLD": "100000,50,1000", "LOADGEN_WIRE_READER_FIFO": "0"}),
    # the runloop adapter on the timed transport with its lean SDK path off: the SDK's request path as shipped
    "runloop-plain": ("runloop", {"LOADGEN_RUNLOOP_PLAIN_SDK": "1"}),
    # the codesandbox adapter on the timed transport with httpx's own client class (no lean URL merge or cookies)
    "codesandbox-plain": ("codesandbox", {"LOADGEN_CODESANDBOX_PLAIN_SDK": "1"}),
}


# What a bench row's client speaks to the emulator: (emulator with --tls, LOADGEN_HTTP2 and LOADGEN_WIRE_HTTP2).
PROTOCOLS = {"h1": (False, False), "h2": (False, True), "tls": (True, False), "h2+tls": (True, True)}


def protocol_env(protocol: str, ca_file: Optional[str]) -> dict:
    """The client processes' environment for `protocol`: the emulator's CA (SSL_CERT_FILE), LOADGEN_HTTP2 (the
    SDKs' own HTTP/2) and LOADGEN_WIRE_HTTP2 (the timed client's, to control planes: `tls` is HTTP/1.1 only)."""
    tls, http2 = PROTOCOLS[protocol]
    env = {"LOADGEN_HTTP2": "1" if http2 else "", "LOADGEN_WIRE_HTTP2": "1" if http2 else "0"}
    if tls:
        env["SSL_CERT_FILE"] = ca_file
    return env


# The wires the FastHttpUser baseline can make a lifecycle's exchanges on: "baseline" is e2b's,
# "baseline-<face>" that face's (the same exchanges as that provider's adapter).
BASELINE_WIRES = ("e2b", "daytona", "runloop", "codesandbox", "modal")


def baseline_wire(kind: str) -> Optional[str]:
    """The wire of a baseline row ("baseline", "baseline-daytona"...), or None for an adapter's row."""
    if kind == "baseline":
        return "e2b"
    if kind.startswith("baseline-") and kind[len("baseline-"):] in BASELINE_WIRES:
        return kind[len("baseline-"):]
    return None


def face_of(kind: str) -> str:
    """The emulator face a bench row talks to ("baseline" is FastHttpUser on the e2b wire)."""
    return baseline_wire(kind) or VARIANTS.get(kind, (kind,))[0]


def run_loadgen(users: int, emulator_url: str, provider: str = "e2b", args=(), workers: int = 0,
                timeout: float = 300, env: Optional[dict] = None) -> LocustResult:
    if provider in VARIANTS:
        provider, variant_env = VARIANTS[provider]
        env = {**(env or {}), **variant_env}
    workdir = Path(tempfile.mkdtemp(prefix="lgprov-"))
    return run_locust(provider_locustfile(workdir, provider), users,
                      args=["--emulator-url", emulator_url, *args], env={**PROVIDER_ENV.get(provider, {}), **(env or {})},
                      workers=workers, timeout=timeout)


def emulator_url_for(emu, provider: str) -> str:
    return emu.url


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as everywhere in loadgen."""
    import math

    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(1, math.ceil(p / 100.0 * len(s))) - 1]


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def machine() -> str:
    try:
        load = os.getloadavg()
    except OSError:
        load = (0, 0, 0)
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start"
