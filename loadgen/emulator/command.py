"""`loadgen emulate`: serve the sandbox-provider emulator (on 127.0.0.1 unless told otherwise).

The option table is generated from `settings.SETTINGS`, so every setting of
the behaviour model has exactly one option, and a new setting gets its option
for free.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

from docopt import DocoptExit, docopt

from loadgen.emulator import settings as S

_HEAD = """Serve the local sandbox-provider emulator (on 127.0.0.1 by default).

Usage:
  loadgen emulate [options]
  loadgen emulate --list-profiles
  loadgen emulate (-h | --help)

When ready, prints one line holding its base URL (http://ADDR:PORT, or
https://... with --tls). Point a run at it with
`locust -f locustfiles/<provider>.py --emulator-url <url>`, or the e2b SDK alone
with `E2B_API_URL=<url> E2B_SANDBOX_URL=<url> python ...`. SIGINT or SIGTERM
stops it. Ground truth: GET <url>/_emulator/stats and <url>/_emulator/sandboxes;
POST <url>/_emulator/reset.

One port speaks HTTP/1.1 and HTTP/2 (prior knowledge in cleartext, ALPN over
TLS). With TLS on, a CA and a server certificate (for 127.0.0.1, localhost and
the listening address) are made at start, and the CA's PEM file goes to the
path given with --ca-file, or else to a temporary file (removed at exit) named
on stderr. Point clients at it with SSL_CERT_FILE, REQUESTS_CA_BUNDLE or
NODE_EXTRA_CA_CERTS.

Latency DIST: constant:MS | uniform:MIN,MAX | lognormal:MEDIAN,P95 |
empirical:MS,MS,... (milliseconds), or a JSON object such as
'{"kind":"lognormal","median_ms":822,"p95_ms":965}'.

Options:
  -h --help            Show this help.
  --host ADDR          Address to listen on. Give one that the clients can
                       reach (e.g. a private address shared with shard
                       hosts) to serve other machines. [default: 127.0.0.1]
  --port PORT          Port to listen on; 0 picks a free one. [default: 0]
  --profile NAME       Named profile (see --list-profiles). [default: fast]
  --config FILE        A profile in a JSON file (setting names as keys),
                       applied over --profile.
  --face NAMES         Protocol faces to serve, comma-separated. [default: e2b]
  --tls                Serve HTTPS (and gRPC over TLS) with a certificate made at start.
  --ca-file FILE       With --tls: where to write the CA certificate (PEM).
  --processes K        Serve from K processes, each on its own port (the
                       given port and the next ones, or each a free one),
                       for bursts bigger than one process's descriptors or
                       CPU; the line printed lists every URL, comma-separated,
                       as a locustfile's emulator URL option takes them.
                       [default: 1]
  --list-profiles      Print the profiles as JSON and exit.
"""


def usage() -> str:
    lines = [_HEAD.rstrip("\n"), "", "Behaviour settings (override the profile):"]
    for s in S.SETTINGS:
        flag = f"  {s.option} {s.metavar}"
        lines.append(f"{flag:<34} {s.help} Default: {json.dumps(s.default)}.")
    return "\n".join(lines) + "\n"


USAGE = usage()


def overrides_from_args(args: dict) -> dict:
    out = {}
    for s in S.SETTINGS:
        value = args.get(s.option)
        if value is not None:
            out[s.name] = value
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "emulate":
        argv = ["emulate"] + argv
    try:
        args = docopt(USAGE, argv=argv)
    except DocoptExit as e:
        print(str(e), file=sys.stderr)
        return 2
    if args["--list-profiles"]:
        print(json.dumps(S.PROFILES, indent=2))
        return 0
    try:
        port = int(args["--port"])
        processes = int(args["--processes"])
        if processes < 1:
            raise ValueError(f"--processes must be at least 1 (got {processes})")
        config = S.load_config_file(args["--config"]) if args["--config"] else None
        values = S.resolve(args["--profile"], config, overrides_from_args(args))
        faces = [f.strip() for f in args["--face"].split(",") if f.strip()]
        tls, ca_file = bool(args["--tls"]), args["--ca-file"]
        if ca_file and not tls:
            raise ValueError("--ca-file needs --tls")
        if ca_file and not os.path.isdir(os.path.dirname(os.path.abspath(ca_file))):
            raise ValueError(f"--ca-file {ca_file}: no such directory")
        from loadgen.emulator.faces import load_face

        for face in faces:
            load_face(face)
    except (OSError, ValueError) as e:
        print(f"loadgen emulate: {e}", file=sys.stderr)
        return 2
    if processes > 1:
        return serve_processes(argv[1:], processes, port)
    from loadgen.emulator.server import serve

    try:
        return serve(values, port=port, faces=faces, host=args["--host"], tls=tls, ca_file=ca_file)
    except OSError as e:
        print(f"loadgen emulate: cannot listen on {args['--host']}:{port}: {e}", file=sys.stderr)
        return 1


def serve_processes(args: List[str], processes: int, port: int) -> int:
    """K emulators with the same settings, each its own process and port; one line of their URLs.

    SIGINT or SIGTERM stops them all. Each keeps its own ground truth; read
    them as one through ``loadgen.emulator.EmulatorCluster``."""
    import signal
    import threading

    from loadgen.emulator.handle import EmulatorCluster, spawn_emulator_command

    base = _without(args, "--processes", "--port")
    members = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for i in range(processes):
            members.append(spawn_emulator_command(base + ["--port", str(port + i if port else 0)]))
        cluster = EmulatorCluster(members)
        sys.stdout.write(cluster.url + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            if any(m.proc.poll() is not None for m in members):
                print("loadgen emulate: an emulator process ended; stopping the others", file=sys.stderr)
                return 1
        return 0
    except (OSError, RuntimeError) as e:
        print(f"loadgen emulate: {e}", file=sys.stderr)
        return 1
    finally:
        for m in members:
            m.stop()


def _without(args: List[str], *names: str) -> List[str]:
    """``args`` less the options ``names`` (as ``--name VALUE`` or ``--name=VALUE``)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
