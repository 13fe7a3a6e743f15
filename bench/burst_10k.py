"""End to end: a 10,000-sandbox burst on this machine (master, workers and emulator).

One emulator process (profile `fast`), one locust master and --workers
workers, all on 127.0.0.1; every user is started at once (-u N -r N). The
figures: wall time from starting the master to its exit, the success count
(meta.json), the run's exit code, and leaks: the emulator's live count after
the run (every sandbox it made and nobody destroyed). Baseline: the same N
lifecycles (create, two commands, destroy; no hold, no records) by
FastHttpUser on the same master/worker layout.

Usage:
  python bench/burst_10k.py [--users 10000] [--workers 2] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulator  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--provider", default="e2b")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    rows = []
    with start_emulator("fast", faces=args.provider if args.provider != "e2b" else "e2b") as emu:
        res = H.run_loadgen(args.users, emu.url, provider=args.provider, workers=args.workers, timeout=args.timeout)
        stats = emu.stats()
        try:
            meta = res.meta()
            success = meta["status_histogram"].get("success", 0)
            complete = meta.get("complete")
        except Exception as exc:  # noqa: BLE001
            success, complete = f"no meta.json ({exc})", False
        cpu_emu = stats["server"]["cpu_s"]
        rows.append([f"loadgen {args.provider}", res.wall_s, success, stats["created"], stats["live"],
                     res.master.returncode, res.master.cpu_s, sum(w.cpu_s for w in res.workers), cpu_emu])
        print(f"  loadgen: wall {res.wall_s:.1f} s, success {success}, created {stats['created']}, "
              f"live after {stats['live']}, exit {res.master.returncode}, complete {complete}", flush=True)
        if res.master.returncode != 0:
            print(res.master.output[-3000:])
        if not args.skip_baseline:
            emu.reset()
            before = emu.stats()["server"]["cpu_s"]
            base, rows_b = H.run_baseline(args.users, emu.url, workers=args.workers, timeout=args.timeout)
            st = emu.stats()
            rows.append(["FastHttpUser (baseline)", base.wall_s, len(rows_b), st["created"], st["live"],
                         base.master.returncode, base.master.cpu_s, sum(w.cpu_s for w in base.workers),
                         st["server"]["cpu_s"] - before])
            print(f"  baseline: wall {base.wall_s:.1f} s, creates answered {len(rows_b)}, live after {st['live']}",
                  flush=True)
    print()
    print(H.table(["client", "wall s", "success", "emulator created", "leaks (live after)", "exit code",
                   "master CPU s", "workers CPU s", "emulator CPU s"], rows))
    if len(rows) == 2 and isinstance(rows[0][1], float):
        print(f"\nwall vs baseline: {rows[0][1] / rows[1][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
