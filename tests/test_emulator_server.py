"""The emulator over real sockets without an SDK: bad input, limits at their
edge, latency as recorded by the server, lifetime, streaming, the command
line, and the process/thread handles."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from loadgen.emulator import EmulatorThread, start_emulator
from loadgen.emulator.faces.modal import grpc_url_of
from tests.emulator_fixtures import (  # noqa: F401
    connect_frame,
    create,
    emulator,
    fresh_emulator,
    parse_frames,
    request,
)

pytestmark = pytest.mark.timeout(120)


def wait_for(predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def start_exec(url, sandbox_id, command, token=None):
    headers = {"Content-Type": "application/connect+json", "E2b-Sandbox-Id": sandbox_id,
               "Connect-Protocol-Version": "1"}
    if token:
        headers["X-Access-Token"] = token
    return request(url, "POST", "/process.Process/Start", connect_frame(command), headers, api_key=None)


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"timeout": 30}', "templateID"),
    (b'{"templateID": "base", "timeout": "soon"}', "timeout"),
    (b'{"templateID": "base", "metadata": {"sandbox_idx": 17}}', "string values"),
    (b'{"templateID": "base", "timeout": 999999999}', "timeout"),
])
def test_malformed_create_is_400_with_json_error(fresh_emulator, body, message):
    status, headers, payload = request(fresh_emulator.url, "POST", "/v2/sandboxes", body,
                                       {"Content-Type": "application/json"})
    assert status == 400 and headers["content-type"].startswith("application/json")
    err = json.loads(payload)
    assert err["code"] == 400 and message in err["message"]
    assert fresh_emulator.stats()["errors"]["bad_request"] == 1


def test_missing_api_key_is_401(fresh_emulator):
    status, _, payload = create(fresh_emulator.url, api_key=None)
    assert status == 401 and json.loads(payload)["code"] == 401
    status, _, _ = request(fresh_emulator.url, "DELETE", "/sandboxes/abc", api_key=None)
    assert status == 401
    assert fresh_emulator.stats()["requests"] == 0


def test_unknown_sandbox_is_404_on_the_api_and_502_not_found_on_envd(fresh_emulator):
    url = fresh_emulator.url
    status, _, payload = request(url, "DELETE", "/sandboxes/inosuchsandbox")
    assert status == 404 and json.loads(payload)["code"] == 404
    assert request(url, "GET", "/sandboxes/inosuchsandbox")[0] == 404
    # envd traffic for a missing sandbox is answered by e2b's edge proxy:
    status, _, payload = start_exec(url, "inosuchsandbox", "node -v")
    assert status == 502 and json.loads(payload)["message"] == "The sandbox was not found"
    assert request(url, "GET", "/nowhere")[0] == 404


def test_malformed_connect_request_ends_the_stream_with_invalid_argument(fresh_emulator):
    url = fresh_emulator.url
    sid = json.loads(create(url)[2])["sandboxID"]
    token = "ea" + sid[1:]
    headers = {"Content-Type": "application/connect+json", "E2b-Sandbox-Id": sid, "X-Access-Token": token}
    status, _, body = request(url, "POST", "/process.Process/Start", b"\x00\x00\x00\x00\x05{oops", headers)
    assert status == 200
    (flags, end), = parse_frames(body)
    assert flags == 2 and end["error"]["code"] == "invalid_argument"
    status, _, body = request(url, "POST", "/process.Process/Start", b"{}", {**headers, "Content-Type": "application/json"})
    assert status == 415
    status, _, body = start_exec(url, sid, "node -v", token="wrong")
    assert status == 401 and json.loads(body)["code"] == "unauthenticated"


def test_garbage_http_gets_400_and_the_server_lives_on(fresh_emulator):
    host, port = fresh_emulator.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert create(fresh_emulator.url)[0] == 201


# -- the Connect stream ---------------------------------------------------------


def test_exec_stream_frames_and_streaming_as_produced(fresh_emulator):
    url = fresh_emulator.url
    sid = json.loads(create(url)[2])["sandboxID"]
    status, headers, body = start_exec(url, sid, "node -v", token="ea" + sid[1:])
    assert status == 200 and headers["content-type"] == "application/connect+json"
    frames = parse_frames(body)
    assert [f for f, _ in frames] == [0, 0, 0, 2]
    assert "pid" in frames[0][1]["event"]["start"]
    assert frames[1][1]["event"]["data"]["stdout"] == "djIwLjE4LjEK"  # base64("v20.18.1\n")
    assert frames[2][1]["event"]["end"]["exitCode"] == 0 and frames[3][1] == {}

    # A long command: the start event arrives while the command still runs.
    host, port = url.split("//")[1].split(":")
    frame = connect_frame("sleep 3; echo late")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /process.Process/Start HTTP/1.1\r\nHost: x\r\ncontent-type: application/connect+json\r\n"
                  b"e2b-sandbox-id: " + sid.encode() + b"\r\nx-access-token: ea" + sid[1:].encode() +
                  b"\r\ncontent-length: %d\r\n\r\n" % len(frame) + frame)
        first = b""
        while b'"start"' not in first:
            chunk = s.recv(65536)
            assert chunk, "stream closed before the start event"
            first += chunk
        assert not first.endswith(b"0\r\n\r\n")
        running = [r for r in fresh_emulator.sandboxes() if r["sandbox_id"] == sid][0]["execs"][-1]
        assert running["command"] == "sleep 3; echo late" and running["t_end"] is None
        rest = first
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            assert chunk, "stream closed early"
            rest += chunk
        assert b'"end"' in rest


def test_chunked_request_bodies_are_decoded(fresh_emulator):
    host, port = fresh_emulator.url.split("//")[1].split(":")
    body = b'{"templateID":"base","metadata":{"run_id":"c","sandbox_idx":"1"}}'
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\ntransfer-encoding: chunked\r\n\r\n" + chunked)
        assert s.recv(4096).startswith(b"HTTP/1.1 201")
    assert fresh_emulator.sandboxes()[0]["metadata"] == {"run_id": "c", "sandbox_idx": "1"}


def test_v1_create_route_and_info(fresh_emulator):
    url = fresh_emulator.url
    status, _, body = request(url, "POST", "/sandboxes", b'{"templateID":"base","timeout":60}',
                              {"Content-Type": "application/json", "Expect": "100-continue"})
    assert status == 201
    sid = json.loads(body)["sandboxID"]
    status, _, body = request(url, "GET", f"/sandboxes/{sid}")
    assert status == 200 and json.loads(body)["state"] == "running"


# -- limits at their edge --------------------------------------------------------


def test_rate_limit_answers_429_at_the_burst_edge_and_not_before():
    # 0.01 tokens/s: no refill worth a token during the test, so the edge is exact.
    with start_emulator("fast", rate_limit_per_s=0.01, rate_limit_burst=5) as emu:
        statuses = [create(emu.url)[0] for _ in range(5)]
        assert statuses == [201] * 5
        status, headers, payload = create(emu.url)
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert json.loads(payload)["code"] == 429
        stats = emu.stats()
        assert (stats["created"], stats["rejected"]) == (5, 1)


def test_capacity_reject_mode_answers_429_beyond_capacity_only():
    with start_emulator("fast", capacity=3, capacity_mode="reject") as emu:
        ids = [json.loads(create(emu.url)[2])["sandboxID"] for _ in range(3)]
        assert create(emu.url)[0] == 429
        assert request(emu.url, "DELETE", f"/sandboxes/{ids[0]}")[0] == 204
        assert create(emu.url)[0] == 201
        assert emu.sandboxes()[3]["fault"] == "capacity"


def test_capacity_queue_mode_holds_the_create_until_a_slot_frees():
    with start_emulator("fast", capacity=1, capacity_mode="queue") as emu:
        first = json.loads(create(emu.url)[2])["sandboxID"]
        host, port = emu.url.split("//")[1].split(":")
        body = b'{"templateID":"base"}'
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            wait_for(lambda: emu.stats()["queued"] == 1)
            s.settimeout(0.3)
            with pytest.raises(socket.timeout):
                s.recv(4096)  # still queued
            assert request(emu.url, "DELETE", f"/sandboxes/{first}")[0] == 204
            s.settimeout(30)
            assert s.recv(4096).startswith(b"HTTP/1.1 201")
        stats = emu.stats()
        assert (stats["created"], stats["live"], stats["ops"]["create"]["queued"]) == (2, 1, 1)


# -- latency and lifetime as the server records them ----------------------------


async def _hammer(url, n, conns):
    host, port = url.split("//")[1].split(":")

    async def worker(w):
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in range(w, n, conns):
            body = b'{"templateID":"base","metadata":{"run_id":"lat","sandbox_idx":"%d"}}' % i
            writer.write(b"POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(worker(w) for w in range(conns)))


def test_server_side_lognormal_create_latency_matches_configuration():
    """n = 2,000 creates. The drawn latencies follow the configured lognormal
    (median and p95 within 10%), and each answer left no earlier than its draw
    after the request's arrival (timers only ever fire late, by how much
    depends on how busy the machine is)."""
    with start_emulator("fast", seed=11, create_latency="lognormal:40,80") as emu:
        asyncio.run(_hammer(emu.url, 2000, 200))
        rows = emu.sandboxes()
    assert len(rows) == 2000
    drawn = sorted(r["create_latency_ms"] for r in rows)
    median, p95 = drawn[1000], drawn[1900]
    assert 40 * 0.9 <= median <= 40 * 1.1
    assert 80 * 0.9 <= p95 <= 80 * 1.1
    late = sorted((r["t_answered"] - r["t_received"]) * 1000 - r["create_latency_ms"] for r in rows)
    assert late[0] >= -5.0  # TCP_INFO dates the arrival to a jiffy (4 ms at HZ=250)


def test_create_is_timed_from_its_arrival_even_when_the_emulator_is_busy():
    """The service time is judged from when the request reached the host, not
    when the emulator's loop got to it: the loop is stalled for 0.4 s as the
    create arrives, and the 0.6 s create latency runs from the arrival."""
    with EmulatorThread("fast", create_latency={"kind": "constant", "ms": 600}) as emu:
        emu._loop.call_soon_threadsafe(time.sleep, 0.4)
        time.sleep(0.05)  # the stall has begun
        sent = time.time()
        status, _, _ = create(emu.url, idx=0)
        answered = time.time()
        (row,) = emu.sandboxes()
    assert status == 201
    assert -0.01 < row["t_received"] - sent < 0.02  # TCP_INFO gives the age to a jiffy (1-4 ms), either way
    assert 0.59 <= row["t_answered"] - row["t_received"] < 0.75
    assert answered - sent < 0.85  # not 0.4 s of stall + 0.6 s


def test_never_killed_sandbox_expires_after_its_lifetime():
    with start_emulator("fast") as emu:
        status, _, body = create(emu.url, timeout=2)
        sid = json.loads(body)["sandboxID"]
        assert emu.stats()["live"] == 1
        wait_for(lambda: emu.stats()["expired"] == 1)
        (rec,) = emu.sandboxes()
        assert rec["state"] == "expired" and rec["t_ended"] - rec["t_answered"] >= 1.95  # libuv timers have 1 ms granularity
        assert emu.stats()["live"] == 0
        assert request(emu.url, "DELETE", f"/sandboxes/{sid}")[0] == 404


def test_thousands_of_concurrent_connections(fresh_emulator):
    asyncio.run(_hammer(fresh_emulator.url, 2000, 2000))
    stats = fresh_emulator.stats()
    assert stats["created"] == 2000 and stats["server"]["connections_total"] >= 2000


def test_reset_forgets_everything(fresh_emulator):
    create(fresh_emulator.url)
    fresh_emulator.reset()
    stats = fresh_emulator.stats()
    assert (stats["created"], stats["requests"], stats["live"]) == (0, 0, 0)
    assert fresh_emulator.sandboxes() == []


# -- command line and handles ------------------------------------------------------


def loadgen_command():
    exe = shutil.which("loadgen")
    return [exe] if exe else [sys.executable, "-m", "loadgen.cli"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_url_serves_and_stops_cleanly(sig):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen(loadgen_command() + ["emulate", "--port", "0", "--profile", "fast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:")
        assert create(line)[0] == 201
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_rejects_a_bad_setting():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run(loadgen_command() + ["emulate", "--fault-kill", "7"], capture_output=True, env=env, timeout=60)
    assert out.returncode == 2 and b"fault_kill" in out.stderr


def test_config_file_profile(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"profile": "chaos", "fault_kill": 1.0, "capacity": 7}))
    with start_emulator(None, config=str(path), fault_reset=0) as emu:
        settings = emu.stats()["settings"]
    assert (settings["fault_kill"], settings["capacity"], settings["fault_reset"]) == (1.0, 7, 0.0)
    assert settings["fault_died"] == 0.03  # from the chaos base


def test_host_option_listens_on_that_address_only():
    # 127.0.0.2 is a loopback address of its own: the emulator answers there and not on 127.0.0.1
    with start_emulator("fast", host="127.0.0.2", faces="e2b,modal") as emu:
        assert emu.url.startswith("http://127.0.0.2:")
        assert create(emu.url)[0] == 201
        assert grpc_url_of(emu.url).startswith("http://127.0.0.2:")  # modal's own port, same address
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", emu.port), timeout=5).close()
    with EmulatorThread("fast", host="127.0.0.2") as emu:
        assert emu.url.startswith("http://127.0.0.2:") and create(emu.url)[0] == 201


def test_emulator_thread_in_process():
    with EmulatorThread("fast", capacity=2) as emu:
        assert create(emu.url)[0] == 201
        assert emu.stats()["live"] == 1 and emu.pid == os.getpid()
    assert not emu.is_alive()


def test_emulator_thread_under_gevent_monkey_patching(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import gevent, json, urllib.request
        from loadgen.emulator import EmulatorThread
        with EmulatorThread("fast") as emu:
            def one(i):
                req = urllib.request.Request(emu.url + "/v2/sandboxes", method="POST",
                    data=json.dumps({"templateID": "base"}).encode(), headers={"X-API-KEY": "k"})
                return urllib.request.urlopen(req, timeout=10).status
            greenlets = [gevent.spawn(one, i) for i in range(100)]
            gevent.joinall(greenlets, raise_error=True)
            print(sorted({g.value for g in greenlets}), emu.stats()["created"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["[201]", "100"]


def test_emulator_dies_with_its_parent():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent("""
        import sys, time
        from loadgen.emulator import start_emulator
        emu = start_emulator("fast")
        print(emu.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=root))
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive
        parent.kill()
        parent.wait()

        def gone():
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            # a zombie is gone too: it only waits for init to reap it
            with open(f"/proc/{child}/stat") as f:
                return f.read().split()[2] == "Z"

        wait_for(gone, timeout=15)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
