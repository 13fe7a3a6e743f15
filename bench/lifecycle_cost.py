"""Client CPU per sandbox lifecycle: loadgen's adapters against a FastHttpUser baseline.

A lifecycle is create, two `node -v` commands and destroy, against the
emulator's `fast` profile (answers at once), all N users started at once in
one local locust process. The figure is process CPU time (user + system, every
thread, from the process's rusage), not wall time, and it is differential:

    CPU per lifecycle = (CPU(run of N_hi) - CPU(run of N_lo)) / (N_hi - N_lo)

so that interpreter start-up, imports and shutdown cancel out. For loadgen it
is the whole generator (adapter, SDK, asyncio bridge, records, journal,
barrier, statistics at the end); for the baseline it is Locust's FastHttpUser
making the same four exchanges on the e2b wire (see bench/_harness.py), and,
for each adapter of another face (daytona, runloop, codesandbox, modal),
FastHttpUser making that adapter's own exchanges on its face's wire
(`baseline-<face>`; modal's eight RPCs as gRPC-Web over HTTP/1.1, since
FastHttpUser has no HTTP/2): the ratio "on the same exchanges" is against
that one. FastHttpUser keeps one connection per user, as it does below 1,000
users (bench/_harness.py mends its pool's select() check, which treated
every descriptor from 1024 on as a dead connection). Each configuration runs
--repeat times, interleaved, and the median is reported.

Protocols (--protocols, each row is run over each): `h1` (HTTP/1.1 in
cleartext, the default), `tls` (the emulator started with --tls, its CA
trusted through SSL_CERT_FILE; HTTP/1.1), `h2+tls` and `h2` (LOADGEN_HTTP2=1:
HTTP/2 by ALPN, or with prior knowledge, where the SDK can; the baseline
FastHttpUser speaks HTTP/1.1 only, and over TLS checks certificates against
the emulator's CA, not FastHttpUser's default of no check). The emulator's
connection count gives the TLS handshakes each lifecycle paid.

Usage:
  python bench/lifecycle_cost.py [--lo 200] [--hi 2000] [--repeat 2] [--providers e2b,e2b-plain,daytona]
                                 [--protocols h1,tls]

`e2b-plain` is loadgen as it was before issue 8: the e2b adapter with
LOADGEN_E2B_PLAIN_SDK=1 (its lean paths off, the SDK exactly as shipped) and
LOADGEN_GC_THRESHOLD=default (Python's GC thresholds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402



def one(kind: str, n: int, emu, protocol: str) -> tuple[float, dict]:
    """CPU seconds of one run of `kind` with n users, and the emulator's server stats after it."""
    emu.reset()
    env = H.protocol_env(protocol, emu.ca_file)
    before = emu.stats()["server"]
    grpc_before = _grpc_connections(emu)
    wire = H.baseline_wire(kind)
    if wire is not None:
        res, _ = H.run_baseline(n, emu.url, env=env, wire=wire)
    else:
        res = H.run_loadgen(n, emu.url, provider=kind, env=env)
    stats = emu.stats()
    ok = res.master.returncode == 0 and stats["live"] == 0 and stats["created"] == n
    if not ok:
        raise SystemExit(f"{kind} ({protocol}) N={n}: rc={res.master.returncode} created={stats['created']} "
                         f"live={stats['live']}\n" + res.master.output[-3000:])
    server = stats["server"]
    opened = {p: server["connections_by_protocol"][p] - before["connections_by_protocol"][p]
              for p in server["connections_by_protocol"]}
    if grpc_before is not None:  # modal's gRPC port (the control plane, and each sandbox's command router)
        opened["h2"] += _grpc_connections(emu) - grpc_before
    return res.cpu_s, opened


