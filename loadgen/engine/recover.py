"""`loadgen recover`: finish a run whose master was lost, from its workers' journals.

Usage:
  loadgen recover RUN_DIR [--database-url URL] [--force]
  loadgen recover (-h | --help)

Options:
  --database-url URL  Postgres to complete the run's rows in (default $DATABASE_URL; none: no Postgres).
  --force             Recover a run that has a meta.json already (written again from the journals).

The master writes a run's raw.jsonl and, at the end, its meta.json. A master
that dies mid-run (SIGKILL, its machine lost) leaves neither complete, and
its Postgres row says `running` (the `stuck_runs` view lists it once it has
been silent for 5 minutes). Its workers notice (`--master-heartbeat-timeout`): each ends
its holds, probes and destroys what it holds, and keeps every result in its
journal, which bin/launch-shards.sh copies into RUN_DIR/journal/.

recover then finishes the run as the master would have:

- raw.jsonl gets every journaled record it lacks, one per sandbox_idx (the
  master's own copy is kept; a torn last line is cut off);
- meta.json is written with the run's figures, status `interrupted` (the
  holds were cut short) and `recovered` (from where, and when);
- the copies the run had are completed: Postgres (`--database-url` or
  $DATABASE_URL) through the very sink a run uses, so its row is final and
  every record is in `sandbox_results` once; the object store too, if the
  run had a bucket (credentials from the environment, as for a run).

Then `loadgen reap RUN_DIR` destroys anything no record shows destroyed.
Exit code 0 when recovered and every copy is complete, 1 when a copy is
not, 2 when RUN_DIR is not a run directory or has finished already.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from docopt import docopt

from loadgen import rundir
from loadgen.result import iso

log = logging.getLogger("loadgen.recover")

REASON = ("the master was lost mid-run (it ended without finalizing); its workers ended their holds and destroyed "
          "what they held; recovered from their journals by loadgen recover")


def journal_files(run_path: Path) -> list[Path]:
    """Each worker's results journal (journal/<worker id>.jsonl; not its .created.jsonl)."""
    return sorted(p for p in (run_path / rundir.JOURNAL_DIR).glob("*.jsonl") if not p.name.endswith(".created.jsonl"))


def worker_spans(run_path: Path) -> dict[str, list[list[int]]]:
    """Each worker's sandbox_idx span as its journals show it (the master's grants died with it)."""
    spans: dict[str, list[int]] = {}
    for path in sorted((run_path / rundir.JOURNAL_DIR).glob("*.jsonl")):
        worker = path.name[: -len(".created.jsonl")] if path.name.endswith(".created.jsonl") else path.stem
        for entry in rundir.iter_jsonl(path):
            idx = entry.get("sandbox_idx")
            if isinstance(idx, int):
                lo, hi = spans.get(worker, [idx, idx + 1])
                spans[worker] = [min(lo, idx), max(hi, idx + 1)]
    return {w: [span] for w, span in spans.items()}


def expected_count(run_path: Path, identity: dict) -> int:
    """How many sandboxes were dispatched: the master's last heartbeat says; else -u."""
    try:
        expected = int(rundir.read_json(run_path / rundir.HEARTBEAT).get("expected") or 0)
    except (OSError, ValueError):
        expected = 0
    return expected or int((identity.get("options") or {}).get("num_users") or 0)


def settings_of(identity: dict):
    from loadgen.engine.options import RunSettings

    options = argparse.Namespace(**(identity.get("options") or {}))
    return RunSettings.from_options(options, identity["provider"])


