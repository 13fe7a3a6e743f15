"""The e2b adapter: the real e2b SDK, driven from gevent greenlets through loadgen's asyncio bridge.

Over HTTP/1.1 in cleartext and over TLS (the emulator's CA trusted through
SSL_CERT_FILE) on loadgen's timed client; over HTTP/2 with the SDK's own
pyqwest transport, which speaks it by ALPN (tests/protocol_fixtures.py).
"""

import contextlib
import json
import os
import subprocess
import sys
import time

import gevent
import pytest

from loadgen.net.aio import get_bridge
from loadgen.emulator import start_emulator
from loadgen.providers.base import ProviderSettings
from loadgen.providers.e2b import E2BProvider
from tests.adapter_matrix import run_matrix
from tests.protocol_fixtures import client_env, speaking, spoke, uses_tls
from tests.wire_timing import wire_errors


def make_adapter(url, **kw):
    settings = ProviderSettings(base_url=url, users_in_process=600, create_timeout_s=5, late_create_window_s=0, **kw)
    adapter = E2BProvider(settings)
    adapter.prepare()
    return adapter


@contextlib.contextmanager
def e2b_emulator(protocol, **settings):
    """An emulator serving `protocol`, and this process's environment set to speak it."""
    with start_emulator("fast", tls=uses_tls(protocol), **settings) as emu, speaking(protocol, emu):
        yield emu
        assert spoke(emu.stats(), protocol)  # the timed client: HTTP/2 to the API exactly when asked for


def lifecycle(adapter, idx):
    call = lambda coro, t=10: get_bridge().call(coro, timeout=t)  # noqa: E731
    handle = call(adapter.create({"run_id": "adapter-test", "sandbox_idx": str(idx)}))
    result = call(adapter.run(handle, "node -v", 5))
    killed = call(adapter.destroy(handle, 5))
    return result.exit_code, result.stdout.strip(), killed


def test_500_concurrent_lifecycles_from_greenlets(monkeypatch, emulator):
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")
    adapter = make_adapter(emulator.url)
    greenlets = [gevent.spawn(lifecycle, adapter, i) for i in range(500)]
    gevent.joinall(greenlets, timeout=120, raise_error=True)
    results = [g.value for g in greenlets]
    assert all(code == 0 and out.startswith("v20.") and killed is True for code, out, killed in results)
    stats = emulator.stats()
    assert stats["created"] == 500 and stats["killed"] == 500 and stats["live"] == 0


@pytest.mark.parametrize("fault, expected", [
    ({"rate_limit_per_s": 0.001, "rate_limit_burst": 1}, ("http_error", 429)),
    ({"fault_create_5xx": 1.0}, ("http_error", 500)),
    ({"fault_reset": 1.0}, ("network_error", None)),
    ({"fault_kill": 1.0}, ("http_error", 500)),
])
@pytest.mark.parametrize("protocol", ["h1", "tls", "h2+tls"])
def test_faults_are_classified(monkeypatch, fault, expected, protocol):
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")
    with e2b_emulator(protocol, **fault) as emu:
        adapter = make_adapter(emu.url)
        bridge = get_bridge()
        if "rate_limit_per_s" in fault:  # the first create takes the only token
            bridge.call(adapter.create({"run_id": "r", "sandbox_idx": "0"}), timeout=10)
        try:
            handle = bridge.call(adapter.create({"run_id": "r", "sandbox_idx": "1"}), timeout=10)
            bridge.call(adapter.destroy(handle, 5), timeout=10)
        except Exception as exc:  # noqa: BLE001
            info = adapter.classify(exc)
        else:
            pytest.fail("no exception")
    assert (info.failure_class, info.http_status) == expected


@pytest.mark.parametrize("protocol", ["h1", "tls", "h2+tls"])
def test_dead_sandbox_is_classified_as_gone(monkeypatch, protocol):
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")
    with e2b_emulator(protocol, fault_died=1.0) as emu:
        adapter = make_adapter(emu.url)
        bridge = get_bridge()
        handle = bridge.call(adapter.create({"run_id": "r", "sandbox_idx": "0"}), timeout=10)
        assert bridge.call(adapter.run(handle, "node -v", 5), timeout=10).exit_code == 0
        with pytest.raises(Exception) as caught:
            bridge.call(adapter.run(handle, "node -v", 5), timeout=10)
        info = adapter.classify(caught.value)
        assert (info.failure_class, info.error_code) == ("http_error", "sandbox_gone")


@pytest.mark.parametrize("protocol", ["h1", "tls", "h2+tls"])
def test_create_hang_times_out(monkeypatch, protocol):
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")
    with e2b_emulator(protocol, fault_create_hang=1.0) as emu:
        adapter = make_adapter(emu.url)
        adapter._opts["request_timeout"] = 1.0
        with pytest.raises(Exception) as caught:
            get_bridge().call(adapter.create({"run_id": "r", "sandbox_idx": "0"}), timeout=10)
        assert adapter.classify(caught.value).failure_class == "timeout"


