"""The emulator's protocols on one port: HTTP/1.1, HTTP/2 (prior knowledge, ALPN) and TLS.

Real clients are raw sockets here, with `h2` as the HTTP/2 client, so that
every frame and every byte the server sends is seen: each request gets
exactly one well-formed answer, whatever the protocol (pipelined HTTP/1.1,
Upgrade requests and multiplexed HTTP/2 streams included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httptools
import pytest

from loadgen.emulator import EmulatorThread, start_emulator
from tests.emulator_fixtures import connect_frame, parse_frames

KEY = b"e2b_test"


def _address(url):
    host, port = url.split("//", 1)[1].split(":")
    return host, int(port)


def _open(emu, alpn=None):
    sock = socket.create_connection(_address(emu.url), timeout=20)
    if emu.url.startswith("https://"):
        context = ssl.create_default_context(cafile=emu.ca_file)
        if alpn:
            context.set_alpn_protocols(alpn)
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


# -- HTTP/1.1 -----------------------------------------------------------------


class _Responses:
    """Every HTTP/1.1 response in a byte stream, parsed by httptools."""

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.done, self._headers, self._body = [], {}, b""

    def on_header(self, name, value):
        self._headers[name.lower()] = value

    def on_body(self, body):
        self._body += body

    def on_message_complete(self):
        self.done.append((self.parser.get_status_code(), self._headers, self._body))
        self._headers, self._body = {}, b""

    def feed(self, data):
        self.parser.feed_data(data)


def _read_until_closed(sock, responses, deadline_s=10.0):
    sock.settimeout(deadline_s)
    while True:
        data = sock.recv(65536)
        if not data:
            return
        responses.feed(data)


def _create_request(idx):
    body = b'{"templateID":"base","metadata":{"run_id":"proto","sandbox_idx":"%d"}}' % idx
    return (b"POST /v2/sandboxes HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: " + KEY +
            b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_pipelined_http1_requests_get_one_answer_each_in_order(tls):
    with EmulatorThread("fast", tls=tls) as emu:
        sock = _open(emu, ["http/1.1"])
        responses = _Responses()
        pipelined = (_create_request(0) + b"GET /_emulator/health HTTP/1.1\r\nhost: x\r\n\r\n" + _create_request(1) +
                     b"GET /nowhere HTTP/1.1\r\nhost: x\r\nx-api-key: " + KEY + b"\r\n\r\n")
        sock.sendall(pipelined)  # four requests in one write
        sock.settimeout(10)
        while len(responses.done) < 4:
            responses.feed(sock.recv(65536))
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        _read_until_closed(sock, responses)  # the connection stayed usable, and nothing more came
        sock.close()
        truth = emu.sandboxes()
    statuses = [status for status, _, _ in responses.done]
    assert statuses == [201, 200, 201, 404, 200]
    created = [json.loads(body)["sandboxID"] for status, _, body in responses.done if status == 201]
    assert created == [row["sandbox_id"] for row in truth]  # in request order


@pytest.mark.parametrize("face, path, status", [
    ("daytona", b"/api/socket.io/?EIO=4&transport=websocket", 404),  # what @daytonaio/sdk opens
    ("e2b", b"/", 404),
])
@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_an_upgrade_request_gets_exactly_one_answer(face, path, status, upgrade):
    """No upgrade is served: the request is answered once, with `connection: close`, and the connection ends."""
    with EmulatorThread("fast", faces=face) as emu:
        sock = _open(emu)
        extra = (b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n" if upgrade == b"websocket"
                 else b"http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer k\r\nconnection: Upgrade"
                     + (b", HTTP2-Settings" if upgrade == b"h2c" else b"") + b"\r\nupgrade: " + upgrade + b"\r\n"
                     + extra + b"\r\n")
        responses = _Responses()
        _read_until_closed(sock, responses)
        sock.close()
        bad = emu.stats()["server"]["bad_http"]
    assert [r[0] for r in responses.done] == [status]
    assert responses.done[0][1][b"connection"] == b"close"
    assert bad == 0


# -- HTTP/2 ---------------------------------------------------------------------


class H2Client:
    """A raw HTTP/2 client on `h2`: sends requests, and keeps every frame's event per stream.

    Its receive window is small (1,000 bytes), so answers longer than that only
    arrive whole if the server honours flow control."""

    WINDOW = 1000

    def __init__(self, sock):
        self.sock = sock
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True,
                                                                               header_encoding=None))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.WINDOW, h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()  # the preface: PRI * HTTP/2.0 ...
        self.streams: dict = {}
        self.other_events: list = []
        self._flush()

    def _flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, headers=(), body=b""):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", method), (b":path", path), (b":scheme", b"http"),
                                     (b":authority", b"127.0.0.1"), *headers], end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.streams[sid] = {"headers": [], "data": b"", "ended": 0, "reset": None}
        self._flush()
        return sid

    def reset(self, sid):
        self.conn.reset_stream(sid)
        self._flush()

    def pump(self, until, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not until():
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in self.conn.receive_data(data):
                stream = self.streams.get(getattr(event, "stream_id", 0))
                if isinstance(event, h2.events.ResponseReceived):
                    stream["headers"].append(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    stream["data"] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    stream["ended"] += 1
                elif isinstance(event, h2.events.StreamReset):
                    if stream is not None:
                        stream["reset"] = event.error_code
                elif not isinstance(event, (h2.events.RemoteSettingsChanged, h2.events.SettingsAcknowledged,
                                            h2.events.WindowUpdated)):
                    self.other_events.append(event)
            self._flush()
            assert time.monotonic() < deadline, "no answer in time"

    def answered(self, *sids):
        return lambda: all(self.streams[s]["ended"] or self.streams[s]["reset"] is not None for s in sids)


def _e2b(client, method, path, body=b"", headers=()):
    return client.request(method, path, [(b"x-api-key", KEY), (b"content-type", b"application/json"), *headers], body)


@pytest.mark.parametrize("tls", [False, True], ids=["prior-knowledge", "alpn-over-tls"])
def test_http2_streams_each_get_exactly_one_answer(tls):
    with EmulatorThread("fast", tls=tls, exec_latency={"kind": "constant", "ms": 20}) as emu:
        sock = _open(emu, ["h2", "http/1.1"])
        if tls:
            assert sock.selected_alpn_protocol() == "h2"
        client = H2Client(sock)
        creates = [_e2b(client, b"POST", b"/v2/sandboxes",
                        b'{"templateID":"base","metadata":{"run_id":"h2","sandbox_idx":"%d"}}' % i) for i in range(3)]
        missing = _e2b(client, b"GET", b"/nowhere")
        client.pump(client.answered(*creates, missing))
        sandboxes = [json.loads(client.streams[s]["data"]) for s in creates]
        # the Connect server-stream: start, data, end and end-of-stream frames, as DATA frames of one stream
        execs = [client.request(b"POST", b"/process.Process/Start", [
            (b"e2b-sandbox-id", sb["sandboxID"]), (b"x-access-token", sb.get("envdAccessToken") or ""),
            (b"content-type", b"application/connect+json")], connect_frame("node -v")) for sb in sandboxes]
        client.pump(client.answered(*execs))
        kills = [_e2b(client, b"DELETE", b"/sandboxes/" + sb["sandboxID"].encode()) for sb in sandboxes]
        listing = client.request(b"GET", b"/_emulator/sandboxes")  # longer than the client's 1,000-byte window
        client.pump(client.answered(*kills, listing))
        sock.close()
        stats = emu.stats()
    statuses = {sid: [h[b":status"] for h in s["headers"]] for sid, s in client.streams.items()}
    assert all(s["ended"] == 1 and s["reset"] is None and len(s["headers"]) == 1 for s in client.streams.values()), \
        client.streams
    assert [statuses[s] for s in creates] == [[b"201"]] * 3 and statuses[missing] == [b"404"]
    assert [statuses[s] for s in kills] == [[b"204"]] * 3 and statuses[listing] == [b"200"]
    for sid in execs:
        frames = parse_frames(client.streams[sid]["data"])
        assert [list(f[1].get("event", {"eos": 1})) for f in frames] == [["start"], ["data"], ["end"], ["eos"]]
        assert frames[2][1]["event"]["end"]["exitCode"] == 0 and frames[3] == (2, {})
    listed = [json.loads(line) for line in client.streams[listing]["data"].splitlines()]
    assert len(client.streams[listing]["data"]) > H2Client.WINDOW and len(listed) == 3
    assert client.other_events == []  # no pushes, no GOAWAY, no stray streams
    assert stats["killed"] == 3 and stats["server"]["connections_by_protocol"]["h2"] == 1
    assert stats["server"]["bad_http"] == 0


def test_http2_reset_fault_resets_only_that_stream():
    """fault_reset on HTTP/2 is RST_STREAM: the other streams on the connection carry on."""
    with EmulatorThread("fast", fault_reset=1.0) as emu:
        sock = _open(emu)
        client = H2Client(sock)
        doomed = _e2b(client, b"POST", b"/v2/sandboxes", b'{"templateID":"base"}')
        health = client.request(b"GET", b"/_emulator/health")
        client.pump(client.answered(doomed, health))
        later = client.request(b"GET", b"/_emulator/health")
        client.pump(client.answered(later))
        sock.close()
    assert client.streams[doomed]["reset"] == 2 and not client.streams[doomed]["headers"]  # INTERNAL_ERROR
    assert client.streams[health]["ended"] == 1 and client.streams[later]["ended"] == 1


def test_http2_client_reset_and_garbage_leave_the_server_serving():
    with EmulatorThread("fast") as emu:
        sock = _open(emu)
        client = H2Client(sock)
        sb = json.loads(_answer(client, _e2b(client, b"POST", b"/v2/sandboxes", b'{"templateID":"base"}')))
        slow = client.request(b"POST", b"/process.Process/Start", [
            (b"e2b-sandbox-id", sb["sandboxID"].encode()), (b"x-access-token", (sb.get("envdAccessToken") or "").encode()),
            (b"content-type", b"application/connect+json")], connect_frame("sleep 1"))
        time.sleep(0.2)
        client.reset(slow)  # the client gives up on a stream the server is still writing
        time.sleep(1.2)  # the command ends: its answer must not be sent on the reset stream
        assert _answer(client, client.request(b"GET", b"/_emulator/health")) == b'{"ok":true}'
        sock.close()
        garbage = _open(emu)
        # the preface, then DATA on a stream never opened: a connection error
        garbage.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                        + b"\x00\x00\x04\x00\x00\x00\x00\x00\x01junk")
        garbage.settimeout(10)
        received = b""
        while True:
            data = garbage.recv(65536)
            if not data:
                break
            received += data
        garbage.close()
        stats = emu.stats()
    reader = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    reader.initiate_connection()
    goaway = [e for e in reader.receive_data(received) if isinstance(e, h2.events.ConnectionTerminated)]
    assert [e.error_code for e in goaway] == [h2.errors.ErrorCodes.PROTOCOL_ERROR]
    assert stats["server"]["bad_http"] == 1 and stats["live"] == 1


@pytest.mark.parametrize("limit", [None, 3])
def test_http2_stream_limit_is_the_setting(limit):
    """No limit by default (a burst multiplexed on one connection is never queued by the emulator);
    `h2_max_streams` advertises a real one, as a provider's load balancer would, and refuses the
    streams over it (REFUSED_STREAM), not the connection."""
    with EmulatorThread("fast", h2_max_streams=limit, create_latency={"kind": "constant", "ms": 300}) as emu:
        sock = _open(emu)
        client = H2Client(sock)  # five creates before the server's SETTINGS arrive: the client cannot know yet
        creates = [_e2b(client, b"POST", b"/v2/sandboxes", b'{"templateID":"base"}') for _ in range(5)]
        client.pump(client.answered(*creates))
        advertised = client.conn.remote_settings.max_concurrent_streams
        assert _answer(client, client.request(b"GET", b"/_emulator/health")) == b'{"ok":true}'
        sock.close()
        stats = emu.stats()
    answered = [s for s in creates if client.streams[s]["ended"]]
    refused = [client.streams[s]["reset"] for s in creates if not client.streams[s]["ended"]]
    assert advertised == (limit or 2 ** 31 - 1)
    assert len(answered) == min(5, limit or 5) and refused == [h2.errors.ErrorCodes.REFUSED_STREAM] * (5 - len(answered))
    assert stats["created"] == len(answered) and stats["server"]["h2_refused_streams"] == len(refused)


def _answer(client, sid):
    client.pump(client.answered(sid))
    return client.streams[sid]["data"]


@pytest.mark.parametrize("tls, alpn", [(False, None), (True, ["h2"]), (True, ["http/1.1"]), (True, None)],
                         ids=["h2-prior-knowledge", "h2-alpn", "http1-alpn", "tls-no-alpn"])
def test_arrival_is_the_kernels_on_every_protocol(tls, alpn):
    """A create's t_received is when it reached the host, however late the loop reads it:
    the emulator's loop is stalled 0.4 s as the request arrives, on each protocol."""
    with EmulatorThread("fast", tls=tls, create_latency={"kind": "constant", "ms": 600}) as emu:
        sock = _open(emu, alpn)
        http2 = alpn == ["h2"] or not tls
        client = H2Client(sock) if http2 else None
        if client is not None:
            assert _answer(client, client.request(b"GET", b"/_emulator/health")) == b'{"ok":true}'
        emu._loop.call_soon_threadsafe(time.sleep, 0.4)
        time.sleep(0.05)  # the stall has begun
        sent = time.time()
        if client is not None:
            sid = _e2b(client, b"POST", b"/v2/sandboxes", b'{"templateID":"base"}')
            client.pump(client.answered(sid))
            status = client.streams[sid]["headers"][0][b":status"]
        else:
            sock.sendall(_create_request(0))
            responses = _Responses()
            sock.settimeout(10)
            while not responses.done:
                responses.feed(sock.recv(65536))
            status = b"%d" % responses.done[0][0]
        answered = time.time()
        sock.close()
        (row,) = emu.sandboxes()
        protocols = emu.stats()["server"]["connections_by_protocol"]
    assert status == b"201"
    assert protocols["h2"] == (1 if http2 else 0)
    assert -0.01 < row["t_received"] - sent < 0.02  # TCP_INFO gives the age to a jiffy (1-4 ms), either way
    assert 0.59 <= row["t_answered"] - row["t_received"] < 0.75
    assert answered - sent < 0.85  # not 0.4 s of stall + 0.6 s


