"""loadgen.net.wirehttp: the control-plane HTTP client whose answer times are the kernel's.

The servers here are plain blocking sockets on real OS threads, so what they
record (when they sent) does not depend on the client's event loop; the
client runs on uvloop, as on the bridge.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import struct
import threading
import time

import pytest
import uvloop

from loadgen.net import wirehttp
from tests.tcp_states import time_wait_sockets_towards


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and answers each request with `script(request_bytes, n)`.

    `script` returns what to do: bytes to send (then keep the connection), or
    ("close", bytes) to send then close, ("rst",) to reset, ("hang",) to never answer,
    ("stream", [bytes, seconds, bytes, ...]) to send parts with pauses between them
    (each part's send time is in `sent_at`).
    """

    def __init__(self, script, delay_s: float = 0.0, tls: ssl.SSLContext = None, port: int = 0):
        self.script = script
        self.delay_s = delay_s
        self.tls = tls
        self.connections = 0
        self.closed_by_client = 0
        self.reset_by_client = 0
        self.requests = 0
        self.sent_at: list[float] = []
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        buf = b""
        with conn:
            while not self._stop:
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:  # an idle connection the client let go of (no TIME_WAIT)
                    self.closed_by_client += 1
                    self.reset_by_client += 1
                    return
                except OSError:
                    return
                if not data:
                    self.closed_by_client += 1
                    return
                buf += data
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    continue
                request, buf = head + sep + rest[:length], rest[length:]
                self.received.append(request)
                self.requests += 1
                action = self.script(request, self.requests)
                time.sleep(self.delay_s)
                if isinstance(action, bytes):
                    action = ("send", action)
                if action[0] == "hang":
                    time.sleep(30)
                    return
                if action[0] == "rst":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if action[0] == "stream":
                    try:
                        for part in action[1]:
                            if isinstance(part, float):
                                time.sleep(part)
                            else:
                                self.sent_at.append(time.time())
                                conn.sendall(part)
                    except OSError:
                        self.closed_by_client += 1
                        return
                    continue
                self.sent_at.append(time.time())
                conn.sendall(action[1])
                if action[0] == "close":
                    return

    def stop(self):
        self._stop = True
        try:  # wakes the accept in progress, which would hold the listening socket (and its port) open
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def run(coro):
    return uvloop.run(coro)


@pytest.fixture
def server_factory():
    servers = []

    def make(script, **kw):
        srv = ScriptedServer(script, **kw)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def test_answer_time_is_the_kernels_arrival_not_when_a_busy_loop_reads_it(server_factory):
    srv = server_factory(lambda req, n: ok(), delay_s=0.1)
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        async def stall_the_loop():
            await asyncio.sleep(0.02)
            time.sleep(0.5)  # the loop is busy while the answer arrives (at ~0.1 s)

        staller = asyncio.ensure_future(stall_the_loop())
        answer = await client.request("POST", "/sandboxes", {"content-type": "application/json"}, b"{}", timeout=5)
        read_at = time.time()
        await staller
        return answer, read_at

    answer, read_at = run(scenario())
    assert answer.status == 200 and answer.content == b'{"ok":true}'
    assert answer.kernel_stamped
    assert read_at - answer.answered_at > 0.3, "the loop was not stalled: the test proves nothing"
    assert 0 <= answer.answered_at - srv.sent_at[0] < 0.02
    assert 0.09 < answer.answered_at - answer.sent_at < 0.2


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def test_a_stream_is_answered_by_the_last_bytes_the_caller_needed(server_factory):
    """An SSE stream: an output event at once, the exit event 0.2 s later (while the loop is stalled),
    then the server keeps the stream open for 5 s more. The caller reads until the exit event and
    closes: the exchange is answered by the exit event's arrival (the kernel's stamp, recorded on
    the phase before the close), the call does not wait for the stream's end, and the connection,
    its answer unfinished, is not reused."""
    from loadgen.net.exchange import Phase, within

    srv = server_factory(lambda req, n: ("stream", [SSE_HEAD + _chunk(b'data: {"output":"v20"}\n\n'), 0.2,
                                                    _chunk(b'data: {"exitCode":0}\n\n'), 5.0, b"0\r\n\r\n"]))
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        async def stall_the_loop():
            await asyncio.sleep(0.1)
            time.sleep(0.5)  # the loop is busy while the exit event arrives (at ~0.2 s)

        with within(Phase()) as phase:
            stream = await client.stream("GET", "/io", {}, timeout=10)
            staller = asyncio.ensure_future(stall_the_loop())
            got = b""
            while b"exitCode" not in got:
                got += await stream.read()
            read_at, before_close = time.time(), phase.exchanges[0].answered
            await stream.aclose()
            await staller
        return stream, got, phase, read_at, before_close

    started = time.time()
    stream, got, phase, read_at, before_close = run(scenario())
    assert time.time() - started < 3, "the caller waited for the end of the stream"
    assert stream.status == 200 and b'"output":"v20"' in got
    (x,) = phase.exchanges
    assert x.answered == before_close == stream.answered_at
    assert read_at - x.answered > 0.2, "the loop was not stalled: the test proves nothing"
    assert 0 <= x.answered - srv.sent_at[1] < 0.02  # the exit event's arrival
    assert 0.15 < x.answered - x.sent < 0.4
    assert not client._idle  # unfinished: closed, not pooled


