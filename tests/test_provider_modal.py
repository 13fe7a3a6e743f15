"""modal: the real modal SDK against the emulator's modal face (gRPC over HTTP/2).

- a 200-sandbox Locust run against the `chaos` profile, record by record
  against the emulator's ground truth (joined by the run_id/sandbox_idx tags
  the creates carried);
- every fault at 100%, through the adapter on loadgen's asyncio bridge: the
  failure class and the gRPC status name, and one request per attempt (the
  SDK's retries are off);
- missing credentials: a clear error naming the variables, no create;
- times on the wire (loadgen.net.wiregrpc): with the bridge's loop stalled while
  the answers arrive, each create's, command's and destroy's latency is still
  the emulator's service time; the escape hatch back to the SDK's transport.

Set LOADGEN_SLOW_TESTS=1 to also run the 1,000-sandbox hub-lag measurement.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("modal")

from loadgen.emulator import start_emulator  # noqa: E402
from loadgen.emulator.faces.modal import RPCS, core_id  # noqa: E402
from loadgen.providers.base import ProviderSettings  # noqa: E402
from tests.locust_harness import run_locust  # noqa: E402
from tests.wire_timing import wire_errors  # noqa: E402

CREDS = {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"}
LIFE_RPCS = {"AppGetOrCreate", "EnvironmentGetOrCreate", "ImageGetOrCreate", "AuthTokenGet", "SandboxCreateV2",
             "TaskExecStart", "TaskExecStdioRead", "TaskExecWait", "SandboxTerminateV2"}


def modal_stats(emu) -> dict:
    return json.loads(emu._call("GET", "/modal/stats"))


def expected_status(sb: dict) -> str:
    """What the lifecycle must record for a sandbox, from what the server did to it."""
    if sb["state"] in ("failed", "rejected", "hung"):
        return "failed"
    if "readiness_fail" in sb["faults"]:
        return "readiness_failed"
    if "died" in sb["faults"]:
        return "partial"
    return "success"


# the record's (failure_class, http_status) for each create fault and phase fault
CREATE_FAULTS = {
    "create_5xx": ("http_error", "INTERNAL"),
    "reset": ("network_error", None),
    "create_hang": ("timeout", None),
}


def test_chaos_run_matches_ground_truth(tmp_path):
    with start_emulator("chaos", faces="modal") as emu:
        run = run_locust("modal.py", 200, tmp_path, [
            "--emulator-url", emu.url, "--create-timeout", "8", "--command-timeout", "8",
            "--destroy-timeout", "8", "--late-create-window", "2", "--hold", "3", "--barrier-timeout", "60",
        ], env=CREDS, timeout=180)
        assert run.returncode == 0, run.output[-4000:]
        truth = emu.sandboxes()
        stats = emu.stats()
        rpcs = modal_stats(emu)
    records = run.records
    assert len(records) == 200 and len(truth) == 200
    assert sorted(r["sandbox_idx"] for r in records) == list(range(200))
    run_id = records[0]["run_id"]
    by_idx = {}
    for sb in truth:  # every create carried its tags
        assert sb["provider"] == "modal" and sb["metadata"]["run_id"] == run_id
        by_idx[int(sb["metadata"]["sandbox_idx"])] = sb

    # the count of each status equals what the server says happened...
    assert collections.Counter(r["status"] for r in records) == \
        collections.Counter(expected_status(sb) for sb in truth)
    faults = collections.Counter(f for sb in truth for f in sb["faults"])
    assert sum(faults.values()) > 0, "the chaos profile injected nothing"
    # ...and so does every single sandbox, with the right class and gRPC status
    for r in records:
        sb = by_idx[r["sandbox_idx"]]
        want = expected_status(sb)
        assert r["status"] == want, (r, sb)
        if want == "failed":
            assert r["failed_phase"] == "create" and r["sandbox_id"] is None
            assert (r["failure_class"], r["http_status"]) == CREATE_FAULTS[sb["fault"]], (r, sb)
            continue
        assert r["sandbox_id"] == "sb-" + sb["sandbox_id"] and core_id(r["sandbox_id"]) == sb["sandbox_id"]
        assert r["readiness_output"] if want != "readiness_failed" else True
        if want == "readiness_failed":  # exit mode: exit 1 and the stderr line
            assert (r["failure_class"], r["error_code"]) == ("other", "exit_1"), r
            assert "emulated readiness fault" in r["error_message"]
        elif want == "partial":  # the task is gone: the router says NOT_FOUND
            assert (r["failed_phase"], r["failure_class"], r["http_status"]) == ("liveness", "http_error", "NOT_FOUND")
        # destroy: a kill fault is INTERNAL; terminating a sandbox that died is a no-op
        if "kill_fail" in sb["faults"]:
            assert r["destroy_ok"] is False and r["destroy_failure_class"] == "http_error", r
        else:
            assert r["destroy_ok"] is True, r
    # one request per create: the SDK retried nothing
    assert stats["ops"]["create"]["requests"] == 200
    # only sandboxes whose kill failed are left (unless they died since)
    left = [sb for sb in truth if sb["state"] == "running"]
    assert stats["live"] == len(left) and all("kill_fail" in sb["faults"] for sb in left)
    assert all(sb["state"] == "running" for sb in truth if "kill_fail" in sb["faults"] and "died" not in sb["faults"])
    # the RPCs the SDK used are the emulated ones, and only those
    used = {name.rsplit("/", 1)[1] for name in rpcs["rpcs"]}
    assert LIFE_RPCS <= used and set(rpcs["rpcs"]) <= set(RPCS), rpcs
    assert rpcs["unimplemented"] == {}, rpcs
    assert rpcs["rpcs"]["/modal.client.ModalClient/SandboxCreateV2"] == 200
    assert rpcs["rpcs"]["/modal.client.ModalClient/AppGetOrCreate"] == 1  # once per process
    assert "AsyncUsageWarning" not in run.output
    assert run.meta["status_histogram"]["success"] == collections.Counter(
        expected_status(sb) for sb in truth)["success"]


# -- every fault at 100%, through the adapter on the asyncio bridge --------------------

FAULTS = {
    "create_5xx": dict(fault_create_5xx=1.0),
    "rate_limited": dict(rate_limit_per_s=0.001, rate_limit_burst=1),
    "capacity": dict(capacity=1),
    "hang": dict(fault_create_hang=1.0),
    "reset": dict(fault_reset=1.0),
    "readiness_exit": dict(fault_readiness=1.0),
    "readiness_stream": dict(fault_readiness=1.0, readiness_fail_mode="stream_error"),
    "died": dict(fault_died=1.0, died_delay_s=0.0),
    "kill_fail": dict(fault_kill=1.0),
}


@pytest.fixture(scope="module", params=["h1", "tls"], ids=["grpc", "grpc+tls"])
def fault_emulators(request):
    """One emulator per fault, started in parallel, serving gRPC in cleartext or over TLS (modal is
    HTTP/2 either way). Each is a subprocess tied to the thread that started it (PR_SET_PDEATHSIG),
    so that thread lives until teardown."""
    emus, errors, done = {}, [], threading.Event()
    started = threading.Semaphore(0)

    def keep(name, overrides):
        try:
            emu = emus[name] = start_emulator("fast", faces="modal", tls=request.param == "tls", **overrides)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            started.release()
            return
        started.release()
        done.wait()
        emu.stop()

    threads = [threading.Thread(target=keep, args=item, daemon=True) for item in FAULTS.items()]
    for t in threads:
        t.start()
    try:
        for _ in threads:
            started.acquire()
        if errors:
            raise errors[0]
        yield emus
    finally:
        done.set()
        for t in threads:
            t.join(30)


@pytest.fixture
def modal_env(monkeypatch):
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    # the adapter sets these for the SDK; give them back afterwards
    monkeypatch.setenv("MODAL_SERVER_URL", os.environ.get("MODAL_SERVER_URL", ""))
    monkeypatch.setenv("MODAL_MAX_THROTTLE_WAIT", os.environ.get("MODAL_MAX_THROTTLE_WAIT", ""))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # set per emulator by _provider; restored afterwards
    opened = []
    yield opened
    from loadgen.net.aio import get_bridge

    for provider in opened:
        if provider._client is not None:
            try:
                get_bridge().call(provider._client.close.aio(), timeout=10)
            except Exception:  # noqa: BLE001
                pass


def _provider(emu, opened):
    from loadgen.providers.modal import ModalProvider

    if emu.ca_file:  # over TLS: the adapter trusts the emulator's CA through SSL_CERT_FILE
        os.environ["SSL_CERT_FILE"] = emu.ca_file
    provider = ModalProvider(ProviderSettings(base_url=emu.url, sandbox_lifetime_s=600, create_timeout_s=10))
    provider.prepare()
    opened.append(provider)
    assert provider._setup_error is None, provider._setup_error
    return provider


def _call(provider, method, *args, timeout=10.0):
    return provider.start_call(method, *args).wait(timeout)


def _raises(provider, method, *args):
    with pytest.raises(Exception) as info:
        _call(provider, method, *args)
    return provider.classify(info.value), info.value


TAGS = {"run_id": "fault-test", "sandbox_idx": "0"}


def test_create_faults_map_to_grpc_status(fault_emulators, modal_env):
    cases = {
        "create_5xx": ("http_error", "INTERNAL", "internal", "InternalError"),
        "reset": ("network_error", None, None, "StreamTerminatedError"),
    }
    for name, (klass, status, code, error_type) in cases.items():
        emu = fault_emulators[name]
        provider = _provider(emu, modal_env)
        info, _ = _raises(provider, provider.create, TAGS)
        assert (info.failure_class, info.http_status, info.error_code, info.error_type) == \
            (klass, status, code, error_type), name
        assert emu.stats()["ops"]["create"]["requests"] == 1, f"{name}: the SDK retried"
    # rate limit and capacity: RESOURCE_EXHAUSTED with a retry-after the SDK is told to ignore
    for name in ("rate_limited", "capacity"):
        emu = fault_emulators[name]
        provider = _provider(emu, modal_env)
        first = _call(provider, provider.create, TAGS)
        info, exc = _raises(provider, provider.create, {**TAGS, "sandbox_idx": "1"})
        assert (info.failure_class, info.http_status, info.error_code) == \
            ("http_error", "RESOURCE_EXHAUSTED", "rate_limited"), name
        assert emu.stats()["ops"]["create"]["requests"] == 2, f"{name}: the SDK waited and retried"
        assert emu.sandboxes()[1]["fault"] == name
        assert _call(provider, provider.destroy, first, 5.0) is True


def test_hang_is_never_answered(fault_emulators, modal_env):
    emu = fault_emulators["hang"]
    provider = _provider(emu, modal_env)
    pending = provider.start_call(provider.create, TAGS)
    with pytest.raises(TimeoutError):
        pending.wait(1.5)  # the lifecycle turns this into failure_class timeout
    assert not pending.done
    assert emu.stats()["hung"] == 1 and emu.sandboxes()[0]["state"] == "hung"


def test_phase_faults_map_to_grpc_status(fault_emulators, modal_env):
    # readiness, exit mode: the command ran and failed
    provider = _provider(fault_emulators["readiness_exit"], modal_env)
    sb = _call(provider, provider.create, TAGS)
    result = _call(provider, provider.run, sb, "node -v", 5.0)
    assert result.exit_code == 1 and "emulated readiness fault" in result.stderr and result.stdout == ""
    assert _call(provider, provider.destroy, sb, 5.0) is True

    # readiness, stream-error mode: INTERNAL on the stdio read, not retried
    provider = _provider(fault_emulators["readiness_stream"], modal_env)
    sb = _call(provider, provider.create, TAGS)
    info, _ = _raises(provider, provider.run, sb, "node -v", 5.0)
    assert (info.failure_class, info.http_status) == ("http_error", "INTERNAL")
    assert _call(provider, provider.destroy, sb, 5.0) is True

    # died: readiness passes, then the task is gone (NOT_FOUND), and terminate is a no-op
    emu = fault_emulators["died"]
    provider = _provider(emu, modal_env)
    sb = _call(provider, provider.create, TAGS)
    assert _call(provider, provider.run, sb, "node -v", 5.0).stdout.strip() == "v20.18.1"
    deadline = time.time() + 10
    while emu.stats()["died"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    info, _ = _raises(provider, provider.run, sb, "node -v", 5.0)
    assert (info.failure_class, info.http_status, info.error_code) == ("http_error", "NOT_FOUND", "not_found")
    assert _call(provider, provider.destroy, sb, 5.0) is True
    assert emu.sandboxes()[0]["state"] == "died"

    # kill fail: INTERNAL, and the sandbox is still there
    emu = fault_emulators["kill_fail"]
    provider = _provider(emu, modal_env)
    sb = _call(provider, provider.create, TAGS)
    assert _call(provider, provider.run, sb, "node -v", 5.0).exit_code == 0
    info, _ = _raises(provider, provider.destroy, sb, 5.0)
    assert (info.failure_class, info.http_status) == ("http_error", "INTERNAL")
    assert emu.stats()["ops"]["kill"] == {"requests": 1, "ok": 0, "not_found": 0, "failed": 1}
    assert emu.stats()["live"] == 1


def test_the_sdk_speaks_grpc_as_the_emulator_serves_it(fault_emulators, modal_env):
    """Over TLS the SDK's channels (control plane and command router) verify the emulator's CA."""
    emu = fault_emulators["kill_fail"]
    provider = _provider(emu, modal_env)
    sb = _call(provider, provider.create, {**TAGS, "sandbox_idx": "7"})
    assert _call(provider, provider.run, sb, "node -v", 5.0).stdout.strip() == "v20.18.1"
    grpc_url = json.loads(emu._call("GET", "/modal/grpc"))["url"]
    assert grpc_url.startswith("https://" if emu.ca_file else "http://") and os.environ["MODAL_SERVER_URL"] == grpc_url


def test_sdk_runs_on_the_bridge_with_retries_off(fault_emulators, modal_env):
    """The SDK's coroutines run on loadgen's bridge loop: synchronicity never starts a loop thread."""
    from modal._utils.async_utils import synchronizer

    from loadgen.net.aio import get_bridge

    provider = _provider(fault_emulators["kill_fail"], modal_env)
    assert synchronizer._thread is None and synchronizer._loop is get_bridge().loop
    assert len(provider.retry_settings) == 5, provider.retry_settings


def test_classification_of_sdk_exceptions():
    import asyncio

    import modal.exception as me
    from grpclib import GRPCError, Status
    from grpclib.exceptions import StreamTerminatedError

    from loadgen.providers.modal import classify_modal_exception as classify

    def grpc(status, cls):
        exc = cls("boom")
        exc._grpc_status = status
        return exc

    def c(exc):
        info = classify(exc)
        return info.failure_class, info.http_status, info.error_code

    assert c(grpc(Status.RESOURCE_EXHAUSTED, me.ResourceExhaustedError)) == \
        ("http_error", "RESOURCE_EXHAUSTED", "rate_limited")
    assert c(grpc(Status.UNAVAILABLE, me.ServiceError))[:2] == ("http_error", "UNAVAILABLE")
    assert c(grpc(Status.INTERNAL, me.InternalError))[:2] == ("http_error", "INTERNAL")
    assert c(grpc(Status.NOT_FOUND, me.NotFoundError)) == ("http_error", "NOT_FOUND", "not_found")
    assert c(grpc(Status.DEADLINE_EXCEEDED, me.ServiceError))[:2] == ("timeout", "DEADLINE_EXCEEDED")
    assert c(GRPCError(Status.UNAUTHENTICATED, "no")) == ("http_error", "UNAUTHENTICATED", "unauthorized")
    assert c(me.ExecTimeoutError("late"))[0] == "timeout"
    assert c(asyncio.TimeoutError())[0] == "timeout"
    assert c(me.ConnectionError("Could not connect to the Modal server."))[0] == "network_error"
    assert c(StreamTerminatedError("Stream reset by remote party"))[0] == "network_error"
    assert c(ConnectionRefusedError(111, "refused"))[0] == "network_error"
    assert c(ValueError("?"))[0] == "other"


def test_missing_credentials_is_a_clear_error_and_creates_nothing(tmp_path, monkeypatch):
    for name in CREDS:
        monkeypatch.delenv(name, raising=False)
    with start_emulator("fast", faces="modal") as emu:
        run = run_locust("modal.py", 5, tmp_path, ["--emulator-url", emu.url], timeout=60)
        assert run.returncode != 0
        assert "MODAL_TOKEN_ID" in run.output and "MODAL_TOKEN_SECRET" in run.output, run.output[-2000:]
        assert emu.stats()["requests"] == 0
        assert modal_stats(emu)["rpcs"] == {}


@pytest.mark.parametrize("tls", [False, True], ids=["grpc", "grpc+tls"])
def test_create_command_and_destroy_are_timed_on_the_wire_even_when_the_client_is_busy(modal_env, tls):
    """The create's, each command's and the destroy's times are the wire's: with the bridge's
    loop stalled for 0.5 s while 60 answers arrive (every create on the one control-plane
    connection the SDK multiplexes them over), each latency still equals the emulator's
    service time to within 15 ms. A command is three RPCs one after another (TaskExecStart,
    TaskExecStdioRead, TaskExecWait): its latency is the provider's part of them, and the
    emulator's service time the sum of the three (each from its request's arrival to its
    answer); the timed commands run on the command-router connections a
    first round of commands opened (a command's time includes its connection's set-up when it
    needs one, by design). Over TLS too, where each answer's stamp is its record's."""
    import gevent

    from loadgen.net.aio import get_bridge

    latency = "uniform:300,400"  # later than the last of the burst's requests leaves, on a busy machine too
    with start_emulator("fast", faces="modal", tls=tls, create_latency=latency, exec_latency=latency,
                        kill_latency=latency) as emu:
        provider = _provider(emu, modal_env)
        assert provider.wire_verdicts
        bridge = get_bridge()
        stalls = {}

        def burst(op, coroutines):
            before = emu.stats()["ops"][op]["requests"]
            pending = [bridge.submit(c) for c in coroutines]
            deadline = time.time() + 30
            while emu.stats()["ops"][op]["requests"] < before + len(pending) and time.time() < deadline:
                gevent.sleep(0.01)  # until every request is on the wire (a busy machine sends them slowly)
            marks = stalls[op] = []

            def stall():
                marks.append(time.time())
                time.sleep(0.5)
                marks.append(time.time())

            bridge.loop.call_soon_threadsafe(stall)
            return [p.wait(timeout=60) for p in pending]

        _call(provider, provider.create, {"run_id": "warm", "sandbox_idx": "-1"})  # the SDK's token, once
        n = 60
        handles = burst("create", [provider.create({"run_id": "busy", "sandbox_idx": str(i)}) for i in range(n)])
        [p.wait(timeout=60) for p in [bridge.submit(provider.run(h, "true", 20)) for h in handles]]
        results = burst("exec", [provider.run(h, "node -v", 20) for h in handles])
        assert all(r.exit_code == 0 and r.stdout.startswith("v20.") for r in results)
        assert all(burst("kill", [provider.destroy(h, 20) for h in handles]))
        server = {row["metadata"]["sandbox_idx"]: row for row in emu.sandboxes()
                  if (row.get("metadata") or {}).get("run_id") == "busy"}
    assert len(server) == n
    for operation, op in (("create", "create"), ("run", "exec"), ("destroy", "kill")):
        start, end = stalls[op]
        rows = [row["execs"][-1] for row in server.values()] if operation == "run" else list(server.values())
        if operation == "run":  # three RPCs one after another, each answered before the next came
            assert all(len(r["rpcs"]) == 3 and all(a[1] <= b[0] for a, b in zip(sorted(r["rpcs"]), sorted(r["rpcs"])[1:]))
                       for r in rows), rows[:2]
            answers = [min(r["rpcs"])[1] for r in rows]  # TaskExecStart's: the ones sent before the stall
        else:
            answers = [r["t_answered" if operation == "create" else "t_kill_answered"] for r in rows]
        in_stall = sum(start < t < end for t in answers)
        assert in_stall >= 10, f"{operation}: {in_stall} answers came during the stall: the test proves nothing"
    for operation, errors in wire_errors(provider, handles, server).items():
        assert max(abs(e) for e in errors) < 0.015, (operation, sorted(errors)[:3], sorted(errors)[-3:],
                                                     os.getloadavg())


_ESCAPE_HATCH_SCRIPT = """
import json, sys
from loadgen.net.aio import get_bridge
from loadgen.providers.base import ProviderSettings
from loadgen.providers.modal import ModalProvider
adapter = ModalProvider(ProviderSettings(base_url=sys.argv[1], create_timeout_s=10, sandbox_lifetime_s=600))
adapter.prepare()
assert adapter._setup_error is None, adapter._setup_error
call = lambda coro: get_bridge().call(coro, timeout=20)
handle = call(adapter.create({"run_id": "hatch", "sandbox_idx": "0"}))
result = call(adapter.run(handle, "node -v", 5))
killed = call(adapter.destroy(handle, 5))
print(json.dumps({"exit_code": result.exit_code, "stdout": result.stdout.strip(), "killed": killed,
                  "wire_verdicts": adapter.wire_verdicts,
                  "wire": {op: adapter.wire_times(handle, op) is not None for op in ("create", "run", "destroy")}}))
