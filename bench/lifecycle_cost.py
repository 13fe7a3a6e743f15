"""Client CPU per sandbox lifecycle: loadgen's adapters against a FastHttpUser baseline.

A lifecycle is create, two `node -v` commands and destroy, against the
emulator's `fast` profile (answers at once), all N users started at once in
one local locust process. The figure is process CPU time (user + system, every
thread, from the process's rusage), not wall time, and it is differential:

    CPU per lifecycle = (CPU(run of N_hi) - CPU(run of N_lo)) / (N_hi - N_lo)

so that interpreter start-up, imports and shutdown cancel out. For loadgen it
is the whole generator (adapter, SDK, asyncio bridge, records, journal,
barrier, statistics at the end); for the baseline it is Locust's FastHttpUser
making the same four exchanges on the e2b wire (see bench/_harness.py). Each
configuration runs --repeat times, interleaved, and the median is reported.

Usage:
  python bench/lifecycle_cost.py [--lo 200] [--hi 2000] [--repeat 2] [--providers e2b,e2b-plain,daytona]

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



def one(kind: str, n: int, emulators: dict) -> float:
    face = H.face_of(kind)
    emu = emulators[face]
    emu.reset()
    if kind == "baseline":
        res, _ = H.run_baseline(n, emu.url)
    else:
        res = H.run_loadgen(n, emu.url, provider=kind)
    stats = emu.stats()
    ok = res.master.returncode == 0 and stats["live"] == 0 and stats["created"] == n
    if not ok:
        raise SystemExit(f"{kind} N={n}: rc={res.master.returncode} created={stats['created']} live={stats['live']}\n"
                         + res.master.output[-3000:])
    return res.cpu_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=int, default=200)
    ap.add_argument("--hi", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--providers", default="e2b,e2b-plain,daytona")
    args = ap.parse_args()
    kinds = ["baseline"] + args.providers.split(",")
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    per = {k: [] for k in kinds}
    faces = {H.face_of(k) for k in kinds}
    emulators = {f: start_emulator("fast", faces=f) for f in faces}
    try:
        for _ in range(args.repeat):
            for kind in kinds:
                lo = one(kind, args.lo, emulators)
                hi = one(kind, args.hi, emulators)
                per[kind].append((hi - lo) / (args.hi - args.lo) * 1000.0)
                print(f"  {kind}: CPU {lo:.2f} s at N={args.lo}, {hi:.2f} s at N={args.hi} -> "
                      f"{per[kind][-1]:.3f} ms/lifecycle", flush=True)
    finally:
        for emu in emulators.values():
            emu.stop()
    base = statistics.median(per["baseline"])
    rows = []
    for kind in kinds:
        med = statistics.median(per[kind])
        rows.append([kind if kind != "baseline" else "FastHttpUser (baseline)", med,
                     ", ".join(f"{v:.3f}" for v in per[kind]), f"{med / base:.2f}x"])
    print()
    print(H.table(["client", "CPU ms / lifecycle (median)", "runs", "vs baseline"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
