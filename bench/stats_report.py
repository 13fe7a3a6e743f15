"""Benchmark: loadgen.report.stats.compute and `loadgen report` over a synthetic 100k-sandbox run.

Usage:
  python bench/stats_report.py [--n N] [--seed S] [--keep DIR]

Each figure is printed beside a baseline measured in the same process on the
same data (the time to merely orjson-parse raw.jsonl), as a ratio, so a
result from a slower or busier machine can still be compared. The budgets
(issue 6) are: compute under 2 s and the whole report under 10 s at 100k.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stats_synth import make_metrics, make_records, write_run_dir  # noqa: E402

from loadgen import rundir  # noqa: E402
from loadgen.report import command as report, stats  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--keep", help="write the run directory here and keep it")
    args = ap.parse_args()

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loadgen-bench-"))
    try:
        t = time.perf_counter()
        recs = make_records(args.n, seed=args.seed, workers=args.workers)
        metrics = make_metrics(recs, workers=args.workers, seed=args.seed)
        run = write_run_dir(tmp / "run", recs, metrics)
        gen_s = time.perf_counter() - t
        raw = (run / "raw.jsonl").read_bytes()

        parse_s = best_of(lambda: [orjson.loads(line) for line in raw.splitlines()])
        read_s = best_of(lambda: rundir.read_records(run))
        compute_s = best_of(lambda: stats.compute(recs, metrics))
        out = tmp / "out"
        report_s = best_of(lambda: report.report_run(run, out), repeat=2)

        print(f"python {platform.python_version()} on {platform.machine()}, {args.n:,} records, "
              f"{len(metrics):,} metrics samples ({args.workers} workers); raw.jsonl {len(raw) / 1e6:.1f} MB; "
              f"generated in {gen_s:.1f} s")
        print(f"baseline: orjson-parse raw.jsonl            {parse_s * 1000:8.0f} ms   1.00x")
        print(f"rundir.read_records (parse + dedup + sort)  {read_s * 1000:8.0f} ms   {read_s / parse_s:5.2f}x")
        print(f"stats.compute (records in memory)           {compute_s * 1000:8.0f} ms   {compute_s / parse_s:5.2f}x"
              f"   budget 2000 ms: {'OK' if compute_s < 2 else 'OVER'}")
        print(f"report (read + compute + SVG/HTML/MD write) {report_s * 1000:8.0f} ms   {report_s / parse_s:5.2f}x"
              f"   budget 10000 ms: {'OK' if report_s < 10 else 'OVER'}")
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        print("report files: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()))
        print(f"command: python bench/stats_report.py --n {args.n} --seed {args.seed} --workers {args.workers}")
        return 0 if compute_s < 2 and report_s < 10 else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