"""


@pytest.mark.parametrize("env, wire", [({}, True), ({"LOADGEN_MODAL_TRANSPORT": "sdk"}, False),
                                       ({"LOADGEN_MODAL_TRANSPORT": "sdk", "LOADGEN_MODAL_PLAIN_SDK": "1"}, False)],
                         ids=["wire", "sdk", "plain-sdk"])
def test_the_escape_hatch_gives_the_sdk_its_transport_back(env, wire):
    """LOADGEN_MODAL_TRANSPORT=sdk: the SDK's own grpclib transport, timed around the SDK call (a
    subprocess: the switch is read at setup and patches the SDK process-wide)."""
    with start_emulator("fast", faces="modal") as emu:
        out = subprocess.run([sys.executable, "-c", _ESCAPE_HATCH_SCRIPT, emu.url], capture_output=True, text=True,
                             timeout=120, env={**os.environ, **CREDS, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["exit_code"], got["stdout"][:4], got["killed"]) == (0, "v20.", True)
    assert got["wire_verdicts"] is wire
    assert got["wire"] == {"create": wire, "run": wire, "destroy": wire}


_CAPTURE_SCRIPT = """
import json, sys
import grpclib.protocol as P
from loadgen.net.aio import get_bridge
from loadgen.providers.base import ProviderSettings
from loadgen.providers.modal import ModalProvider
sent, by_stream = [], {}
send_request, send_data = P.Stream.send_request, P.Stream.send_data
async def request(self, headers, end_stream=False, **kw):  # what goes into the HEADERS frame, before HPACK
    by_stream[id(self)] = len(sent)
    sent.append([[list(h) for h in headers], []])
    release = await send_request(self, headers, end_stream, **kw)
    sent[by_stream[id(self)]][2]["connection"] = type(self._h2_connection).__name__  # h2's, or its subclass
    return release