@pytest.mark.parametrize("protocol", ["h1", "tls", "h2+tls"])
def test_create_command_and_destroy_are_timed_on_the_wire_even_when_the_client_is_busy(monkeypatch, protocol):
    """The create's, the command's and the destroy's (sent, answered) times are
    the wire's: with the bridge's loop stalled for 0.5 s while 100 answers
    arrive, each measured latency still equals the emulator's service time to
    within a few milliseconds (TCP_INFO's jiffy on the server's side); over
    TLS too, where the answer's stamp is that of its encrypted bytes. (A
    command's time includes its connection's set-up when it needed one, TLS
    handshake and all, by design: over TLS the timed commands therefore run
    on connections a first round of commands opened, 60 sandboxes, within
    the pool's 64 idle connections per host.)"""
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")

    def burst(operation, coroutines, handles=None):
        op = {"create": "create", "run": "exec", "destroy": "kill"}[operation]
        before = emu.stats()["ops"][op]["requests"]
        pending = [bridge.submit(c) for c in coroutines]
        deadline = time.time() + 20
        while emu.stats()["ops"][op]["requests"] < before + len(pending) and time.time() < deadline:
            gevent.sleep(0.01)  # until every request is on the wire (a busy machine sends them slowly)
        bridge.loop.call_soon_threadsafe(time.sleep, 0.5)
        values = [p.wait(timeout=30) for p in pending]
        read_late = time.time()
        assert read_late - max(adapter.wire_times(h, operation)[1] for h in (handles or values)) > 0.2, \
            "the loop was not stalled: the test proves nothing"
        return values

    with e2b_emulator(protocol, create_latency="uniform:150,250", exec_latency="uniform:150,250",
                      kill_latency="uniform:150,250") as emu:
        adapter = make_adapter(emu.url)
        bridge = get_bridge()
        bridge.call(adapter.create({"run_id": "warm", "sandbox_idx": "-1"}), timeout=10)
        n = 100 if protocol == "h1" else 60
        handles = burst("create", [adapter.create({"run_id": "busy", "sandbox_idx": str(i)}) for i in range(n)])
        if uses_tls(protocol):
            [p.wait(timeout=30) for p in [bridge.submit(adapter.run(h, "true", 10)) for h in handles]]
        results = burst("run", [adapter.run(h, "node -v", 10) for h in handles], handles)
        assert all(r.exit_code == 0 for r in results)
        assert all(burst("destroy", [adapter.destroy(h, 10) for h in handles], handles))
        server = {row["metadata"]["sandbox_idx"]: row for row in emu.sandboxes()
                  if (row.get("metadata") or {}).get("run_id") == "busy"}
    assert len(server) == n
    for operation, errors in wire_errors(adapter, handles, server).items():
        assert max(abs(e) for e in errors) < 0.015, (operation, sorted(errors)[-5:])


_ESCAPE_HATCH_SCRIPT = """
import json, sys
from loadgen.net.aio import get_bridge
from loadgen.providers.base import ProviderSettings
from loadgen.providers.e2b import E2BProvider
adapter = E2BProvider(ProviderSettings(base_url=sys.argv[1], users_in_process=10, create_timeout_s=5,
                                       late_create_window_s=0))
adapter.prepare()
call = lambda coro: get_bridge().call(coro, timeout=10)
handle = call(adapter.create({"run_id": "hatch", "sandbox_idx": "0"}))
result = call(adapter.run(handle, "node -v", 5))
killed = call(adapter.destroy(handle, 5))
print(json.dumps({"exit_code": result.exit_code, "stdout": result.stdout.strip(), "killed": killed,
                  "wire": {op: adapter.wire_times(handle, op) is not None for op in ("create", "run", "destroy")}}))
"""


def test_a_fresh_gevent_process_speaks_http2_to_the_api_over_tls():
    """As a locust worker runs it: gevent patched, the adapter's exchanges on the bridge's thread, HTTP/2's
    modules (wiregrpc's, which may run a subprocess at import: gevent allows that on the main thread
    only) imported with the adapter."""
    with start_emulator("fast", tls=True) as emu:
        out = subprocess.run([sys.executable, "-c", "from gevent import monkey; monkey.patch_all()\n"
                              + _ESCAPE_HATCH_SCRIPT, emu.url], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "E2B_API_KEY": "e2b_test_key", "SSL_CERT_FILE": emu.ca_file,
                                  "LOADGEN_WIRE_HTTP2": "alpn"})
        assert out.returncode == 0, out.stderr[-2000:]
        opened = emu.stats()["server"]["connections_by_protocol"]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["exit_code"], got["stdout"][:4], got["killed"]) == (0, "v20.", True)
    assert opened["h2"] == 1  # the API's create and kill on one HTTP/2 connection (envd's on HTTP/1.1)


