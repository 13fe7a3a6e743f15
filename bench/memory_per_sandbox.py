"""Memory per held sandbox: the generator's RSS growth per sandbox held at the barrier.

Each run starts N users at once in one local locust process with --hold, so
every sandbox sits at the barrier (created, readiness passed, handle and
connection kept) for a few seconds. The process's RSS at the barrier is the
`rss_bytes` of its last health sample (metrics.jsonl, one a second) with the
most sandboxes `held`; the figure is differential, which removes the interpreter,
imports and pools:

    bytes per held sandbox = (RSS(N_hi at barrier) - RSS(N_lo at barrier)) / (N_hi - N_lo)

The peak RSS from the process's rusage (ru_maxrss) gives a second,
independent figure. Baseline: FastHttpUser users that create, run one
command, sleep through the same hold, then finish (peak RSS only: it writes
no health samples).

Usage:
  python bench/memory_per_sandbox.py [--lo 500] [--hi 3000] [--hold 4] [--providers e2b,daytona]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402


def at_barrier(res: H.LocustResult, n: int) -> tuple[int, int]:
    samples = [m for m in res.metrics() if m.get("held") is not None]
    if not samples:
        raise SystemExit("no health samples with a held count")
    most = max(m["held"] for m in samples)
    last = [m for m in samples if m["held"] == most][-1]  # steady state at the barrier
    return last["held"], last["rss_bytes"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=int, default=500)
    ap.add_argument("--hi", type=int, default=3000)
    ap.add_argument("--hold", type=float, default=4.0)
    ap.add_argument("--providers", default="e2b,daytona")
    args = ap.parse_args()
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    kinds = ["baseline"] + args.providers.split(",")
    emulators = {}
    rows = []
    try:
        for kind in kinds:
            face = H.face_of(kind)
            if face not in emulators:
                emulators[face] = start_emulator("fast", faces=face)
        base_peak = None
        for kind in kinds:
            emu = emulators[H.face_of(kind)]
            figures = {}
            for n in (args.lo, args.hi):
                emu.reset()
                if kind == "baseline":
                    res, _ = H.run_baseline(n, emu.url, mode="hold", hold_s=args.hold)
                    held, rss = n, None
                else:
                    res = H.run_loadgen(n, emu.url, provider=kind, args=["--hold", str(args.hold)])
                    if res.master.returncode != 0:
                        raise SystemExit(f"{kind} N={n} failed:\n{res.master.output[-3000:]}")
                    held, rss = at_barrier(res, n)
                live = emu.stats()["live"]
                figures[n] = (held, rss, res.master.max_rss_kb * 1024, live)
                print(f"  {kind} N={n}: held {held}, RSS at barrier "
                      f"{'-' if rss is None else f'{rss / 2**20:.1f} MiB'}, peak RSS "
                      f"{res.master.max_rss_kb / 1024:.1f} MiB, live after {live}", flush=True)
            (h_lo, r_lo, p_lo, _), (h_hi, r_hi, p_hi, _) = figures[args.lo], figures[args.hi]
            per_barrier = (r_hi - r_lo) / (h_hi - h_lo) if r_lo is not None and h_hi != h_lo else None
            per_peak = (p_hi - p_lo) / (args.hi - args.lo)
            if kind == "baseline":
                base_peak = per_peak
            rows.append([kind if kind != "baseline" else "FastHttpUser (baseline)",
                         "-" if per_barrier is None else f"{per_barrier / 1024:.1f}", f"{per_peak / 1024:.1f}",
                         f"{per_peak / base_peak:.2f}x" if base_peak else "-"])
    finally:
        for emu in emulators.values():
            emu.stop()
    print()
    print(H.table(["client", "KiB / held sandbox (RSS at barrier)", "KiB / held sandbox (peak RSS)",
                   "peak vs baseline"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
