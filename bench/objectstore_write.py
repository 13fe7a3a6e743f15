"""Benchmark: 100,000 results through the object-store sink into a moto S3 server.

What it measures: the time the sink spends in sync() and finish() while a run
directory grows to N records (writing the records is not counted), against a
baseline taken in the same process against the same server: one put_object
of the finished raw.jsonl. The ratio is the price of crash safety (chunks,
manifests, assembly) over the cheapest possible copy that survives nothing.

It runs under gevent monkey-patching, as the Locust master does, and reports
the worst gevent hub lag seen while the sink worked: proof that uploads wait
cooperatively instead of blocking the hub.

    python bench/objectstore_write.py                      # 100k records, defaults
    python bench/objectstore_write.py --records 20000 --sync-every 500
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sync-every", type=int, default=2_000,
                        help="records appended between two sync() calls (the master syncs every few seconds; "
                             "2,000 records ~ 2 MiB ~ a 5 s flush at 400 results/s)")
    parser.add_argument("--chunk-mib", type=float, default=8.0)
    parser.add_argument("--assemble", choices=("copy", "stream"), default="copy")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are reported")
    parser.add_argument("--no-gevent", action="store_true", help="plain threads/sockets instead of gevent")
    args = parser.parse_args()

    if not args.no_gevent:
        from gevent import monkey

        monkey.patch_all()
    sys.path.insert(0, str(REPO))
    import os
    import tempfile

    from loadgen.sinks.objectstore import ObjectStoreSink
    from tests.s3_fixtures import RunDirWriter, make_record, moto_server, new_bucket, s3_client

    lag = LagMeter(enabled=not args.no_gevent)
    command = "python " + " ".join([sys.argv[0]] + sys.argv[1:])
    runs = []
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        os.environ["LOADGEN_S3_ASSEMBLE"] = args.assemble  # after moto_server(), which clears LOADGEN_S3_*
        client = s3_client(endpoint)
        bucket = new_bucket(endpoint, client)
        run_id = "bench-run"
        print(f"generating {args.records} records ...", file=sys.stderr)
        batches = []
        for start in range(0, args.records, args.sync_every):
            batches.append(b"".join(make_record(run_id, i).to_json() + b"\n"
                                    for i in range(start, min(args.records, start + args.sync_every))))
        for rep in range(args.repeat):
            writer = RunDirWriter(Path(tmp) / f"rep{rep}", run_id)
            sink = ObjectStoreSink(bucket, f"bench{rep}", chunk_bytes=int(args.chunk_mib * 1024 * 1024), flush_seconds=0)
            cpu0 = process_cpu()
            sink.start(writer.context())
            sync_s = 0.0
            raw_path = writer.path / "raw.jsonl"
            for n, batch in enumerate(batches):
                with open(raw_path, "ab") as fh:
                    fh.write(batch)
                if n % 5 == 0:
                    writer.append_metric(20)
                    writer.append_log(f"progress {n}/{len(batches)}")
                    writer.heartbeat()
                t0 = time.perf_counter()
                with lag("sink"):
                    sink.sync()
                sync_s += time.perf_counter() - t0
            meta = writer.write_meta()
            t0 = time.perf_counter()
            with lag("sink"):
                report = sink.finish(meta, "done")
            finish_s = time.perf_counter() - t0
            sink_cpu = process_cpu() - cpu0
            assert report.complete, report.detail
            size = raw_path.stat().st_size
            assert client.head_object(Bucket=bucket, Key=sink.root + "raw.jsonl")["ContentLength"] == size

            data = raw_path.read_bytes()
            cpu0 = process_cpu()
            t0 = time.perf_counter()
            with lag("baseline"):
                client.put_object(Bucket=bucket, Key=f"baseline{rep}/raw.jsonl", Body=data)
            baseline_s = time.perf_counter() - t0
            baseline_cpu = process_cpu() - cpu0
            del data
            runs.append(dict(sync=sync_s, finish=finish_s, total=sync_s + finish_s, cpu=sink_cpu,
                             baseline=baseline_s, baseline_cpu=baseline_cpu, ratio=(sync_s + finish_s) / baseline_s,
                             chunks=len(sink._target["streams"]["raw"]["chunks"]), requests=sink.stats["requests"],
                             method=report.extra["raw_assembled"]))
            print(f"  run {rep + 1}: sink {sync_s + finish_s:.2f} s (sync {sync_s:.2f} + finish {finish_s:.2f}), "
                  f"baseline {baseline_s:.2f} s, ratio {(sync_s + finish_s) / baseline_s:.2f}x", file=sys.stderr)

    med = {k: statistics.median(r[k] for r in runs) for k in ("sync", "finish", "total", "cpu", "baseline", "baseline_cpu", "ratio")}
    last = runs[-1]
    print(f"command:   {command}")
    print(f"records:   {args.records:,} ({size / 2**20:.1f} MiB raw.jsonl), sync every {args.sync_every:,} records, "
          f"chunks up to {args.chunk_mib:g} MiB; {last['chunks']} raw chunks, {last['requests']} requests, "
          f"assembly {last['method']}")
    print(f"sink:      {med['total']:.2f} s median of {args.repeat} (sync {med['sync']:.2f} s over {len(batches)} calls, "
          f"finish {med['finish']:.2f} s); client CPU {med['cpu']:.2f} s")
    print(f"baseline:  {med['baseline']:.2f} s median (one put_object of the same raw.jsonl); client CPU {med['baseline_cpu']:.2f} s")
    print(f"ratio:     {med['ratio']:.2f}x baseline (median of per-run ratios; runs: "
          + ", ".join(f"{r['ratio']:.2f}" for r in runs) + ")")
    if lag.enabled:
        print(f"hub lag:   sink {lag.describe('sink')}; baseline put_object {lag.describe('baseline')} "
              "(lateness of a 5 ms gevent timer)")
    return 0


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LagMeter:
    """A greenlet that sleeps 5 ms at a time and records how late it wakes up, per phase."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.samples: dict[str, list[float]] = {}
        self._phase = None
        if enabled:
            import gevent

            gevent.spawn(self._run)

    def _run(self):
        import gevent

        while True:
            t0 = time.perf_counter()
            gevent.sleep(0.005)
            if self._phase:
                self.samples.setdefault(self._phase, []).append((time.perf_counter() - t0 - 0.005) * 1000)

    def __call__(self, phase: str):
        self._pending = phase
        return self

    def __enter__(self):
        self._phase = self._pending

    def __exit__(self, *exc):
        self._phase = None

    def describe(self, phase: str) -> str:
        samples = sorted(self.samples.get(phase, [0.0]))
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return f"max {samples[-1]:.0f} ms, p99 {p99:.0f} ms over {len(samples)} ticks"


if __name__ == "__main__":
    sys.exit(main())
