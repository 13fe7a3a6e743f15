"""How many full e2b lifecycles a second the emulator serves on one core.

A lifecycle is what loadgen does per sandbox: `POST /v2/sandboxes`, two
`process.Process/Start` Connect streams (`node -v`), `DELETE /sandboxes/{id}`,
all on one keep-alive connection. The client is deliberately lean (raw
uvloop protocols, pre-built requests, no SDK) and runs in separate
processes, so that the figure is the emulator's and not the client's.

The emulator is a single-threaded process; with --pin it is pinned to CPU 0
and the clients to the other CPUs. Two figures are printed:
- lifecycles/s (wall): what the clients achieved;
- lifecycles per emulator CPU-second: the emulator's capacity on one core
  (equal to the wall figure when the emulator is at 100% of its core, and the
  honest figure when the client is the bottleneck).

Usage:
  python bench/emulator_throughput.py [--seconds S] [--clients N] [--conns C] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CREATE_BODY = b'{"templateID":"base","timeout":300,"metadata":{"run_id":"bench","sandbox_idx":"%d"}}'
START_MSG = b'{"process":{"cmd":"/bin/bash","args":["-l","-c","node -v"]},"stdin":false}'
START_BODY = bytes([0]) + len(START_MSG).to_bytes(4, "big") + START_MSG


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


def client_main(url: str, conns: int, start_at: float, seconds: float, worker: int, out: mp.Queue):
    import uvloop

    host_port = url.split("//", 1)[1]
    host, port = host_port.split(":")

    async def run():
        loop = asyncio.get_running_loop()
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        stop_at = time.monotonic() + seconds
        counter = [0]
        dones, protos = [], []
        for c in range(conns):
            done = loop.create_future()
            _, proto = await loop.create_connection(
                lambda: LifecycleClient(host_port, counter, stop_at, (worker * 1000 + c) * 10_000_000, done),
                host, int(port))
            dones.append(done)
            protos.append(proto)
        await asyncio.gather(*dones)
        return counter[0], sum(p.errors for p in protos)

    out.put(uvloop.run(run()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1, help="client processes")
    ap.add_argument("--conns", type=int, default=64, help="connections per client process")
    ap.add_argument("--pin", action="store_true", help="pin the emulator to CPU 0, clients to the rest")
    ap.add_argument("--profile", default="fast")
    args = ap.parse_args()

    from loadgen.emulator import start_emulator

    cpus = sorted(os.sched_getaffinity(0))
    with start_emulator(args.profile) as emu:
        if args.pin and len(cpus) > 1:
            os.sched_setaffinity(emu.pid, {cpus[0]})
        out: mp.Queue = mp.Queue()
        start_at = time.time() + 0.5
        procs = [mp.Process(target=client_main, args=(emu.url, args.conns, start_at, args.seconds, w, out))
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
        cpu = after["server"]["cpu_s"] - before["server"]["cpu_s"]
        wall = after["server"]["uptime_s"] - before["server"]["uptime_s"]
        report = {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
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
            "emulator_live_after": after["live"],
        }
    print(json.dumps(report, indent=2))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
