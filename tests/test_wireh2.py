"""wirehttp over HTTP/2 (loadgen/net/wireh2.py) against the real emulator, which speaks h2 by ALPN over TLS and
with prior knowledge in cleartext on the port it serves HTTP/1.1 on.

What a control plane needs of it: many creates in flight share a few connections (a hundred streams each),
a server's stream limit below the creates in flight still answers every one (more connections, refused
streams sent again), a GOAWAY mid-run loses no request and answers none twice (the streams above its last
stream id are sent again, unrecorded, on a new connection), a reset stream fails that exchange alone, answers
are read whole or as they arrive, and the phase's records and verdicts are those of HTTP/1.1.
"""

import asyncio
import json
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

from loadgen.emulator import start_emulator
from loadgen.net import exchange, wireh2
from loadgen.net.wirehttp import RemoteProtocolError, WirePool

_CREATE = json.dumps({"templateID": "base", "timeout": 300}).encode()
_HEADERS = {"x-api-key": "k", "content-type": "application/json"}


@pytest.fixture
def tls_emulator(monkeypatch):
    """An emulator under --tls whose CA this process trusts; the timed client asked for HTTP/2 by ALPN."""
    def start(**settings):
        emu = start_emulator("fast", tls=True, **settings)
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_file)
        started.append(emu)
        return emu

    monkeypatch.setenv("LOADGEN_WIRE_HTTP2", "alpn")
    started: list = []
    yield start
    for emu in started:
        emu.stop()


async def _creates(pool, url, n, timeout=20.0):
    """n creates at once, each in a phase of its own: [(status, phase)]."""
    async def one():
        phase = exchange.Phase(timeout)
        with exchange.within(phase):
            answer = await pool.request("POST", url + "/sandboxes", _HEADERS, _CREATE)
        return answer.status, phase, answer

    return await asyncio.gather(*[one() for _ in range(n)])


def test_many_creates_in_flight_share_a_few_connections(tls_emulator):
    emu = tls_emulator(create_latency="uniform:100,200")

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        try:
            results = await _creates(pool, emu.url, 1000)
            return results, pool.client(emu.url).http2_connections
        finally:
            pool.close()

    results, open_connections = asyncio.run(main())
    assert {status for status, _, _ in results} == {201}
    server = emu.stats()["server"]
    # a hundred streams a connection: 10 for 1,000 creates in flight (not 1,000 handshakes)
    assert server["connections_by_protocol"]["h2"] == 10 and open_connections == 10
    for _, phase, answer in results:  # one exchange each, timed on the wire by the kernel's stamps
        (recorded,) = phase.exchanges
        assert recorded.answered == answer.answered_at and recorded.sent == answer.sent_at and not recorded.late
        assert answer.kernel_stamped and 0.09 < answer.answered_at - answer.sent_at < 10
    truth = {row["sandbox_id"]: row for row in emu.sandboxes()}
    assert len(truth) == 1000


def test_a_server_stream_limit_below_the_creates_in_flight_still_answers_all(tls_emulator):
    emu = tls_emulator(create_latency="uniform:100,200", h2_max_streams=7)

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        try:
            results = await _creates(pool, emu.url, 300)
            return results, [conn.capacity for conn in pool.client(emu.url)._h2.conns]
        finally:
            pool.close()

    results, capacities = asyncio.run(main())
    assert [status for status, _, _ in results] == [201] * 300
    assert all(len(phase.exchanges) == 1 and phase.exchanges[0].answered for _, phase, _ in results)
    stats = emu.stats()
    # at most 7 streams a connection (a new connection's first requests wait for the server's SETTINGS): none
    # refused, and about 300 / 7 connections (fewer as the first creates are answered and free their streams)
    assert set(capacities) == {7} and stats["server"]["h2_refused_streams"] == 0
    assert stats["server"]["connections_by_protocol"]["h2"] >= 20
    assert stats["created"] == 300  # each create processed once


