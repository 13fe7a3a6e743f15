"""The emulator's arrival stamps of gRPC requests are the kernel's, even while its loop is busy.

Why this matters: the emulator's record (when each request reached it) is the
reference a client's measurement is judged by (bench/measurement_error.py).
Many requests share one HTTP/2 connection, and segments that wait unread in
the emulator's receive queue merge, dated by the newest: a reader that cannot
run dates earlier requests late. Here 10 connections to the emulator's modal
face each send 10 SandboxCreateV2 in one segment every 50 ms (a segment every
5 ms in all, 2,000 creates) while the emulator's loop runs pure Python and its
heap grows (tests/busy_grpc_server.py), and every create's ``t_received`` must be its request's transmit time as this
process's kernel stamped it (SO_TIMESTAMPING, keyed by byte offset), to within
TOLERANCE_S. A merge would be off by a multiple of 50 ms.

The same server with ``--plain`` (socket methods that hand the GIL over at
every cut, and CPython's own collector) then shows late stamps, 50-260 ms on
this 2-core machine; when the machine's other load keeps it from getting that
busy, the test says so by skipping (the check on the fixed server stands).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import h2.config
import h2.connection
import pytest

pytestmark = pytest.mark.timeout(300)

CONNECTIONS = 10
ROUNDS = 20
BATCH = 10  # creates per send, as a client's coalesced writes carry them (one cut read each on the server)
SPACING_S = 0.005  # between two sends (each connection sends every CONNECTIONS * SPACING_S = 50 ms)
TOLERANCE_S = 0.03  # a merge is off by 50 ms or more
SO_TIMESTAMPING = 37
# TX_SOFTWARE | SOFTWARE | OPT_ID | OPT_TSONLY: the transmit time of each send's last byte, keyed by its offset
TX_FLAGS = 2 | 16 | 128 | 2048
IP_RECVERR = 11
SCM_TSTAMP_SND = 0
_EXTENDED_ERR = struct.Struct("IBBBBII")  # struct sock_extended_err
_TIMESPEC = struct.Struct("qq")


def _server(plain: bool):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "tests.busy_grpc_server"] + (["--plain"] if plain else []),
                            cwd=root, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if len(line) != 2:
        proc.kill()
        raise RuntimeError(f"the busy server did not start: {line}")
    return proc, line[0], int(line[1])


def _transmit_stamps(sock: socket.socket) -> dict:
    """byte offset of a send's last byte -> when the kernel sent it (SCM_TSTAMP_SND), from MSG_ERRQUEUE."""
    stamps = {}
    while True:
        try:
            _data, ancillary, _flags, _addr = sock.recvmsg(64, 1024, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return stamps
        stamp = key = kind = None
        for level, kind_of, value in ancillary:
            if level == socket.SOL_SOCKET and kind_of == SO_TIMESTAMPING:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value, 0)
                stamp = seconds + nanoseconds * 1e-9
            elif level == socket.SOL_IP and kind_of == IP_RECVERR:
                _errno, _origin, _type, _code, _pad, kind, key = _EXTENDED_ERR.unpack_from(value)
        if kind == SCM_TSTAMP_SND and stamp is not None:
            stamps[key] = stamp


def _create_frames(h2conn, stream_id: int, run_id: str, idx: int) -> None:
    from modal_proto import api_pb2

    message = api_pb2.SandboxCreateV2Request(app_id="ap-test", definition=api_pb2.Sandbox(timeout_secs=60),
                                             tags=[api_pb2.SandboxTag(tag_name="run_id", tag_value=run_id),
                                                   api_pb2.SandboxTag(tag_name="sandbox_idx", tag_value=str(idx))])
    body = message.SerializeToString()
    h2conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":path",
                        "/modal.client.ModalClient/SandboxCreateV2"), (":authority", "127.0.0.1"),
                        ("te", "trailers"), ("content-type", "application/grpc+proto"),
                        ("x-modal-token-id", "ak-test"), ("x-modal-token-secret", "as-test")])
    h2conn.send_data(stream_id, b"\x00" + struct.pack(">I", len(body)) + body, end_stream=True)


def _errors(plain: bool) -> list:
    """Per create: the emulator's t_received minus the kernel's transmit time of its request's last byte."""
    proc, url, port = _server(plain)
    try:
        conns = []
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            h2conn.initiate_connection()
            sock.sendall(h2conn.data_to_send())
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_FLAGS)  # offsets count from here
            conns.append([sock, h2conn, 0])
        time.sleep(0.2)  # the emulator has taken the connections
        run_id = f"stamps-{'plain' if plain else 'held'}"
        keys = {}  # sandbox_idx -> (connection, offset of its request's last byte)
        next_send = time.perf_counter()
        for round_ in range(ROUNDS):
            for c, conn in enumerate(conns):
                sock, h2conn, offset = conn
                first = (round_ * CONNECTIONS + c) * BATCH
                for k in range(BATCH):
                    _create_frames(h2conn, 1 + 2 * (round_ * BATCH + k), run_id, first + k)
                data = h2conn.data_to_send()
                time.sleep(max(0.0, next_send - time.perf_counter()))
                sock.sendall(data)
                next_send += SPACING_S
                conn[2] = offset + len(data)
                for k in range(BATCH):
                    keys[str(first + k)] = (c, conn[2] - 1)
        time.sleep(1.0)  # the creates answered (50 ms each) and the stamps queued
        stamps = [_transmit_stamps(conn[0]) for conn in conns]
        with urllib.request.urlopen(url + "/_emulator/sandboxes", timeout=30) as resp:
            rows = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        for conn in conns:
            conn[0].close()
    finally:
        proc.kill()
        proc.wait()
    received = {row["metadata"]["sandbox_idx"]: row["t_received"] for row in rows
                if (row.get("metadata") or {}).get("run_id") == run_id}
    assert len(received) == len(keys), (len(received), len(keys))
    return [received[idx] - stamps[c][key] for idx, (c, key) in keys.items()]


def test_arrival_stamps_are_the_kernels_transmit_times_while_the_emulator_is_busy():
    errors = _errors(plain=False)
    assert max(abs(e) for e in errors) < TOLERANCE_S, (sorted(errors)[-5:], sorted(errors)[:3], os.getloadavg())
    plain = _errors(plain=True)
    if max(plain) <= TOLERANCE_S:  # (how busy the plain server gets depends on the machine's other load)
        pytest.skip(f"the control run was exact too (max {max(plain) * 1e3:.1f} ms, load {os.getloadavg()}): "
                    "the check above passed, but this run does not show that it needed the fix")
