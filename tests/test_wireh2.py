"""wirehttp over HTTP/2 (loadgen/net/wireh2.py) against the real emulator, which speaks h2 by ALPN over TLS and
with prior knowledge in cleartext on the port it serves HTTP/1.1 on.

What a control plane needs of it: many creates in flight share a few connections (a hundred streams each),
a server's stream limit below the creates in flight still answers every one (more connections, refused
streams sent again), a reset stream fails that exchange alone, answers are read whole or as they arrive,
and the phase's records and verdicts are those of HTTP/1.1.
"""

import asyncio
import json
import struct

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
