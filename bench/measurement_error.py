"""Measurement error of the create latency: what the generator measured minus what the server spent.

For every sandbox: the create latency loadgen recorded (raw.jsonl
`latency_ms`) minus the emulator's service time for that create
(`t_answered - t_received` in /_emulator/sandboxes, plus the service time of
the wait that follows it where the SDK makes one: codesandbox's, `waits`),
joined on the create's metadata `sandbox_idx`. The difference is everything the server did not do:
the client's own queueing and CPU (SDK, bridge, hub), loopback and the
kernel. N users start at once in one local locust process; profile
`realistic-e2b` (create lognormal 698.7/820.2 ms), so the answers spread over
~a second, as they would from the real service.

Baseline: FastHttpUser's own measured create latency (time.time() around
`client.post`) minus the same server time, same N, same profile.

`--protocol` (bench/_harness.py's PROTOCOLS): what the clients speak to the
emulator; `h2+tls` puts e2b's API exchanges on HTTP/2 streams of a few shared
connections (loadgen's timed client by ALPN; FastHttpUser stays HTTP/1.1).

Usage:
  python bench/measurement_error.py [--sizes 500,2000,5000] [--profile realistic-e2b] [--providers e2b]
                                    [--protocol h1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402


def server_times(emu) -> tuple[dict, dict]:
    out, raw = {}, {}
    for row in emu.sandboxes():
        meta = row.get("metadata") or {}
        if row.get("t_answered") is not None and "sandbox_idx" in meta:
            key = (meta.get("run_id"), meta["sandbox_idx"])
            out[key] = (row["t_answered"] - row["t_received"]) * 1000.0
            wait = (row.get("waits") or {}).get("create")  # a create of two exchanges (codesandbox's and its wait)
            if wait is not None:
                out[key] += (wait[1] - wait[0]) * 1000.0
            raw[key] = (row["t_received"], row["t_answered"] if wait is None else wait[1])
    return out, raw


def split(records: list[dict], raw: dict) -> tuple[list[float], list[float]]:
    """The error's two halves (same host, same clock): request side = server received - client start;
    answer side = client end - server answered."""
    from loadgen.result import parse_iso

    before, after = [], []
    for r in records:
        key = (r["run_id"], str(r["sandbox_idx"]))
        if key in raw and r.get("create_started_at") and r.get("create_ended_at"):
            received, answered = raw[key]
            before.append((received - parse_iso(r["create_started_at"])) * 1000.0)
            after.append((parse_iso(r["create_ended_at"]) - answered) * 1000.0)
    return before, after


def summary(errors: list[float]) -> dict:
    return {"n": len(errors), "p50": H.percentile(errors, 50), "p99": H.percentile(errors, 99), "max": max(errors)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500,2000,5000")
    ap.add_argument("--profile", default="realistic-e2b")
    ap.add_argument("--providers", default="e2b")
    ap.add_argument("--protocol", default="h1", choices=list(H.PROTOCOLS))
    args = ap.parse_args()
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    sizes = [int(x) for x in args.sizes.split(",")]
    kinds = ["baseline"] + args.providers.split(",")
    rows = []
    emulators = {}
    try:
        for kind in kinds:
            face = H.face_of(kind)
            if face not in emulators:
                emulators[face] = start_emulator(args.profile, faces=face, tls=H.PROTOCOLS[args.protocol][0])
        for n in sizes:
            for kind in kinds:
                emu = emulators[H.face_of(kind)]
                emu.reset()
                env = H.protocol_env(args.protocol, emu.ca_file)
                if kind == "baseline":
                    res, measured = H.run_baseline(n, emu.url, mode="create", env=env)
                    measured = [((m["run_id"]), str(m["idx"]), m["latency_ms"]) for m in measured]
                    cpu_note = ""
                    records = []
                else:
                    res = H.run_loadgen(n, emu.url, provider=kind, args=["--create-timeout", "120"], env=env)
                    if res.master.returncode != 0:
                        raise SystemExit(f"{kind} N={n} failed:\n{res.master.output[-3000:]}")
                    records = res.records()
                    measured = [(r["run_id"], str(r["sandbox_idx"]), r["latency_ms"]) for r in records
                                if r.get("latency_ms") is not None]
                server, raw = server_times(emu)
                before, after = split(records, raw)
                cpu_note = (f"; request side (server received - client start) p50 {H.percentile(before, 50):.1f} / "
                            f"p99 {H.percentile(before, 99):.1f} ms, answer side (client end - server answered) "
                            f"p50 {H.percentile(after, 50):.1f} / p99 {H.percentile(after, 99):.1f} ms") if before else ""
                errors = [lat - server[(run_id, idx)] for run_id, idx, lat in measured if (run_id, idx) in server]
                s = summary(errors)
                label = kind if kind != "baseline" else "FastHttpUser (baseline)"
                rows.append([n, label, s["n"], s["p50"], s["p99"], s["max"]])
                print(f"  {label} N={n}: joined {s['n']}, error p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
                      f"max {s['max']:.1f} ms (process CPU {res.cpu_s:.1f} s, wall {res.wall_s:.1f} s){cpu_note}",
                      flush=True)
    finally:
        for emu in emulators.values():
            emu.stop()
    print()
    print(H.table(["N per process", "client", "creates joined", "error p50 ms", "error p99 ms", "error max ms"],
                  rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