def test_a_stream_read_to_its_end_keeps_its_connection(server_factory):
    srv = server_factory(lambda req, n: ("stream", [SSE_HEAD + _chunk(b"data: 1\n\n"), 0.05,
                                                    _chunk(b"data: 2\n\n") + b"0\r\n\r\n"]))
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        bodies = []
        for _ in range(2):
            stream = await client.stream("GET", "/io", {}, timeout=10)
            body = b""
            while True:
                chunk = await stream.read()
                if not chunk:
                    break
                body += chunk
            await stream.aclose()
            bodies.append((body, stream.answered_at, stream.sent_at))
        return bodies

    bodies = run(scenario())
    assert [b for b, _, _ in bodies] == [b"data: 1\n\ndata: 2\n\n"] * 2
    assert all(0.04 < answered - sent < 0.5 for _, answered, sent in bodies)
    assert srv.connections == 1  # the whole answer was read: the connection went back to the pool


def test_request_carries_host_headers_and_body(server_factory):
    srv = server_factory(lambda req, n: ok())
    client = wirehttp.WireClient(srv.url + "/api/")
    answer = run(client.request("POST", "/sandboxes", {"x-api-key": "k", "content-type": "application/json"},
                                b'{"a":1}', timeout=5))
    request = srv.received[0]
    assert request.startswith(b"POST /api/sandboxes HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % srv.port in request
    assert b"\r\nx-api-key: k\r\n" in request and b"\r\ncontent-length: 7\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a":1}')
    assert dict(answer.headers)["content-type"] == "application/json"


def test_keep_alive_reuses_one_connection(server_factory):
    srv = server_factory(lambda req, n: ok() if n % 2 else b"HTTP/1.1 204 No Content\r\n\r\n")
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        return [await client.request("DELETE" if i % 2 else "POST", f"/s/{i}", {}, None, timeout=5)
                for i in range(6)]

    answers = run(scenario())
    assert [a.status for a in answers] == [200, 204] * 3
    assert srv.connections == 1
    assert answers[0].connect_s > 0 and all(a.connect_s == 0.0 for a in answers[1:])
    # the set-up as the wire saw it: TCP's handshake round trip on loopback, well under the loop's view
    assert 0 < answers[0].setup_s <= answers[0].connect_s and all(a.setup_s == 0.0 for a in answers[1:])


def test_a_connection_the_server_closed_while_idle_is_not_reused(server_factory):
    srv = server_factory(lambda req, n: ("close", ok(extra=b"connection: keep-alive\r\n")))
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        first = await client.request("GET", "/a", {}, None, timeout=5)
        await asyncio.sleep(0.1)  # the server's FIN is in
        second = await client.request("GET", "/b", {}, None, timeout=5)
        return first, second

    first, second = run(scenario())
    assert first.status == second.status == 200
    assert srv.connections == 2