async def data(self, payload, end_stream=False):  # the gRPC-framed messages of the DATA frames
    if id(self) in by_stream:
        sent[by_stream[id(self)]][1].append(bytes(payload).hex())
    return await send_data(self, payload, end_stream)
P.Stream.send_request, P.Stream.send_data = request, data
import h2.stream, hpack
decoders, build = {}, h2.stream.H2Stream._build_headers_frames
def frames(self, headers, encoder, first_frame, flags):  # the header block as it goes out, HPACK-decoded
    out = build(self, headers, encoder, first_frame, flags)
    decoder = decoders.setdefault(id(encoder), hpack.Decoder())  # one per connection, fed every block in order
    decoded = decoder.decode(b"".join(f.data for f in out), raw=True)
    if sent and len(sent[-1]) == 2:
        sent[-1].append({"encoder": type(encoder).__name__,
                         "decoded": [[n.decode(), v.decode()] for n, v in decoded]})
    return out
h2.stream.H2Stream._build_headers_frames = frames
adapter = ModalProvider(ProviderSettings(base_url=sys.argv[1], create_timeout_s=10, sandbox_lifetime_s=600))
adapter.prepare()
assert adapter._setup_error is None, adapter._setup_error
call = lambda coro: get_bridge().call(coro, timeout=20)
sent.clear()
handle = call(adapter.create({"run_id": "lean", "sandbox_idx": "0"}))
result = call(adapter.run(handle, "node -v", 5))
killed = call(adapter.destroy(handle, 5))
from modal.config import Config, config
import os
os.environ["MODAL_MAX_THROTTLE_WAIT"] = "7"  # behind the config's back: a cached get keeps the setup's 0
unseen = config.get("max_throttle_wait")
config.override_locally("max_throttle_wait", "5")  # the SDK's own way: seen either way
print(json.dumps({"lean": adapter._lean, "sent": sent, "ok": [result.exit_code, result.stdout.strip(), killed],
                  "config": [hasattr(Config.get, "_loadgen_original"), unseen, config.get("max_throttle_wait")]}))
