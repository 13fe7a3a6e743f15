"""codesandbox: the real `together-sandbox` SDK, through loadgen's adapter, against
the emulator's codesandbox face; and real Locust runs through tests/locust_harness.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import uuid

import pytest

from loadgen.emulator import start_emulator
from loadgen.emulator.faces.codesandbox import public_id
from loadgen.providers.base import ProviderSettings
from loadgen.providers.codesandbox import CodeSandboxProvider
from tests.emulator_fixtures import request
from tests.locust_harness import free_port, run_locust
from tests.protocol_fixtures import speaking, spoke, uses_tls
from tests.tap import Tap, sent_lean_and_plain

pytestmark = pytest.mark.timeout(180)

KEY = "csb_test_key"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)


def provider(url: str, **settings) -> CodeSandboxProvider:
    p = CodeSandboxProvider(ProviderSettings(base_url=url, users_in_process=10, **settings))
    p.setup()
    return p


async def attempt(p: CodeSandboxProvider, coro, timeout: float = 10.0):
    """(value, None) or (None, ErrorInfo) as the lifecycle would classify it."""
    try:
        return await asyncio.wait_for(coro, timeout), None
    except Exception as exc:  # noqa: BLE001
        return None, p.classify(exc)


# ---------------------------------------------------------------------------
# Chaos: a real Locust run, its records against the emulator's ground truth

# the first of a sandbox's faults decides its record: (status, failure_class, http_status)
EXPECTED_BY_FAULT = {
    "create_5xx": ("failed", "http_error", 500),
    "create_hang": ("failed", "timeout", None),
    "reset": ("failed", "network_error", None),
    "readiness_fail": ("readiness_failed", "other", None),
    "died": ("partial", "http_error", 502),
}


def test_chaos_run_statuses_match_the_ground_truth(tmp_path):
    users = 200
    with start_emulator("chaos", seed=11, faces="codesandbox") as emu:
        run = run_locust("codesandbox.py", users, tmp_path, [
            "--emulator-url", emu.url, "--run-id", "csb-chaos", "--create-timeout", "3",
            "--late-create-window", "1", "--command-timeout", "5", "--hold", "2",
        ], env={"TOGETHER_API_KEY": KEY}, timeout=150)
        truth = emu.sandboxes()
        stats = emu.stats()
    assert run.returncode == 0, run.output[-4000:]
    records = {r["sandbox_idx"]: r for r in run.records}
    # every create carried run_id and sandbox_idx, so each record joins its server record
    assert len(truth) == users and {s["metadata"]["run_id"] for s in truth} == {"csb-chaos"}
    by_idx = {int(s["metadata"]["sandbox_idx"]): s for s in truth}
    assert set(records) == set(by_idx) == set(range(users))

    expected_status = collections.Counter()
    injected = collections.Counter()
    for idx, rec in records.items():
        server = by_idx[idx]
        primary = next((f for f in server["faults"] if f in EXPECTED_BY_FAULT), None)
        injected[primary] += 1
        status, failure_class, http_status = EXPECTED_BY_FAULT.get(primary, ("success", None, None))
        expected_status[status] += 1
        assert (rec["status"], rec["failure_class"], rec["http_status"]) == (status, failure_class, http_status), \
            (idx, server["faults"], rec)
        if server["sandbox_id"] is not None:
            assert rec["sandbox_id"] == public_id(server["sandbox_id"])
            assert server["lifetime_s"] > 600  # ttl = the run's sandbox lifetime
        else:
            assert rec["sandbox_id"] is None
        if "kill_fail" in server["faults"]:
            assert rec["destroy_ok"] is False, (idx, rec)
        elif rec["sandbox_id"]:
            assert rec["destroy_ok"] is True and server["state"] in ("killed", "died"), (idx, rec, server)
    # the counts of raw.jsonl are the counts the server's faults predict
    assert collections.Counter(r["status"] for r in records.values()) == expected_status
    assert all(injected[f] > 0 for f in EXPECTED_BY_FAULT), injected
    assert run.meta["status_histogram"] == {k: v for k, v in expected_status.items() if v}
    # nothing leaked except where the emulator refused the terminate
    assert stats["live"] == sum(1 for r in records.values() if r["sandbox_id"] and r["destroy_ok"] is False)


# ---------------------------------------------------------------------------
# Fault mapping: each fault at 100%, through the real SDK and the adapter

@pytest.mark.parametrize("protocol", ["h1", "h2", "tls", "h2+tls"])
def test_each_fault_maps_to_its_class_and_status(protocol):
    """Over each protocol httpx speaks: HTTP/1.1 or HTTP/2, cleartext or TLS (the SSE stream included)."""
    spoken = []

    @contextlib.contextmanager
    def emulator(**overrides):
        with start_emulator("fast", faces="codesandbox", tls=uses_tls(protocol), **overrides) as emu, \
                speaking(protocol, emu):
            yield emu
            spoken.append(spoke(emu.stats(), protocol))

    async def lifecycle(p, second_probe="node -v", pause=0.0):
        out = {}
        out["create"] = await attempt(p, p.create({"run_id": "faults", "sandbox_idx": "1"}))
        handle = out["create"][0]
        if handle is None:
            return out
        out["readiness"] = await attempt(p, p.run(handle, "node -v", 5))
        await asyncio.sleep(pause)
        out["liveness"] = await attempt(p, p.run(handle, second_probe, 5))
        out["destroy"] = await attempt(p, p.destroy(handle, 5))
        return out

    def case(settings=None, **overrides):
        with emulator(**overrides) as emu:
            p = provider(emu.url, **(settings or {}))
            return asyncio.run(lifecycle(p)), emu.stats()

    def error(result):
        value, info = result
        assert value is None and info is not None, result
        return info.failure_class, info.http_status, info.error_code

    # 429 over the concurrency limit (the first sandbox takes the only slot)
    with emulator(capacity=1) as emu:
        p = provider(emu.url)

        async def two():
            first, _ = await attempt(p, p.create({"run_id": "faults", "sandbox_idx": "0"}))
            second = await attempt(p, p.create({"run_id": "faults", "sandbox_idx": "1"}))
            await p.destroy(first, 5)
            return second

        assert error(asyncio.run(two())) == ("http_error", 429, "rate_limited")

    out, stats = case(fault_create_5xx=1.0)
    assert error(out["create"]) == ("http_error", 500, "internal_error")
    assert stats["ops"]["create"]["requests"] == 1  # the SDK did not retry

    # a hang: the SDK's own deadline (create timeout + late-create window) fires
    out, stats = case({"create_timeout_s": 0.5, "late_create_window_s": 0.5}, fault_create_hang=1.0)
    assert error(out["create"])[0] == "timeout" and stats["hung"] == 1

    out, stats = case(fault_reset=1.0)
    assert error(out["create"]) == ("network_error", None, None)
    assert stats["ops"]["create"]["requests"] == 1

    # nobody listening: the SDK wraps the ConnectError as HttpError(status 0)
    closed = provider(f"http://127.0.0.1:{free_port()}")
    _, info = asyncio.run(attempt(closed, closed.create({"run_id": "faults", "sandbox_idx": "2"})))
    assert (info.failure_class, info.http_status, info.error_type) == ("network_error", None, "ConnectError")

    out, _ = case(fault_readiness=1.0)  # exit 1: the lifecycle makes it readiness_failed / exit_1
    (result, info), liveness = out["readiness"], out["liveness"]
    assert info is None and result.exit_code == 1 and "emulated readiness fault" in result.stdout
    assert liveness[0].exit_code == 0 and liveness[0].stdout.strip() == "v20.18.1"

    out, _ = case(fault_readiness=1.0, readiness_fail_mode="stream_error")
    assert error(out["readiness"]) == ("other", None, "no_exit_code")

    out, _ = case(fault_died=1.0)
    assert out["readiness"][0].exit_code == 0
    assert error(out["liveness"]) == ("http_error", 502, "sandbox_gone")
    assert out["destroy"] == (True, None)  # terminate of a terminated sandbox is idempotent

    # the sandbox dies while a command runs: the stream's connection breaks
    with emulator(fault_died=1.0, died_delay_s=0.3) as emu:
        out = asyncio.run(lifecycle(provider(emu.url), second_probe="sleep 3"))
    assert error(out["liveness"]) == ("network_error", None, None)

    out, stats = case(fault_kill=1.0)
    assert error(out["destroy"]) == ("http_error", 500, "internal_error")
    assert stats["live"] == 1  # a failed terminate leaks, as in production
    assert spoken and all(spoken), (protocol, spoken)


def test_destroy_of_a_sandbox_the_service_forgot_returns_false():
    with start_emulator("fast", faces="codesandbox") as emu:
        p = provider(emu.url)

        async def main():
            handle = await p.create({"run_id": "r", "sandbox_idx": "0"})
            emu.reset()  # blocking urllib call: fine, nothing else runs meanwhile
            return await p.destroy(handle, 5)

        assert asyncio.run(main()) is False


def _lifecycle_on_the_wire(tap: Tap, plain: bool, monkeypatch) -> list:
    """A create, a command and a destroy, as sent; the sandbox's id, its agent's token and per-request
    ids replaced."""
    monkeypatch.delenv("LOADGEN_CODESANDBOX_TRANSPORT", raising=False)
    p = provider(tap.url)
    assert p.wire_verdicts and p.lean is not plain

    async def main():
        handle = await p.create({"run_id": "tap", "sandbox_idx": "0"})
        result = await p.run(handle, "node -v", 10)
        assert await p.destroy(handle, 10) is True
        return handle, result

    handle, result = asyncio.run(main())
    assert (result.exit_code, result.stdout) == (0, "v20.18.1\n")
    agent = handle.sandbox.vm_info.agent
    normalised = []
    for lines, body in tap.requests():
        text = "\r\n".join(lines).replace(handle.sandbox_id, "<id>").replace(agent.token, "<token>")
        normalised.append((_EXEC_ID.sub("<exec>", text).split("\r\n"), body))
    return normalised


_EXEC_ID = re.compile(r"/execs/[^/ ]+")


def test_the_lean_client_sends_what_httpx_sends(monkeypatch):
    """With the lean client (its URL merge and cookie reading) and with LOADGEN_CODESANDBOX_PLAIN_SDK=1
    (httpx's own client class), on the same timed transport: the same requests, each with the same method,
    path, headers (names, values, order) and body."""
    lean, plain = sent_lean_and_plain("codesandbox", "LOADGEN_CODESANDBOX_PLAIN_SDK",
                                      lambda tap, plain: _lifecycle_on_the_wire(tap, plain, monkeypatch), monkeypatch)
    assert [lines[0] for lines, _ in lean] == [
        "POST /v1/sandboxes HTTP/1.1", "POST /v1/sandboxes/<id>/wait HTTP/1.1",
        "POST /csb-agent/<id>/api/v1/execs HTTP/1.1", "GET /csb-agent/<id>/api/v1/stream<exec>/io HTTP/1.1",
        "POST /v1/sandboxes/<id>/terminate HTTP/1.1", "POST /v1/sandboxes/<id>/wait HTTP/1.1"]
    assert lean == plain


def test_the_lean_client_keeps_the_cookies_an_answer_sets():
    """The lean cookie jar reads only answers that set a cookie, and keeps what they set, as httpx's does:
    a real HTTP server sets a cookie on one answer, and the client sends it back from then on."""
    import http.server
    import threading

    import httpx

    from loadgen.providers.codesandbox import _lean_client_class

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"path": self.path, "cookie": self.headers.get("cookie")}).encode()
            self.send_response(200)
            if self.path.endswith("/set"):
                self.send_header("Set-Cookie", "route=b7; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def main():
        async with _lean_client_class()(base_url=f"http://127.0.0.1:{server.server_port}/v1",
                                        transport=httpx.AsyncHTTPTransport()) as client:
            assert client._lean_root == "/v1/"  # the lean merge is on
            return [(await client.get(path)).json() for path in ("/echo", "/set", "/echo")]

    try:
        answers = asyncio.run(main())
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [{"path": "/v1/echo", "cookie": None}, {"path": "/v1/set", "cookie": None},
                       {"path": "/v1/echo", "cookie": "route=b7"}]


# ---------------------------------------------------------------------------
# The face: wire details, bad input, and sharing a process with the e2b face

def test_face_wire_and_bad_input():
    with start_emulator("fast", faces="codesandbox", capacity=1) as emu:
        url = emu.url
        post = lambda path, body, headers=BEARER: request(url, "POST", path, json.dumps(body).encode(),  # noqa: E731
                                                          dict(headers, **{"Content-Type": "application/json"}),
                                                          api_key=None)
        status, _, body = post("/v1/sandboxes", {"tags": {"run_id": "w", "sandbox_idx": "0"}, "ttl": 60})
        assert status == 201
        created = json.loads(body)
        sid = created["id"]
        uuid.UUID(sid)
        assert created["status"] == "starting" and created["agent"]["url"] is None and created["ttl"] == 60
        status, _, body = post(f"/v1/sandboxes/{sid}/wait", {})
        running = json.loads(body)
        assert status == 200 and running["status"] == "running"
        agent = running["agent"]
        assert agent["url"] == f"{url}/csb-agent/{sid}" and agent["token"]
        # over capacity: 429 with Retry-After
        status, headers, body = post("/v1/sandboxes", {})
        assert status == 429 and int(headers["retry-after"]) >= 1 and json.loads(body)["code"] == "rate_limited"
        # bad input
        assert post("/v1/sandboxes", {"cpu": 99})[0] == 400
        assert post("/v1/sandboxes", {"ttl": -1})[0] == 400
        assert post("/v1/sandboxes", {"tags": {"a": 1}})[0] == 400
        assert post("/v1/sandboxes", {"snapshot_id": "not-a-uuid"})[0] == 400
        assert request(url, "POST", "/v1/sandboxes", b"{nope", BEARER, api_key=None)[0] == 400
        assert post("/v1/sandboxes", {}, headers={})[0] == 401
        assert post(f"/v1/sandboxes/{uuid.uuid4()}/terminate", {})[0] == 404
        agent_path = f"/csb-agent/{sid}/api/v1/execs"
        assert post(agent_path, {"command": "node", "args": ["-v"]})[0] == 401  # the API key is not the agent token
        agent_auth = {"Authorization": f"Bearer {agent['token']}"}
        assert post(agent_path, {"command": 7}, headers=agent_auth)[0] == 400
        status, _, body = post(agent_path, {"command": "bash", "args": ["-lc", "echo hi; exit 3"]}, agent_auth)
        assert status == 201
        exec_id = json.loads(body)["id"]
        status, headers, body = request(url, "GET", f"/csb-agent/{sid}/api/v1/stream/execs/{exec_id}/io",
                                        headers=agent_auth, api_key=None)
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len(b"data: "):]) for line in body.split(b"\n\n") if line]
        assert events[0]["output"] == "hi\n" and events[-1]["exitCode"] == 3
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        status, _, body = post(f"/v1/sandboxes/{sid}/terminate", {"snapshot": None})
        assert status == 200 and json.loads(body)["status"] == "terminating"
        status, _, body = post(f"/v1/sandboxes/{sid}/wait", {})
        assert json.loads(body)["status"] == "terminated"
        assert json.loads(body)["status_reason"] == "termination_requested"
        assert post(agent_path, {"command": "node", "args": ["-v"]}, agent_auth)[0] == 502  # gone
        errors = emu.stats()["errors"]
    assert errors["bad_request"] == 6 and errors["unauthorized"] == 2 and errors["not_found"] == 1


@pytest.mark.parametrize("faces", ["e2b,codesandbox", "codesandbox,e2b"])
def test_e2b_and_codesandbox_share_one_emulator(faces, monkeypatch):
    from e2b import AsyncSandbox

    from tests.emulator_fixtures import sdk_opts

    monkeypatch.delenv("E2B_DEBUG", raising=False)
    with start_emulator("fast", faces=faces) as emu:
        p = provider(emu.url)

        async def main():
            e2b = await AsyncSandbox.create(metadata={"run_id": "mix", "sandbox_idx": "0"}, **sdk_opts(emu.url))
            csb = await p.create({"run_id": "mix", "sandbox_idx": "1"})
            outputs = [(await e2b.commands.run("node -v")).stdout, (await p.run(csb, "node -v", 5)).stdout]
            return outputs, await e2b.kill(), await p.destroy(csb, 5)

        outputs, e2b_killed, csb_destroyed = asyncio.run(main())
        truth = emu.sandboxes()
        stats = emu.stats()
    assert [o.strip() for o in outputs] == ["v20.18.1", "v20.18.1"] and e2b_killed and csb_destroyed
    assert sorted(s["provider"] for s in truth) == ["codesandbox", "e2b"]
    assert stats["killed"] == 2 and stats["live"] == 0 and sum(stats["errors"].values()) == 0


# ---------------------------------------------------------------------------
# Missing credentials

def test_missing_credentials_name_the_variable_and_create_nothing(tmp_path):
    with start_emulator("fast", faces="codesandbox") as emu:
        env = {k: v for k, v in os.environ.items()}
        env["TOGETHER_API_KEY"] = ""
        run = run_locust("codesandbox.py", 5, tmp_path, ["--emulator-url", emu.url], env=env, timeout=60)
        requests = emu.stats()["requests"]
    assert run.returncode != 0
    assert "TOGETHER_API_KEY" in run.output
    assert requests == 0


# ---------------------------------------------------------------------------
# Hub lag at 1,000 concurrent sandboxes (slow: run with LOADGEN_SLOW_TESTS=1)

@pytest.mark.skipif(not os.environ.get("LOADGEN_SLOW_TESTS"), reason="slow: set LOADGEN_SLOW_TESTS=1")
@pytest.mark.parametrize("profile", ["fast", "realistic-codesandbox"])
def test_hub_lag_at_1000_sandboxes(tmp_path, profile):
    with start_emulator(profile, faces="codesandbox") as emu:
        run = run_locust("codesandbox.py", 1000, tmp_path, ["--emulator-url", emu.url, "--hold", "10"],
                         env={"TOGETHER_API_KEY": KEY}, timeout=600)
    assert run.returncode == 0, run.output[-4000:]
    meta = run.meta
    assert meta["status_histogram"]["success"] == 1000
    local = meta["metrics_summary"]["processes"]["local"]
    print(f"\n{profile}: hub lag p99 {local['hub_lag_p99_ms']} ms, max {local['hub_lag_max_ms']} ms, "
          f"CPU mean {local['cpu_percent_mean']}%, load {local['loadavg_1m_max']}, "
          f"held max {local['held_max']}")
