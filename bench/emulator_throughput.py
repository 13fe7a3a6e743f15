"""How many full e2b lifecycles a second the emulator serves on one core.

A lifecycle is what loadgen does per sandbox: `POST /v2/sandboxes`, two
`process.Process/Start` Connect streams (`node -v`), `DELETE /sandboxes/{id}`,
all on one keep-alive connection. The client is deliberately lean (raw
uvloop protocols, pre-built requests, no SDK) and runs in separate
processes, so that the figure is the emulator's and not the client's.

--protocol picks what the client speaks on the emulator's one port: h1
(HTTP/1.1, one lifecycle at a time per connection), h2c (HTTP/2 with prior
knowledge; --streams lifecycles at once per connection, each on its own
streams), h1+tls and h2+tls (the emulator started with --tls; HTTP/2 chosen
by ALPN). The HTTP/2 client frames with `h2`, so it is dearer than the
emulator per request: use more --clients to keep the emulator busy.

The emulator is a single-threaded process; with --pin it is pinned to CPU 0
and the clients to the other CPUs. It prints:
- lifecycles/s (wall): what the clients achieved;
- lifecycles per emulator CPU-second: the emulator's capacity on one core
  (equal to the wall figure when the emulator is at 100% of its core, and the
  honest figure when the client is the bottleneck);
- and the lean clients' CPU per lifecycle: what the protocol's framing
  (and TLS) costs a Python client at the least.

Usage:
  python bench/emulator_throughput.py [--seconds S] [--clients N] [--conns C] [--pin]
                                      [--protocol h1|h2c|h1+tls|h2+tls] [--streams K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shlex
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CREATE_BODY = b'{"templateID":"base","timeout":300,"metadata":{"run_id":"bench","sandbox_idx":"%d"}}'
START_MSG = b'{"process":{"cmd":"/bin/bash","args":["-l","-c","node -v"]},"stdin":false}'
START_BODY = bytes([0]) + len(START_MSG).to_bytes(4, "big") + START_MSG
PROTOCOLS = ("h1", "h2c", "h1+tls", "h2+tls")


class LifecycleClient(asyncio.Protocol):
    """One keep-alive connection running lifecycles back to back."""

    def __init__(self, host_port: str, counter: list, stop_at: float, idx_base: int, done: asyncio.Future):
        self.host = host_port.encode()
        self.counter = counter
        self.stop_at = stop_at
        self.idx = idx_base
        self.done = done
        self.buf = b""
        self.step = 0
        self.sid = b""
        self.errors = 0

    def connection_made(self, transport):
        self.t = transport
        self.next_lifecycle()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)

    def next_lifecycle(self):
        if time.monotonic() >= self.stop_at:
            self.t.close()
            return
        self.idx += 1
        self.step = 0
        body = CREATE_BODY % self.idx
        self.t.write(b"POST /v2/sandboxes HTTP/1.1\r\nhost: " + self.host +
                     b"\r\nx-api-key: e2b_bench\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)

    def send_exec(self):
        self.t.write(b"POST /process.Process/Start HTTP/1.1\r\nhost: " + self.host +
                     b"\r\ne2b-sandbox-id: " + self.sid + b"\r\nx-access-token: ea" + self.sid[1:] +
                     b"\r\ncontent-type: application/connect+json\r\nconnect-protocol-version: 1\r\n"
                     b"content-length: %d\r\n\r\n" % len(START_BODY) + START_BODY)

    def send_kill(self):
        self.t.write(b"DELETE /sandboxes/" + self.sid + b" HTTP/1.1\r\nhost: " + self.host +
                     b"\r\nx-api-key: e2b_bench\r\n\r\n")

    def data_received(self, data):
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end + 2]
            if b"transfer-encoding: chunked" in head:
                term = buf.find(b"\r\n0\r\n\r\n", end)
                if term < 0:
                    break
                body, buf = buf[end + 4:term], buf[term + 7:]
            else:
                i = head.find(b"content-length: ")
                n = int(head[i + 16:head.index(b"\r\n", i)]) if i >= 0 else 0
                if len(buf) < end + 4 + n:
                    break
                body, buf = buf[end + 4:end + 4 + n], buf[end + 4 + n:]
            self.on_response(head[9:12], body)
        self.buf = buf

    def on_response(self, status, body):
        step = self.step
        if step == 0:
            if status != b"201":
                self.errors += 1
                self.next_lifecycle()
                return
            i = body.index(b'"sandboxID":"') + 13
            self.sid = body[i:body.index(b'"', i)]
            self.step = 1
            self.send_exec()
        elif step in (1, 2):
            if b"djIwLjE4LjEK" not in body or b'"exitCode":0' not in body:  # base64 of "v20.18.1\n"
                self.errors += 1
            self.step = step + 1
            if step == 1:
                self.send_exec()
            else:
                self.send_kill()
        else:
            if status != b"204":
                self.errors += 1
            self.counter[0] += 1
            self.next_lifecycle()


class _Chain:
    """One lifecycle after another on HTTP/2 streams: create, two commands, kill."""

    __slots__ = ("idx", "step", "sid")

    def __init__(self, idx: int):
        self.idx, self.step, self.sid = idx, 0, b""


class H2LifecycleClient(asyncio.Protocol):
    """One HTTP/2 connection running `streams` lifecycles at once, each request on a stream of its own."""

    def __init__(self, host_port: str, counter: list, stop_at: float, idx_base: int, done: asyncio.Future,
                 streams: int):
        import h2.config
        import h2.connection
        import h2.events

        self.ev = h2.events
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.authority = host_port.encode()
        self.counter, self.stop_at, self.idx, self.done, self.streams = counter, stop_at, idx_base, done, streams
        self.pending = {}  # stream id -> [chain, status, body]
        self.running = 0
        self.errors = 0

    def connection_made(self, transport):
        self.t = transport
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(2 ** 30)
        for _ in range(self.streams):
            self.idx += 1
            self.running += 1
            self.send_create(_Chain(self.idx))
        self.t.write(self.conn.data_to_send())

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)

    def _send(self, chain, method, path, headers, body=b""):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", method), (b":path", path), (b":scheme", b"http"),
                                     (b":authority", self.authority), *headers], end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.pending[sid] = [chain, b"", b""]

    def send_create(self, chain):
        chain.step = 0
        self._send(chain, b"POST", b"/v2/sandboxes", [(b"x-api-key", b"e2b_bench"), (b"content-type", b"application/json")],
                   CREATE_BODY % chain.idx)

    def send_exec(self, chain):
        self._send(chain, b"POST", b"/process.Process/Start", [
            (b"e2b-sandbox-id", chain.sid), (b"x-access-token", b"ea" + chain.sid[1:]),
            (b"content-type", b"application/connect+json"), (b"connect-protocol-version", b"1")], START_BODY)

    def data_received(self, data):
        ev = self.ev
        for event in self.conn.receive_data(data):
            kind = type(event)
            if kind is ev.ResponseReceived:
                self.pending[event.stream_id][1] = dict(event.headers)[b":status"]
            elif kind is ev.DataReceived:
                self.pending[event.stream_id][2] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is ev.StreamEnded:
                chain, status, body = self.pending.pop(event.stream_id)
                self.on_response(chain, status, body)
            elif kind is ev.StreamReset:
                self.errors += 1
                self.pending.pop(event.stream_id, None)
        out = self.conn.data_to_send()
        if out:
            self.t.write(out)
        if not self.running and not self.pending:
            self.t.close()

    def on_response(self, chain, status, body):
        step = chain.step
        if step == 0:
            if status != b"201":
                self.errors += 1
                self.next_lifecycle(chain)
                return
            i = body.index(b'"sandboxID":"') + 13
            chain.sid = body[i:body.index(b'"', i)]
            chain.step = 1
            self.send_exec(chain)
        elif step in (1, 2):
            if b"djIwLjE4LjEK" not in body or b'"exitCode":0' not in body:
                self.errors += 1
            chain.step = step + 1
            if step == 1:
                self.send_exec(chain)
            else:
                self._send(chain, b"DELETE", b"/sandboxes/" + chain.sid, [(b"x-api-key", b"e2b_bench")])
        else:
            if status != b"204":
                self.errors += 1
            self.counter[0] += 1
            self.next_lifecycle(chain)

    def next_lifecycle(self, chain):
        if time.monotonic() >= self.stop_at:
            self.running -= 1
            return
        self.idx += 1
        chain.idx = self.idx
        self.send_create(chain)


def client_main(url: str, conns: int, start_at: float, seconds: float, worker: int, out: mp.Queue,
                protocol: str = "h1", ca_file: str = None, streams: int = 8):
    import uvloop

    host_port = url.split("//", 1)[1]
    host, port = host_port.split(":")
    context = None
    if protocol.endswith("+tls"):
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"] if protocol.startswith("h2") else ["http/1.1"])

    async def run():
        loop = asyncio.get_running_loop()
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        stop_at = time.monotonic() + seconds
        counter = [0]
        dones, protos = [], []
        for c in range(conns):
            done = loop.create_future()
            base = (worker * 1000 + c) * 10_000_000
            if protocol.startswith("h2"):
                factory = lambda: H2LifecycleClient(host_port, counter, stop_at, base, done, streams)  # noqa: E731
            else:
                factory = lambda: LifecycleClient(host_port, counter, stop_at, base, done)  # noqa: E731
            _, proto = await loop.create_connection(factory, host, int(port), ssl=context,
                                                    server_hostname=host if context else None)
            dones.append(done)
            protos.append(proto)
        cpu0 = time.process_time()
        await asyncio.gather(*dones)
        return counter[0], sum(p.errors for p in protos), time.process_time() - cpu0

    out.put(uvloop.run(run()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1, help="client processes")
    ap.add_argument("--conns", type=int, default=64, help="connections per client process")
    ap.add_argument("--pin", action="store_true", help="pin the emulator to CPU 0, clients to the rest")
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="h1")
    ap.add_argument("--streams", type=int, default=8, help="HTTP/2: lifecycles in flight per connection")
    args = ap.parse_args()

    from loadgen.emulator import start_emulator

    cpus = sorted(os.sched_getaffinity(0))
    with start_emulator(args.profile, tls=args.protocol.endswith("+tls")) as emu:
        if args.pin and len(cpus) > 1:
            os.sched_setaffinity(emu.pid, {cpus[0]})
        out: mp.Queue = mp.Queue()
        start_at = time.time() + 0.5
        procs = [mp.Process(target=client_main, args=(emu.url, args.conns, start_at, args.seconds, w, out,
                                                      args.protocol, emu.ca_file, args.streams))
                 for w in range(args.clients)]
        for p in procs:
            p.start()
            if args.pin and len(cpus) > 1:
                os.sched_setaffinity(p.pid, set(cpus[1:]))
        before = emu.stats()
        results = [out.get() for _ in procs]
        after = emu.stats()
        for p in procs:
            p.join()
        lifecycles = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        client_cpu = sum(r[2] for r in results)
        cpu = after["server"]["cpu_s"] - before["server"]["cpu_s"]
        wall = after["server"]["uptime_s"] - before["server"]["uptime_s"]
        report = {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "protocol": args.protocol,
            "seconds": args.seconds,
            "clients": args.clients,
            "connections": args.clients * args.conns,
            "lifecycles": lifecycles,
            "errors": errors,
            "lifecycles_per_s_wall": round(lifecycles / args.seconds),
            "emulator_cpu_s": round(cpu, 3),
            "emulator_cpu_utilisation": round(cpu / wall, 3) if wall else None,
            "lifecycles_per_emulator_cpu_s": round(lifecycles / cpu) if cpu else None,
            "requests_per_s_wall": round(4 * lifecycles / args.seconds),
            # the lean clients' own cost: what framing the protocol costs a Python client, at least
            "client_cpu_ms_per_lifecycle": round(client_cpu / lifecycles * 1000, 3) if lifecycles else None,
            "emulator_live_after": after["live"],
            "emulator_connections_by_protocol": after["server"]["connections_by_protocol"],
        }
    print(json.dumps(report, indent=2))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