# -- TLS: the command line and the handles ----------------------------------------------


def test_cli_tls_prints_an_https_url_and_names_its_ca(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "loadgen.cli", "emulate", "--tls"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=root))
    try:
        url = proc.stdout.readline().decode().strip()
        note = proc.stderr.readline().decode()
        assert url.startswith("https://127.0.0.1:")
        ca_file = note.split("CA certificate ", 1)[1].split()[0]
        assert os.path.isfile(ca_file) and "SSL_CERT_FILE=" + ca_file in proc.stderr.readline().decode()
        context = ssl.create_default_context(cafile=ca_file)
        for host in ("127.0.0.1", "localhost"):  # the certificate names both
            with socket.create_connection(_address(url)) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as sock:
                sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                responses = _Responses()
                _read_until_closed(sock, responses)
                assert [r[0] for r in responses.done] == [200]
        with pytest.raises(ssl.SSLCertVerificationError):  # and no CA but its own vouches for it
            with socket.create_connection(_address(url)) as raw:
                ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not os.path.exists(ca_file)  # a CA file it chose itself goes with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    kept = tmp_path / "ca.pem"
    out = subprocess.run([sys.executable, "-m", "loadgen.cli", "emulate", "--ca-file", str(kept)],
                         capture_output=True, env=dict(os.environ, PYTHONPATH=root), timeout=60)
    assert out.returncode == 2 and b"--ca-file needs --tls" in out.stderr


