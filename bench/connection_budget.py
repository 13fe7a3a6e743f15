"""What N concurrent creates cost a client in connections, descriptors, ports and CPU: HTTP/1.1 vs HTTP/2.

One client process sends N `POST /v2/sandboxes` at once to one emulator over
TLS (`--tls`, its CA trusted), whose creates take --latency-ms each, so that
all N are in flight together. The emulator advertises --streams concurrent
HTTP/2 streams per connection (0 = no limit; load balancers allow 100-256).
Clients:

- `wirehttp-h1`: loadgen's own timed client on HTTP/1.1 (`LOADGEN_WIRE_HTTP2=0`),
  one connection per request in flight;
- `wirehttp-h2`: the same client as loadgen's control planes run it, HTTP/2
  by ALPN, a hundred streams a connection (fewer under a server limit), each
  stream timed by the kernel's stamps (loadgen/net/wireh2.py);
- `httpx-h2`: httpx with http2=True (what runloop's and codesandbox's
  adapters use under LOADGEN_HTTP2=1), ALPN h2;
- `pyqwest-h2`: pyqwest (e2b's own SDK client), ALPN h2;
- `httpx-h1`: httpx on HTTP/1.1 (only for N <= 2,000: its pool scans every
  connection per queued request, so it is quadratic in N).

Printed per client: connections the emulator saw opened (TLS handshakes),
the client's descriptors and established sockets to the emulator at the
peak (all N in flight), the wall time from the first send to the last
answer (a client that queues behind a stream limit shows it here), and
the client's CPU per create (process time, every thread, including the
TLS handshakes and the event loop).

Usage:
  python bench/connection_budget.py [--n 10000] [--latency-ms 20000] [--streams 0,100]
                                    [--clients wirehttp-h1,wirehttp-h2,httpx-h2,pyqwest-h2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402

CLIENTS = ("wirehttp-h1", "wirehttp-h2", "httpx-h2", "pyqwest-h2", "httpx-h1")
BODY = b'{"templateID":"base","timeout":300,"metadata":{"run_id":"budget","sandbox_idx":"%d"}}'
HEADERS = {"x-api-key": "e2b_bench", "content-type": "application/json"}


def _sockets_to(port: int) -> int:
    """Established TCP sockets of this process whose peer is 127.0.0.1:port (from /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peer = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[2] == peer and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


async def _send_all(client: str, url: str, n: int, ca_file: str):
    import ssl

    if client.startswith("wirehttp"):
        from loadgen.net import wireh2
        from loadgen.net.wirehttp import default_ssl_context, WirePool

        http2 = client == "wirehttp-h2"
        os.environ["SSL_CERT_FILE"] = ca_file
        os.environ["LOADGEN_WIRE_HTTP2"] = "alpn" if http2 else "0"
        pool = WirePool(max_idle_per_origin=n, ssl_context=default_ssl_context(h2=http2),
                        http2=wireh2.Origin if http2 else None)

        async def one(i):
            answer = await pool.request("POST", url + "/v2/sandboxes", dict(HEADERS), BODY % i, 600)
            return answer.status
    elif client.startswith("httpx"):
        import httpx

        http2 = client == "httpx-h2"
        limits = httpx.Limits(max_connections=n + 16, max_keepalive_connections=n + 16)
        session = httpx.AsyncClient(http1=not http2, http2=http2, limits=limits, timeout=600,
                                    verify=ssl.create_default_context(cafile=ca_file))

        async def one(i):
            return (await session.post(url + "/v2/sandboxes", content=BODY % i, headers=HEADERS)).status_code
    else:
        from pyqwest import Client, HTTPTransport

        transport = HTTPTransport(tls_ca_cert=Path(ca_file).read_bytes(), max_connections_per_address=n,
                                  pool_max_idle_per_host=n, timeout=600)
        session = Client(transport)

        async def one(i):
            return (await session.execute("POST", url + "/v2/sandboxes", headers=HEADERS, content=BODY % i)).status
    return one


def client_main(client: str, url: str, n: int, ca_file: str, port: int) -> None:
    """Runs in its own process; prints one JSON line."""
    import uvloop

    async def run():
        one = await _send_all(client, url, n, ca_file)
        cpu0, t0 = time.process_time(), time.monotonic()
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        peak = {"fds": 0, "sockets": 0}

        async def sample():
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.5)
                peak["fds"] = max(peak["fds"], len(os.listdir("/proc/self/fd")))
                peak["sockets"] = max(peak["sockets"], _sockets_to(port))

        sampler = asyncio.ensure_future(sample())
        statuses = await asyncio.gather(*tasks, return_exceptions=True)
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        await sampler
        ok = sum(1 for s in statuses if s == 201)
        errors = sorted({repr(s)[:120] for s in statuses if s != 201})[:3]
        print(json.dumps({"ok": ok, "errors": errors, "wall_s": wall, "cpu_s": cpu, **peak}), flush=True)

    uvloop.run(run())


def measure(client: str, n: int, latency_ms: int, streams: int) -> dict:
    settings = {"create_latency": {"kind": "constant", "ms": latency_ms}}
    if streams:
        settings["h2_max_streams"] = streams
    with start_emulator("fast", tls=True, **settings) as emu:
        before = emu.stats()["server"]
        out = subprocess.run([sys.executable, __file__, "--client-process", client, emu.url, str(n), emu.ca_file,
                              str(emu.port)], capture_output=True, text=True, timeout=1800, env=H._env())
        after = emu.stats()["server"]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{client}: rc={out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    opened = {p: after["connections_by_protocol"][p] - before["connections_by_protocol"][p]
              for p in after["connections_by_protocol"]}
    result["connections"] = opened["http/1.1"] - 1 + opened["h2"]  # minus the stats call after the run
    result["protocol"] = "HTTP/2" if opened["h2"] else "HTTP/1.1"
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-process":
        client_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=int, default=20_000)
    ap.add_argument("--streams", default="0,100", help="the emulator's HTTP/2 stream limits to try (0 = none)")
    ap.add_argument("--clients", default="wirehttp-h1,wirehttp-h2,pyqwest-h2")
    args = ap.parse_args()
    clients = args.clients.split(",")
    for c in clients:
        if c not in CLIENTS:
            ap.error(f"unknown client {c!r}; known: {', '.join(CLIENTS)}")
        if c == "httpx-h1" and args.n > 2000:
            ap.error("httpx-h1 is quadratic in N: use --n 2000 or less")
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    rows = []
    for streams in [int(s) for s in args.streams.split(",")]:
        for client in clients:
            if client.endswith("-h1") and streams and rows and any(r[0] == client for r in rows):
                continue  # a stream limit changes nothing for HTTP/1.1
            r = measure(client, args.n, args.latency_ms, streams)
            print(f"  {client}, stream limit {streams or 'none'}: {r}", flush=True)
            rows.append([client, r["protocol"], streams or "none", f"{r['ok']:,}/{args.n:,}", r["connections"],
                         r["fds"], r["sockets"], f"{r['wall_s']:.1f}", f"{r['cpu_s'] / args.n * 1000:.3f}"])
    print()
    print(H.table(["client", "protocol", "server stream limit", "answered", "connections (TLS handshakes)",
                   "client fds at peak", "sockets to the server at peak", "wall s (first send to last answer)",
                   "client CPU ms / create"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