def test_a_reset_stream_fails_that_exchange_alone(tls_emulator):
    emu = tls_emulator(fault_reset=0.5, seed=7)

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        outcomes = []

        async def one():
            phase = exchange.Phase(10.0)
            with exchange.within(phase):
                try:
                    answer = await pool.request("POST", emu.url + "/sandboxes", _HEADERS, _CREATE)
                    outcomes.append((answer.status, phase))
                except RemoteProtocolError as exc:
                    outcomes.append((str(exc), phase))

        try:
            await asyncio.gather(*[one() for _ in range(60)])
            return outcomes, pool.client(emu.url).http2_connections
        finally:
            pool.close()

    outcomes, connections = asyncio.run(main())
    reset = [phase for status, phase in outcomes if status != 201]
    assert 0 < len(reset) < 60 and all("reset the stream" in s for s, _ in outcomes if s != 201)
    assert connections == 1  # the other streams on the connection carried on
    for phase in reset:  # sent, never answered: the provider's failure, on the wire
        (recorded,) = phase.exchanges
        assert recorded.sent and recorded.answered is None


def test_a_deadline_is_judged_per_stream_on_the_wire(tls_emulator):
    """A create that does not answer in time is that phase's timeout (lingering for its late answer when the
    phase asks), while the other streams on the connection answer."""
    emu = tls_emulator(fault_create_hang=0.5, seed=3)

    async def main():
        pool = WirePool(http2=wireh2.Origin)

        async def one():
            phase = exchange.Phase(1.0, linger_s=0.5)
            with exchange.within(phase):
                try:
                    return (await pool.request("POST", emu.url + "/sandboxes", _HEADERS, _CREATE)).status, phase
                except Exception as exc:  # noqa: BLE001
                    return type(exc).__name__, phase

        try:
            return await asyncio.gather(*[one() for _ in range(20)]), pool.client(emu.url).http2_connections
        finally:
            pool.close()

    outcomes, connections = asyncio.run(main())
    hung = [phase for status, phase in outcomes if status != 201]
    assert {status for status, _ in outcomes} == {201, "ReadTimeout"} and connections == 1
    for phase in hung:
        (recorded,) = phase.exchanges
        assert phase.timed_out and recorded.late and recorded.answered is None


def test_an_answer_read_as_it_arrives_is_answered_by_the_last_bytes_taken(tls_emulator):
    """envd's Connect server stream over HTTP/2 (as a control plane's SSE would be), read chunk by chunk:
    the exchange is answered by the stamp of the last bytes taken (the end event, an exec latency later)."""
    emu = tls_emulator(exec_latency="uniform:150,160")

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        try:
            created = await pool.request("POST", emu.url + "/sandboxes", _HEADERS, _CREATE)
            sandbox = json.loads(created.content)
            message = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "node -v"]}}).encode()
            headers = {"content-type": "application/connect+json", "e2b-sandbox-id": sandbox["sandboxID"],
                       "x-access-token": sandbox.get("envdAccessToken") or ""}
            phase = exchange.Phase(10.0)
            with exchange.within(phase):
                stream = await pool.stream("POST", emu.url + "/process.Process/Start", headers,
                                           struct.pack(">BI", 0, len(message)) + message)
                chunks, stamps = [], []
                while True:
                    chunk = await stream.read()
                    if not chunk:
                        break
                    chunks.append(chunk)
                    stamps.append(stream.answered_at)
                await stream.aclose()
            return stream, b"".join(chunks), stamps, phase, pool.client(emu.url).http2_connections
        finally:
            pool.close()

    stream, body, stamps, phase, connections = asyncio.run(main())
    assert stream.status == 200 and stream.complete and connections == 1
    assert b'"exitCode":0' in body and body.endswith(b"\x02\x00\x00\x00\x02{}")  # the end-of-stream envelope last
    (recorded,) = phase.exchanges
    assert recorded.answered == stamps[-1] and 0.14 < stamps[-1] - recorded.sent < 5  # the end event's own stamp