def test_start_emulator_tls_handle_exposes_its_ca_file():
    with start_emulator("fast", tls=True, faces="e2b,modal") as emu:
        ca_file = emu.ca_file
        assert emu.url.startswith("https://") and os.path.isfile(ca_file)
        stats = emu.stats()  # the accessors trust the emulator's CA
        grpc = json.loads(emu._call("GET", "/modal/grpc"))
    assert stats["server"]["scheme"] == "https" and stats["server"]["ca_file"] == ca_file
    assert grpc["url"].startswith("https://")  # modal's gRPC port serves TLS too
    assert not os.path.exists(ca_file)


# -- gRPC-Web: the modal face's RPCs on the HTTP listener ---------------------------


def _grpc_web_request(path: str, message: bytes, headers: dict, framed=None) -> bytes:
    body = framed if framed is not None else bytes([0]) + len(message).to_bytes(4, "big") + message
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/grpc-web+proto\r\n{head}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def _grpc_web_answer(answer) -> tuple:
    """An HTTP/1.1 answer's gRPC-Web frames: (its messages, its trailers as a dict)."""
    status, headers, data = answer
    assert status == 200 and headers[b"content-type"] == b"application/grpc-web+proto"
    messages, trailers = [], None
    while data:
        flag, size = data[0], int.from_bytes(data[1:5], "big")
        payload, data = data[5:5 + size], data[5 + size:]
        assert trailers is None, "nothing may follow the trailers"
        if flag & 0x80:
            trailers = dict(line.split(b": ", 1) for line in payload.split(b"\r\n") if line)
        else:
            messages.append(payload)
    assert trailers is not None, "every answer ends with its trailers"
    return messages, trailers


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_grpc_web_serves_a_modal_lifecycle_with_one_answer_per_rpc(tls):
    """modal's RPCs as gRPC-Web on the HTTP listener (how the HTTP/1.1-only baseline of bench/ makes the
    exchanges modal's SDK makes): create, a command's three RPCs, terminate, one connection, one answer each;
    then three requests pipelined in one write (a wait, an RPC the face does not emulate, a request whose
    frame is cut short) get one answer each, in order, as gRPC statuses."""
    from modal_proto import api_pb2 as pb, task_command_router_pb2 as sr

    control = {"x-modal-token-id": "ak-test", "x-modal-token-secret": "as-test"}
    with EmulatorThread("fast", faces="modal", tls=tls, require_api_key=True) as emu:
        sock = _open(emu, ["http/1.1"])
        sock.settimeout(10)
        responses = _Responses()

        def call(path, message, headers, framed=None):
            sock.sendall(_grpc_web_request(path, message.SerializeToString(), headers, framed))
            while len(responses.done) < calls[0] + 1:
                responses.feed(sock.recv(65536))
            calls[0] += 1
            return _grpc_web_answer(responses.done[-1])

        calls = [0]
        [app], ok = call("/modal.client.ModalClient/AppGetOrCreate", pb.AppGetOrCreateRequest(
            app_name="web", object_creation_type=pb.OBJECT_CREATION_TYPE_CREATE_IF_MISSING), control)
        assert ok[b"grpc-status"] == b"0"
        app_id = pb.AppGetOrCreateResponse.FromString(app).app_id
        _, refused = call("/modal.client.ModalClient/SandboxCreateV2", pb.SandboxCreateV2Request(app_id=app_id), {})
        assert refused[b"grpc-status"] == b"16"  # UNAUTHENTICATED: no token
        [created], ok = call("/modal.client.ModalClient/SandboxCreateV2", pb.SandboxCreateV2Request(
            app_id=app_id, tags=[pb.SandboxTag(tag_name="run_id", tag_value="web")]), control)
        created = pb.SandboxCreateV2Response.FromString(created)
        router = {"authorization": "Bearer " + created.command_router_access.jwt}
        task, exec_id = created.task_id, "ex-web-1"
        _, ok = call("/modal.task_command_router.TaskCommandRouter/TaskExecStart", sr.TaskExecStartRequest(
            task_id=task, exec_id=exec_id, command_args=["node", "-v"]), router)
        assert ok[b"grpc-status"] == b"0"
        out, ok = call("/modal.task_command_router.TaskCommandRouter/TaskExecStdioRead",
                       sr.TaskExecStdioReadRequest(task_id=task, exec_id=exec_id), router)
        assert b"".join(sr.TaskExecStdioReadResponse.FromString(m).data for m in out) == b"v20.18.1\n"
        wait = _grpc_web_request("/modal.task_command_router.TaskCommandRouter/TaskExecWait",
                                 sr.TaskExecWaitRequest(task_id=task, exec_id=exec_id).SerializeToString(), router)
        other = _grpc_web_request("/modal.client.ModalClient/SandboxList", b"", control)
        cut = _grpc_web_request("/modal.client.ModalClient/AppGetOrCreate", b"", control, framed=b"\x00\x00\x00\x00\x09ab")
        sock.sendall(wait + other + cut)
        while len(responses.done) < calls[0] + 3:
            responses.feed(sock.recv(65536))
        calls[0] += 3
        [code], waited = _grpc_web_answer(responses.done[-3])
        assert (sr.TaskExecWaitResponse.FromString(code).code, waited[b"grpc-status"]) == (0, b"0")
        assert _grpc_web_answer(responses.done[-2]) == ([], {b"grpc-status": b"12",
                                                              b"grpc-message": b"not emulated by loadgen%27s modal face"})
        assert _grpc_web_answer(responses.done[-1])[1][b"grpc-status"] == b"13"  # INTERNAL: a malformed frame
        _, ok = call("/modal.client.ModalClient/SandboxTerminateV2",
                     pb.SandboxTerminateRequest(sandbox_id=created.sandbox_id), control)
        assert ok[b"grpc-status"] == b"0"
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        _read_until_closed(sock, responses)
        sock.close()
        truth = emu.sandboxes()
        context = ssl.create_default_context(cafile=emu.ca_file) if tls else None
        stats = json.loads(urllib.request.urlopen(emu.url + "/modal/stats", context=context, timeout=10).read())
    assert len(responses.done) == calls[0] + 1  # one answer per request, and nothing else
    assert [(row["metadata"]["run_id"], row["state"], len(row["execs"])) for row in truth] == [("web", "killed", 1)]
    assert stats["connections"] == 0  # none of it went to the gRPC port
    assert stats["unimplemented"] == {"/modal.client.ModalClient/SandboxList": 1}
