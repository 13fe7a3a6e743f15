"""Dispatch rate: how fast N creates reach the emulator once the burst starts, in one generating process.

All N users are started at once (-u N -r N) in one local locust process
(a loadgen run's one generating process: the same code as a worker). The
figure comes from the server's side: the emulator's `t_received` of every
create (GET /_emulator/sandboxes), so it is what a provider would see:

    creates/s = (N - 1) / (last arrival - first arrival)

plus the time from the first to the 50th/99th/100th percentile arrival.
Baseline: the same raw POST /sandboxes sent by FastHttpUser (one per user,
nothing else). loadgen's users go on with their whole lifecycle; only the
creates' arrivals are read. Profile `fast`: the creates are answered at once.

Usage:
  python bench/dispatch_rate.py [--sizes 1000,5000] [--repeat 1] [--providers e2b]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402


def arrivals(emu, n: int) -> dict:
    rows = emu.sandboxes()
    t = sorted(r["t_received"] for r in rows)
    if len(t) != n:
        raise SystemExit(f"expected {n} creates at the emulator, saw {len(t)}")
    span = t[-1] - t[0]
    return {"rate": (n - 1) / span if span > 0 else float("inf"), "span_s": span,
            "p50_s": H.percentile([x - t[0] for x in t], 50), "p99_s": H.percentile([x - t[0] for x in t], 99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--providers", default="e2b")
    args = ap.parse_args()
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    sizes = [int(x) for x in args.sizes.split(",")]
    kinds = ["baseline"] + args.providers.split(",")
    results: dict = {}
    emulators = {}
    try:
        for kind in kinds:
            face = H.face_of(kind)
            if face not in emulators:
                emulators[face] = start_emulator("fast", faces=face)
        for _ in range(args.repeat):
            for n in sizes:
                for kind in kinds:
                    emu = emulators[H.face_of(kind)]
                    emu.reset()
                    if kind == "baseline":
                        res, _ = H.run_baseline(n, emu.url, mode="create")
                    else:
                        res = H.run_loadgen(n, emu.url, provider=kind)
                    if res.master.returncode != 0:
                        raise SystemExit(f"{kind} N={n} failed:\n{res.master.output[-3000:]}")
                    a = arrivals(emu, n)
                    results.setdefault((kind, n), []).append(a)
                    print(f"  {kind} N={n}: {a['rate']:,.0f} creates/s over {a['span_s']:.3f} s", flush=True)
    finally:
        for emu in emulators.values():
            emu.stop()
    rows = []
    for n in sizes:
        base = statistics.median(r["rate"] for r in results[("baseline", n)])
        for kind in kinds:
            rs = results[(kind, n)]
            rate = statistics.median(r["rate"] for r in rs)
            rows.append([n, kind if kind != "baseline" else "FastHttpUser (baseline)", rate,
                         statistics.median(r["p50_s"] for r in rs), statistics.median(r["p99_s"] for r in rs),
                         statistics.median(r["span_s"] for r in rs), f"{rate / base:.2f}x"])
    print()
    print(H.table(["N", "client", "creates/s (server arrivals)", "p50 arrival s", "p99 arrival s",
                   "first→last s", "vs baseline"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