"""
# differ from one run to the next whoever calls: a fresh uuid, the clock, a JWT with its expiry, the port
_VOLATILE_HEADERS = {"x-idempotency-key", "x-modal-timestamp", "x-modal-auth-token", "authorization", ":authority"}


def _requests_sent(env: dict) -> dict:
    with start_emulator("fast", faces="modal") as emu:  # a fresh one each: the same sandbox ids
        out = subprocess.run([sys.executable, "-c", _CAPTURE_SCRIPT, emu.url], capture_output=True, text=True,
                             timeout=120, env={**os.environ, **CREDS, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _message(path: str, payload_hex: str):
    """A request's message from its gRPC framing, with the exec id (a fresh uuid per command) cleared."""
    from modal_proto import api_pb2, task_command_router_pb2

    payload = bytes.fromhex(payload_hex)
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == len(payload) - 5
    name = path.rsplit("/", 1)[1]
    module = task_command_router_pb2 if "TaskCommandRouter" in path else api_pb2
    cls = getattr(module, name + "Request", None) or getattr(module, name.removesuffix("V2") + "Request")
    message = cls.FromString(payload[5:])
    if "exec_id" in cls.DESCRIPTOR.fields_by_name:
        message.ClearField("exec_id")
    return message


def test_the_lean_calls_send_what_the_plain_sdk_sends():
    """The adapter calls the SDK's implementation objects beneath synchronicity's wrappers; with
    LOADGEN_MODAL_PLAIN_SDK=1 it goes through the wrappers (.aio). One lifecycle each: the same RPCs in
    the same order, the same headers (metadata) and the same messages, but for what is fresh per call; and
    on the wire, HPACK-decoded as the peer decodes them, the same header fields as grpclib gave h2."""
    lean, plain = _requests_sent({}), _requests_sent({"LOADGEN_MODAL_PLAIN_SDK": "1"})
    assert (lean["lean"], plain["lean"]) == (True, False)
    assert lean["ok"] == plain["ok"] == [0, "v20.18.1", True]
    # the SDK's config: cached with the lean calls (the environment read at setup), read anew with the plain SDK
    assert (lean["config"], plain["config"]) == ([True, 0, 5], [False, 7, 5])
    paths = [dict(map(tuple, headers))[":path"] for headers, *_ in lean["sent"]]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["AuthTokenGet", "SandboxCreateV2", "TaskExecStart",
                                                    "TaskExecStdioRead", "TaskExecWait", "SandboxTerminateV2"]
    assert len(plain["sent"]) == len(lean["sent"])
    for path, (lean_headers, lean_data, lean_wire), (plain_headers, plain_data, plain_wire) in zip(
            paths, lean["sent"], plain["sent"]):
        # HPACK: the lean calls' stateless encoder, the SDK's h2 encoder with LOADGEN_MODAL_PLAIN_SDK=1; what
        # the peer decodes is, both ways, exactly the header fields grpclib gave h2, in order
        assert (lean_wire["encoder"], plain_wire["encoder"]) == ("StatelessEncoder", "Encoder"), path
        # the open streams counted by streamcount's amortised count with the lean calls, by h2's walk without
        assert (lean_wire["connection"], plain_wire["connection"]) == ("AmortisedCountH2Connection",
                                                                       "H2Connection"), path
        assert lean_wire["decoded"] == lean_headers and plain_wire["decoded"] == plain_headers, path
        assert [h[0] for h in lean_headers] == [h[0] for h in plain_headers], path
        assert ({k: v for k, v in lean_headers if k not in _VOLATILE_HEADERS}
                == {k: v for k, v in plain_headers if k not in _VOLATILE_HEADERS}), path
        assert [_message(path, d) for d in lean_data] == [_message(path, d) for d in plain_data], path


@pytest.mark.skipif(not os.environ.get("LOADGEN_SLOW_TESTS"), reason="set LOADGEN_SLOW_TESTS=1 (about a minute)")
def test_hub_lag_at_1000_sandboxes(tmp_path):
    with start_emulator("fast", faces="modal") as emu:
        run = run_locust("modal.py", 1000, tmp_path, ["--emulator-url", emu.url], env=CREDS, timeout=300)
    assert run.returncode == 0, run.output[-4000:]
    assert collections.Counter(r["status"] for r in run.records) == {"success": 1000}
    summary = run.meta["metrics_summary"]["processes"]["local"]
    print(f"hub lag at 1000 sandboxes: p99 {summary['hub_lag_p99_ms']} ms, max {summary['hub_lag_max_ms']} ms, "
          f"cpu max {summary['cpu_percent_max']}%")