def main(argv) -> int:
    args = docopt(__doc__, argv=argv)
    run_path = Path(args["RUN_DIR"])
    if not (run_path / rundir.RUN).exists():
        print(f"loadgen recover: {run_path} has no {rundir.RUN}; is it a run directory?", file=sys.stderr)
        return 2
    if (run_path / rundir.META).exists() and not args["--force"]:
        meta = rundir.read_json(run_path / rundir.META)
        print(f"loadgen recover: run {meta.get('run_id')} finished already (status {meta.get('status')}, "
              f"{rundir.META} written); --force writes it again from the journals", file=sys.stderr)
        return 2
    journals = journal_files(run_path)
    if not journals:
        print(f"loadgen recover: {run_path / rundir.JOURNAL_DIR} holds no worker journal; copy the hosts' journals "
              "there first (bin/launch-shards.sh does, or scp ~/.loadgen/launches/*/ from each host)",
              file=sys.stderr)
    return recover(run_path, args["--database-url"])


def recover(run_path: Path, database_url=None) -> int:
    """Rebuild raw.jsonl and meta.json from the journals and complete the sinks' copies."""
    import os

    from loadgen.engine.collector import Collector
    from loadgen.engine.coordinator import Coordinator, EXIT_INTERRUPTED, LogFile
    from loadgen.report.stats import compute
    from loadgen.sinks import sinks_for
    from loadgen.sinks.base import RunContext

    identity = rundir.read_json(run_path / rundir.RUN)
    options = identity.get("options") or {}
    settings = settings_of(identity)
    users = int(options.get("num_users") or 0)
    expected = expected_count(run_path, identity)
    (run_path / rundir.RAW).touch()
    logfile = LogFile(run_path / rundir.LOG)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(console)
    previous_level = root.level
    root.setLevel(logging.INFO)
    try:
        sinks = sinks_for(argparse.Namespace(database_url=database_url or os.environ.get("DATABASE_URL", ""),
                                             bucket=options.get("bucket") or "", prefix=options.get("prefix") or ""))
        coord = Coordinator(identity, settings, run_path, sinks, lambda: expected, users)
        coord.collector = collector = Collector(run_path, lambda: expected, lambda: True)
        from_master = collector.adopt()
        journals = journal_files(run_path)
        for path in journals:
            collector.accept(list(rundir.iter_jsonl(path)))
        from_journals = collector.received - from_master
        collector.duplicates = 0  # the journals repeat what the master had: not deliveries
        log.info("[phase] recovering run %s: %d records from the master's raw.jsonl, %d more from %d worker "
                 "journals; %d of %d sandboxes have a record", identity["run_id"], from_master, from_journals,
                 len(journals), collector.received, expected)
        coord.dispatch_complete = True
        coord.interrupted_reason = REASON
        coord.worker_ranges = lambda: worker_spans(run_path)
        barrier = last_barrier(run_path)
        coord.extra_meta["barrier"] = lambda: barrier
        recovered = {"at": iso(time.time()), "from_master": from_master, "from_journals": from_journals,
                     "journals": [p.name for p in journals], "expected": expected}
        coord.extra_meta["recovered"] = lambda: recovered
        ctx = RunContext(identity["run_id"], run_path, identity, log)
        for sink in sinks:
            sink.start(ctx)
        code = coord.finalize(compute, {"min_success_rate": settings.min_success_rate})
    finally:
        root.removeHandler(console)
        root.setLevel(previous_level)
        logfile.close()
    sinks_complete = all(r["complete"] for r in (coord.meta or {}).get("sinks", {}).values())
    print(f"loadgen recover: run {identity['run_id']} recovered as interrupted: {collector.received} of {expected} "
          f"records ({from_journals} from the journals); meta.json written"
          + ("" if sinks_complete else "; a copy is INCOMPLETE (see above)")
          + f". Next: loadgen reap {run_path}")
    return 0 if code == EXIT_INTERRUPTED and sinks_complete else 1


def last_barrier(run_path: Path) -> dict:
    """The barrier as the master last said it (heartbeat.json): whether, and why, it had released."""
    try:
        barrier = rundir.read_json(run_path / rundir.HEARTBEAT).get("barrier") or {}
    except (OSError, ValueError):
        barrier = {}
    return {"released": bool(barrier.get("released")), "reason": barrier.get("reason"),
            "arrived": barrier.get("arrived"), "from": "the master's last heartbeat.json"}