@pytest.mark.parametrize("env, wire", [
    ({"LOADGEN_E2B_TRANSPORT": "pyqwest"}, {"create": True, "run": False, "destroy": True}),
    ({"LOADGEN_E2B_PLAIN_SDK": "1"}, {"create": False, "run": False, "destroy": False}),
])
def test_escape_hatches_still_run_a_whole_lifecycle(emulator, env, wire):
    """The switches back to the SDK's own transport (read once per process, hence a subprocess)."""
    out = subprocess.run([sys.executable, "-c", _ESCAPE_HATCH_SCRIPT, emulator.url], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "E2B_API_KEY": "e2b_test_key", **env})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["exit_code"], got["stdout"][:4], got["killed"]) == (0, "v20.", True)
    assert got["wire"] == wire


_IDLE_CAP_SCRIPT = """
import asyncio, json, os, sys
import loadgen.providers.e2b as e2b
from loadgen.net.aio import get_bridge
from loadgen.providers.base import ProviderSettings
from tests.tcp_states import time_wait_sockets_towards
url, n, floor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if floor:  # the control: E2B_MAX_CONNECTIONS = max(_POOL_FLOOR, 2 * users_in_process) = floor
    e2b._POOL_FLOOR = floor
adapter = e2b.E2BProvider(ProviderSettings(base_url=url, users_in_process=1 if floor else n, create_timeout_s=20,
                                           late_create_window_s=0))
adapter.prepare()


async def lifecycles():  # every sandbox in flight at once, each step of theirs together
    handles = await asyncio.gather(*(adapter.create({"run_id": "idle", "sandbox_idx": str(i)}) for i in range(n)))
    results = []
    for _ in range(2):
        results += await asyncio.gather(*(adapter.run(h, "node -v", 20) for h in handles))
    killed = await asyncio.gather(*(adapter.destroy(h, 20) for h in handles))
    return [r.exit_code for r in results], killed


codes, killed = get_bridge().call(lifecycles(), timeout=90)
print(json.dumps({"cap": int(os.environ["E2B_MAX_CONNECTIONS"]), "exit_codes": sorted(set(codes)),
                  "killed": all(killed), "time_wait": time_wait_sockets_towards(int(url.rsplit(":", 1)[1]))}),
      flush=True)
if sys.argv[4:] == ["abrupt"]:  # an exit that runs nothing more: the kernel closes the sockets
    os._exit(0)
"""


def test_e2b_commands_reuse_idle_data_plane_connections_up_to_the_cap():
    """Against one shared data-plane origin (the emulator), envd's pool keeps as many idle connections as
    E2B_MAX_CONNECTIONS (the adapter's pool size, at least 1,000), not the SDK's 64: 200 sandboxes in flight
    at once, each running two commands, open one data-plane connection each, the second command on the
    first's connection. The control, the same run with the cap lowered to 8 (the adapter's floor lowered:
    it sets E2B_MAX_CONNECTIONS itself), opens a connection for nearly every command, the connections
    beyond the cap closed by a reset (no TIME_WAIT socket left). Over TLS with HTTP/2 by ALPN, so the
    API's exchanges ride HTTP/2 and every HTTP/1.1 connection the emulator accepts is envd's. In a fresh
    process each (the pool is built once per process); counts, never timings; a command's 400-500 ms
    keep each round's commands in flight together on a slow machine."""
    n = 200
    runs = {}
    for name, floor in (("default", 0), ("capped", 8)):
        with e2b_emulator("h2+tls", exec_latency="uniform:400,500") as emu:
            before = emu.stats()["server"]["connections_by_protocol"]["http/1.1"]
            out = subprocess.run([sys.executable, "-c", _IDLE_CAP_SCRIPT, emu.url, str(n), str(floor)],
                                 capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                                     os.path.abspath(__file__))), env={**os.environ, "E2B_API_KEY": "e2b_test_key"})
            assert out.returncode == 0, out.stderr[-2000:]
            stats = emu.stats()
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert (got["exit_codes"], got["killed"]) == ([0], True), got
        assert (stats["created"], stats["killed"], stats["ops"]["exec"]["requests"]) == (n, n, 2 * n)
        # (less the stats request that read them: a connection of its own)
        runs[name] = dict(got, opened=stats["server"]["connections_by_protocol"]["http/1.1"] - before - 1)
    default, capped = runs["default"], runs["capped"]
    assert (default["cap"], capped["cap"]) == (1000, 8)
    assert default["opened"] <= n, runs  # at most one per sandbox in flight: no second command opened one
    assert capped["opened"] >= 1.5 * n, runs  # ~2n - 8: the cap is what made the commands reuse them
    assert default["time_wait"] == capped["time_wait"] == 0, runs