def test_cleartext_speaks_http2_only_when_asked(monkeypatch):
    with start_emulator("fast") as emu:
        async def main():
            pool = WirePool(http2=wireh2.Origin)
            try:
                return [r.status for r, in [(await pool.request("GET", emu.url + "/sandboxes", _HEADERS),)]]
            finally:
                pool.close()

        monkeypatch.delenv("LOADGEN_WIRE_HTTP2", raising=False)
        assert asyncio.run(main()) == [200]
        before = emu.stats()["server"]["connections_by_protocol"]
        monkeypatch.setenv("LOADGEN_WIRE_HTTP2", "1")
        assert asyncio.run(main()) == [200]
        after = emu.stats()["server"]["connections_by_protocol"]
    assert before["h2"] == 0 and after["h2"] == 1


def test_over_tls_the_client_speaks_http1_by_default_and_with_zero(tls_emulator, monkeypatch):
    emu = tls_emulator()

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        try:
            return [(await pool.request("GET", emu.url + "/sandboxes", _HEADERS)).status for _ in range(2)]
        finally:
            pool.close()

    for setting in ("0", None):  # HTTP/1.1 when told so, and by default
        if setting is None:
            monkeypatch.delenv("LOADGEN_WIRE_HTTP2", raising=False)
        else:
            monkeypatch.setenv("LOADGEN_WIRE_HTTP2", setting)
        assert asyncio.run(main()) == [200, 200]
    assert emu.stats()["server"]["connections_by_protocol"]["h2"] == 0


def test_a_setting_it_cannot_read_is_refused_before_anything_is_created(tmp_path):
    """LOADGEN_WIRE_HTTP2=yes-please: exit 2 naming the values it takes, and no create reaches the emulator."""
    import subprocess

    from tests.locust_harness import LOCUST, LOCUSTFILES, base_env

    with start_emulator("fast") as emu:
        out = subprocess.run(
            [LOCUST, "-f", str(LOCUSTFILES / "local.py"), "--headless", "-u", "2", "-r", "2",
             "--run-dir", str(tmp_path / "runs"), "--emulator-url", emu.url, "--only-summary"],
            capture_output=True, text=True, env={**base_env(), "LOADGEN_WIRE_HTTP2": "yes-please"}, timeout=120)
        assert out.returncode == 2, out.stderr[-3000:]
        assert "LOADGEN_WIRE_HTTP2" in out.stderr and "alpn" in out.stderr
        assert emu.stats()["ops"]["create"]["requests"] == 0


class _GoawayServer:
    """A cleartext HTTP/2 server (h2, prior knowledge) on 127.0.0.1, in threads of its own. Its first connection
    holds its answers until ``hold`` requests have arrived (or ``hold_s`` passed), answers the ``answer`` lowest
    streams, then sends GOAWAY naming the last of them and answers nothing more there; later connections answer
    each request at once. Every answer is 200 with ``{"conn": <connection number>, "path": <its path>}``."""

    def __init__(self, hold: int = 40, answer: int = 20, hold_s: float = 3.0):
        self.hold, self.answer, self.hold_s = hold, answer, hold_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.arrived: dict = {}  # connection number -> {stream id: path} of the complete requests
        self.answered: list = []  # (connection number, path), as answered
        self.last_stream_id = None  # the GOAWAY's
        self.first_closed_by_client = threading.Event()  # EOF on the first connection after its GOAWAY
        self.errors: list = []
        self._stopping = threading.Event()
        self._sockets: list = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.listener.close()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        number = 0
        while not self._stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()
            number += 1

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            self._speak(sock, number)
        except Exception as exc:  # noqa: BLE001 - the test says it
            self.errors.append(f"connection {number}: {exc!r}")

    def _speak(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(0.05)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        paths: dict = {}  # stream id -> path, from its headers
        complete = self.arrived.setdefault(number, {})
        holding = number == 0
        hold_until = time.monotonic() + self.hold_s
        while not self._stopping.is_set():
            if holding and complete and (len(complete) >= self.hold or time.monotonic() > hold_until):
                self._answer_some_then_goaway(sock, conn, number, complete)
                self._wait_for_eof(sock)
                return
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers)[":path"]
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    complete[event.stream_id] = paths[event.stream_id]
                    if not holding:
                        self._respond(conn, number, event.stream_id, paths[event.stream_id])
            sock.sendall(conn.data_to_send())

    def _respond(self, conn, number: int, stream_id: int, path: str) -> None:
        body = json.dumps({"conn": number, "path": path}).encode()
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json"),
                                      ("content-length", str(len(body)))])
        conn.send_data(stream_id, body, end_stream=True)
        with self.lock:
            self.answered.append((number, path))

    def _answer_some_then_goaway(self, sock, conn, number: int, complete: dict) -> None:
        self.last_stream_id = last = sorted(complete)[min(self.answer, len(complete)) - 1]
        for stream_id in sorted(complete):
            if stream_id <= last:
                self._respond(conn, number, stream_id, complete[stream_id])
        conn.close_connection(last_stream_id=last)  # NO_ERROR: the streams above ``last`` were not processed
        sock.sendall(conn.data_to_send())

    def _wait_for_eof(self, sock: socket.socket) -> None:
        """What the client sends after the GOAWAY (its own GOAWAY, say) is read and dropped, until it closes."""
        while not self._stopping.is_set():
            try:
                if not sock.recv(65536):
                    self.first_closed_by_client.set()
                    return
            except socket.timeout:
                continue