def test_connections_let_go_while_idle_leave_no_time_wait(server_factory):
    """A burst closes the connections it cannot pool; each would hold a port for 60 s in TIME_WAIT."""
    srv = server_factory(lambda req, n: ok())
    client = wirehttp.WireClient(srv.url, max_idle=2)

    async def scenario():
        answers = await asyncio.gather(*(client.request("GET", f"/{i}", {}, None, timeout=10) for i in range(20)))
        client.close()  # the two pooled ones too
        return answers

    answers = run(scenario())
    assert [a.status for a in answers] == [200] * 20
    deadline = time.monotonic() + 5
    while srv.closed_by_client < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.connections == 20 and srv.reset_by_client == 20
    assert time_wait_sockets_towards(int(srv.url.rsplit(":", 1)[1])) == 0


def test_chunked_close_delimited_and_interim_answers(server_factory):
    answers = {
        1: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        2: b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + ok(b"after-hints"),
        3: ("close", b"HTTP/1.1 200 OK\r\n\r\nuntil-close"),
        4: ok(b"fresh"),
    }
    srv = server_factory(lambda req, n: answers[n])
    client = wirehttp.WireClient(srv.url)

    async def scenario():
        return [await client.request("GET", "/", {}, None, timeout=5) for _ in range(4)]

    chunked, hinted, closed, fresh = run(scenario())
    assert chunked.content == b"abcde"
    assert hinted.status == 200 and hinted.content == b"after-hints" and ("link", "</x>") not in hinted.headers
    assert closed.content == b"until-close" and fresh.content == b"fresh"
    assert srv.connections == 2  # only the close-delimited answer's connection is not reused