def test_a_generator_that_exits_resets_its_idle_connections_instead_of_leaving_time_wait():
    """The pools keep their idle connections to the end (a control plane's: one per create in flight), and
    an exit that closed each with a FIN would leave this host a TIME_WAIT socket apiece for 60 s, towards
    the address the next run from this host talks to. wirehttp resets them at the process's exit. The
    control: the same run ended by os._exit (nothing runs at exit), where the kernel closes them."""
    from tests.tcp_states import time_wait_sockets_towards

    n = 100
    left = {}
    for how in ("exit", "abrupt"):
        with e2b_emulator("h1") as emu:
            out = subprocess.run([sys.executable, "-c", _IDLE_CAP_SCRIPT, emu.url, str(n), "0", how],
                                 capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                                     os.path.abspath(__file__))), env={**os.environ, "E2B_API_KEY": "e2b_test_key"})
            assert out.returncode == 0, out.stderr[-2000:]
            got = json.loads(out.stdout.strip().splitlines()[-1])
            assert (got["exit_codes"], got["killed"], got["time_wait"]) == ([0], True, 0), got
            left[how] = time_wait_sockets_towards(int(emu.url.rsplit(":", 1)[1]))
    assert left["exit"] == 0, left
    # the control: the kernel's close of idle connections leaves TIME_WAIT sockets. How many the pools held
    # idle at the end moves with how fast the creates were answered (9 to ~n seen), so only a few are asked for
    assert left["abrupt"] >= 5, left


# ---------------------------------------------------------------------------
# HTTP/2: the SDK exactly as shipped (its pyqwest transport), over TLS, every fault at 100%


@pytest.fixture(scope="module")
def h2_matrix():
    """In a subprocess: the SDK's transport is chosen once per process (LOADGEN_E2B_PLAIN_SDK)."""
    return run_matrix("e2b", {"sandbox_lifetime_s": 600}, protocol="h2+tls", env={"LOADGEN_E2B_PLAIN_SDK": "1"})


def _outcome(op):
    return (op["failure_class"], op["http_status"]) if not op["ok"] else ("ok", op["value"])


@pytest.fixture(scope="module")
def h2_wire_matrix():
    """The adapter as it runs (loadgen's timed client), over TLS: HTTP/2 to the API by ALPN, HTTP/1.1 to envd."""
    return run_matrix("e2b", {"sandbox_lifetime_s": 600}, protocol="h2+tls")


def test_the_sdks_own_transport_speaks_http2_over_tls_and_maps_every_fault(h2_matrix):
    _every_fault_mapped(h2_matrix)


def test_the_timed_client_speaks_http2_to_the_api_over_tls_and_maps_every_fault(h2_wire_matrix):
    _every_fault_mapped(h2_wire_matrix)
    for case in h2_wire_matrix.values():  # the API's exchanges on HTTP/2, envd's on HTTP/1.1
        opened = case["stats"]["server"]["connections_by_protocol"]
        assert opened["h2"] == 1, opened
        if any(op["op"] == "run" for op in case["ops"]):
            assert opened["http/1.1"] >= 2, opened  # (one of them the matrix's own stats request)


def _every_fault_mapped(matrix):
    h2_matrix = matrix
    assert all(spoke(case["stats"], "h2+tls") for case in h2_matrix.values())
    ops = {name: case["ops"] for name, case in h2_matrix.items()}
    assert _outcome(ops["create_5xx"][0]) == ("http_error", 500)
    assert ops["create_hang"][0]["failure_class"] == "timeout"
    assert _outcome(ops["reset"][0]) == ("network_error", None)
    for name in ("rate_limited", "capacity"):
        assert ops[name][0]["ok"] and _outcome(ops[name][1]) == ("http_error", 429), ops[name]
    assert [_outcome(op) for op in ops["readiness_exit"][1:]] == [("ok", [1, ""]), ("ok", [0, "v20.18.1\n"])]
    assert not ops["readiness_stream"][1]["ok"]  # the stream's Connect error
    create, ready, live, destroy = ops["died"]
    assert ready["ok"] and (live["failure_class"], live["error_code"]) == ("http_error", "sandbox_gone")
    assert _outcome(ops["kill_fail"][1]) == ("http_error", 500)
    create, run, destroy, again, gone = ops["clean"]
    assert run["value"] == [0, "v20.18.1\n"] and destroy["value"] is True and again["value"] is False
    assert not gone["ok"] and gone["error_code"] == "sandbox_gone"
    for case in h2_matrix.values():  # one request per create: the SDK's retries are off
        assert case["stats"]["ops"]["create"]["requests"] == sum(op["op"] == "create" for op in case["ops"])