def _grpc_connections(emu):
    """Connections the emulator's modal face has accepted on its gRPC port, or None without that face."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=emu.ca_file) if emu.url.startswith("https") else None
    try:
        with urllib.request.urlopen(emu.url + "/modal/stats", context=context, timeout=10) as resp:
            return json.loads(resp.read())["connections_total"]
    except urllib.error.HTTPError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=int, default=200)
    ap.add_argument("--hi", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--providers", default="e2b,e2b-plain,daytona")
    ap.add_argument("--protocols", default="h1", help="comma-separated: " + ", ".join(H.PROTOCOLS))
    args = ap.parse_args()
    providers = args.providers.split(",")
    # FastHttpUser on each adapter's own exchanges too, where the baseline knows them
    same_wire = [f"baseline-{face}" for face in dict.fromkeys(H.face_of(k) for k in providers)
                 if face != "e2b" and face in H.BASELINE_WIRES]
    kinds = ["baseline"] + same_wire + providers
    protocols = args.protocols.split(",")
    unknown = [p for p in protocols if p not in H.PROTOCOLS]
    if unknown:
        ap.error(f"unknown protocol {unknown[0]!r}; known: {', '.join(H.PROTOCOLS)}")
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    rows_of = [(kind, protocol) for protocol in protocols for kind in kinds]
    per = {row: [] for row in rows_of}
    handshakes = {}
    emulators = {(H.face_of(k), p): start_emulator("fast", faces=H.face_of(k), tls=H.PROTOCOLS[p][0])
                 for k, p in rows_of}
    try:
        for _ in range(args.repeat):
            for kind, protocol in rows_of:
                emu = emulators[(H.face_of(kind), protocol)]
                lo, _ = one(kind, args.lo, emu, protocol)
                hi, opened = one(kind, args.hi, emu, protocol)
                per[(kind, protocol)].append((hi - lo) / (args.hi - args.lo) * 1000.0)
                # connections opened per lifecycle at N=hi (minus the two stats calls of the bench itself)
                handshakes[(kind, protocol)] = ((opened["http/1.1"] - 2) / args.hi, opened["h2"] / args.hi)
                print(f"  {kind} ({protocol}): CPU {lo:.2f} s at N={args.lo}, {hi:.2f} s at N={args.hi} -> "
                      f"{per[(kind, protocol)][-1]:.3f} ms/lifecycle; connections opened at N={args.hi}: "
                      f"{opened}", flush=True)
                if H.baseline_wire(kind) is not None and handshakes[(kind, protocol)][0] > 1.05:
                    print(f"  WARNING: FastHttpUser opened {handshakes[(kind, protocol)][0]:.2f} connections a "
                          "lifecycle, not one per user: its figure includes reconnects", flush=True)
    finally:
        for emu in emulators.values():
            emu.stop()
    base_h1 = statistics.median(per[("baseline", protocols[0])])
    rows = []
    for kind, protocol in rows_of:
        med = statistics.median(per[(kind, protocol)])
        same = statistics.median(per[("baseline", protocol)])  # (FastHttpUser is HTTP/1.1 in an h2 row too)
        own = f"baseline-{H.face_of(kind)}"
        exchanges = statistics.median(per[(own, protocol)]) if (own, protocol) in per else same
        h1_conns, h2_conns = handshakes[(kind, protocol)]
        label = {"baseline": "FastHttpUser (baseline)"}.get(kind, kind)
        if H.baseline_wire(kind) not in (None, "e2b"):
            label = f"FastHttpUser ({H.baseline_wire(kind)} wire)"
        rows.append([label, protocol, med, ", ".join(f"{v:.3f}" for v in per[(kind, protocol)]),
                     f"{med / exchanges:.2f}x", f"{med / same:.2f}x", f"{med / base_h1:.2f}x",
                     f"{h1_conns:.2f} + {h2_conns:.2f}"])
    print()
    print(H.table(["client", "protocol", "CPU ms / lifecycle (median)", "runs",
                   "vs FastHttpUser on the same exchanges (same protocol)", "vs baseline, e2b wire (same protocol)",
                   f"vs baseline ({protocols[0]})", "connections / lifecycle (HTTP/1.1 + HTTP/2)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