@pytest.fixture
def goaway_server(monkeypatch):
    """A _GoawayServer, and the timed client asked for HTTP/2 with prior knowledge in cleartext."""
    monkeypatch.setenv("LOADGEN_WIRE_HTTP2", "1")
    server = _GoawayServer()
    try:
        yield server
    finally:
        server.stop()


def test_a_goaway_mid_run_sends_the_unprocessed_streams_again_on_a_new_connection(goaway_server):
    """A server that is going away (a deploy, a connection's age) names the last stream it processed: the streams
    above it were not processed (RFC 9113 §6.8), so wireh2 sends them again on a new connection, and records
    only the exchange that was answered. None is lost, none is processed twice, and the drained connection is
    closed by the client."""
    server = goaway_server

    async def posts(pool, n):
        async def one(i):
            phase = exchange.Phase(10.0)
            with exchange.within(phase):
                answer = await pool.request("POST", f"{server.url}/r/{i}", _HEADERS, json.dumps({"i": i}).encode())
            return f"/r/{i}", answer, phase

        return await asyncio.gather(*[one(i) for i in range(n)])

    async def main():
        pool = WirePool(http2=wireh2.Origin)
        try:
            async with asyncio.timeout(8):
                results = await posts(pool, 40)
                # the first connection, drained, is closed by the client itself (not by pool.close below)
                closed = await asyncio.to_thread(server.first_closed_by_client.wait, 3)
            return results, closed, pool.client(server.url)._h2.opened
        finally:
            pool.close()

    results, first_closed, opened = asyncio.run(main())
    assert not server.errors
    first, later = server.arrived[0], server.arrived.get(1, {})
    last = server.last_stream_id
    assert len(first) == 40 and last == sorted(first)[19]  # all 40 sent on the first connection; 20 answered
    refused = {path for stream_id, path in first.items() if stream_id > last}
    assert len(refused) == 20 and set(later.values()) == refused  # the rest sent again on the second
    assert opened == 2 and set(server.arrived) == {0, 1} and first_closed
    answered = [path for _, path in server.answered]
    assert sorted(answered) == sorted(f"/r/{i}" for i in range(40))  # each answered once: none lost, none twice
    for path, answer, phase in results:
        assert answer.status == 200
        body = json.loads(answer.content)
        assert body == {"conn": 1 if path in refused else 0, "path": path}
        (recorded,) = phase.exchanges  # the refused send is not an exchange of the phase's
        assert recorded.answered == answer.answered_at and recorded.sent == answer.sent_at and not recorded.late