@pytest.mark.parametrize("action, error", [
    (("rst",), wirehttp.ReadError),
    (("close", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\ntoo short"), wirehttp.RemoteProtocolError),
    (("close", b""), wirehttp.RemoteProtocolError),
    (b"NOT HTTP AT ALL\r\n\r\n", wirehttp.RemoteProtocolError),
])
def test_broken_answers_raise_the_matching_error(server_factory, action, error):
    srv = server_factory(lambda req, n: action)
    with pytest.raises(error):
        run(wirehttp.WireClient(srv.url).request("POST", "/", {}, b"x", timeout=5))


def test_no_answer_is_a_read_timeout(server_factory):
    srv = server_factory(lambda req, n: ("hang",))
    started = time.monotonic()
    with pytest.raises(wirehttp.ReadTimeout) as caught:
        run(wirehttp.WireClient(srv.url).request("POST", "/", {}, b"x", timeout=0.5))
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 5


def test_nobody_listening_is_a_connect_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(wirehttp.ConnectError):
        run(wirehttp.WireClient(f"http://127.0.0.1:{port}").request("GET", "/", {}, None, timeout=5))


def test_only_http_origins_are_accepted():
    with pytest.raises(ValueError):
        wirehttp.WireClient("ftp://example.invalid/")


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_exchange_is_kernel_stamped_and_kept_alive(server_factory, tmp_path):
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.set_alpn_protocols(["http/1.1"])
    srv = server_factory(lambda req, n: ok(b"over tls %d" % n), delay_s=0.05, tls=server_tls)
    client_tls = wirehttp.default_ssl_context()
    client_tls.load_verify_locations(cert)
    client = wirehttp.WireClient(srv.url, ssl_context=client_tls)

    async def scenario():
        async def stall_the_loop():
            await asyncio.sleep(0.02)
            time.sleep(0.4)  # the loop is busy while the first answer arrives

        staller = asyncio.ensure_future(stall_the_loop())
        first = await client.request("POST", "/sandboxes", {}, b"{}", timeout=5)
        read_at = time.time()
        await staller
        await asyncio.sleep(0.1)  # TLS 1.3 session tickets arrive while the connection is idle
        second = await client.request("DELETE", "/sandboxes/x", {}, None, timeout=5)
        return first, second, read_at

    first, second, read_at = run(scenario())
    assert (first.content, second.content) == (b"over tls 1", b"over tls 2")
    assert srv.connections == 1
    assert read_at - first.answered_at > 0.2, "the loop was not stalled: the test proves nothing"
    assert first.kernel_stamped and 0 <= first.answered_at - srv.sent_at[0] < 0.02
    assert first.setup_s > 0 and second.setup_s == 0.0  # the TLS handshake, as the wire saw it


def test_tls_with_an_untrusted_certificate_is_a_connect_error(server_factory, tmp_path):
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    srv = server_factory(lambda req, n: ok(), tls=server_tls)
    with pytest.raises(wirehttp.ConnectError, match="certificate"):
        run(wirehttp.WireClient(srv.url).request("GET", "/", {}, None, timeout=5))


def _server_tls(directory):
    """A server's TLS context with a certificate of its own, made in `directory`, and that certificate."""
    directory.mkdir()
    cert, key = _self_signed(directory)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    return server_tls, cert


def test_tls_trusts_ssl_cert_file_per_origin(server_factory, tmp_path, monkeypatch):
    """SSL_CERT_FILE names the roots (as for httpx and OpenSSL), read when a pool meets a new origin."""
    servers = []
    for name in ("a", "b"):
        server_tls, cert = _server_tls(tmp_path / name)
        servers.append((server_factory(lambda req, n: ok(b"trusted"), tls=server_tls), cert))
    pool = wirehttp.WirePool()

    async def get(url):
        return (await pool.request("GET", url + "/", {}, None, timeout=5)).content

    for srv, cert in servers:  # each origin's own CA, named when the pool first meets it
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert run(get(srv.url)) == b"trusted"
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(wirehttp.ConnectError, match="certificate"):
        run(wirehttp.WireClient(servers[0][0].url).request("GET", "/", {}, None, timeout=5))


def test_a_new_server_on_an_origin_already_met_is_trusted_by_the_roots_named_now(server_factory, tmp_path,
                                                                                   monkeypatch):
    """A server that replaces another on the same address with a CA of its own (an emulator restarted
    on its port, with SSL_CERT_FILE naming its new CA) is trusted: the pool's clients are per origin
    and per roots, not per origin only."""
    made = [_server_tls(tmp_path / name) for name in ("old", "new")]
    pool = wirehttp.WirePool()

    async def scenario():
        monkeypatch.setenv("SSL_CERT_FILE", str(made[0][1]))
        old = server_factory(lambda req, n: ("close", ok(b"old")), tls=made[0][0])
        first = (await pool.request("GET", old.url + "/", {}, None, timeout=5)).content
        old.stop()
        new = server_factory(lambda req, n: ok(b"new"), tls=made[1][0], port=old.port)
        monkeypatch.setenv("SSL_CERT_FILE", str(made[1][1]))
        second = (await pool.request("GET", new.url + "/", {}, None, timeout=5)).content
        return first, second, new

    first, second, new = run(scenario())
    assert (first, second) == (b"old", b"new") and new.requests == 1


def test_pool_gives_one_client_per_origin_and_closes_connections_left_idle(server_factory):
    first, second = server_factory(lambda req, n: ok()), server_factory(lambda req, n: ok())
    pool = wirehttp.WirePool(max_idle_per_origin=8, idle_expiry_s=0.3)

    async def scenario():
        assert pool.client(first.url + "/a") is pool.client(first.url + "/b")
        assert pool.client(first.url) is not pool.client(second.url)
        for srv in (first, second):
            await pool.client(srv.url).request("GET", "/", {}, None, timeout=5)
        await asyncio.sleep(0.1)
        early = first.closed_by_client + second.closed_by_client
        deadline = time.monotonic() + 5  # the sweep runs on this loop, past the expiry
        while first.closed_by_client + second.closed_by_client < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return early, (first.closed_by_client, second.closed_by_client)

    assert run(scenario()) == (0, (1, 1))
