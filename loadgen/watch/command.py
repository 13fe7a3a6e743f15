"""`loadgen watch`: how runs are going, refreshed in place until every one is over.

Usage:
  loadgen watch [<run>...] [--recent=N] [--interval=S] [--once] [--json] [--run-dir=DIR]
                [--database-url=URL] [--bucket=BUCKET] [--prefix=PREFIX] [--stuck-after=S]
  loadgen watch (-h | --help)

Options:
  --recent=N           Also watch the N most recent runs of the source.
  --interval=S         Seconds between refreshes [default: 2].
  --once               Show once and exit: 0 all done and complete, 1 any failed,
                       interrupted, incomplete, stuck or missing, 2 still running.
  --json               One JSON object per run and refresh instead of text (its
                       heartbeat_ts is the timestamp of the heartbeat it shows).
  --run-dir=DIR        Where run directories are, for run ids and --recent (default ./runs).
  --database-url=URL   Read runs from Postgres (default $DATABASE_URL when neither a run
                       directory, --run-dir nor --bucket is given; prefer the environment
                       variable).
  --bucket=BUCKET      Read runs from object storage (endpoint and credentials from
                       the environment, as for `loadgen store`).
  --prefix=PREFIX      Key prefix inside the bucket [default: ].
  --stuck-after=S      A running run whose heartbeat is older than this is stuck [default: 60].
  -h --help            Show this help.

A <run> is a run directory, or a run id looked up in Postgres (--database-url),
in the bucket (--bucket), or under --run-dir. For each run: done/expected,
counts by status, in flight and held, create and TTI p50/p99 so far, rate and
ETA, the barrier's state, the heartbeat's age, and stale workers (no report
for 10 s) and stuck runs marked. Without --once it ends by itself once every
run is over (done, failed, interrupted, stuck or missing), with the same exit
codes (0 or 1); Ctrl-C exits 2.
"""

from __future__ import annotations

import os
import sys
import time

import orjson
from docopt import docopt

from loadgen.watch.sources import ObjectStoreSource, PostgresSource, RunDirSource, is_run_dir
from loadgen.watch.status import exit_code, format_lines, judge

CLEAR = "\x1b[H\x1b[2J"


def _number(args, name: str, kind=float):
    try:
        value = kind(args[name])
    except (TypeError, ValueError):
        raise SystemExit(f"loadgen watch: {name} takes a number (got {args[name]!r})")
    if value < 0 or (name == "--interval" and value == 0):
        raise SystemExit(f"loadgen watch: {name} must be {'> 0' if name == '--interval' else '>= 0'}")
    return value


def main(argv=None) -> int:
    args = docopt(__doc__, argv=list(sys.argv[1:] if argv is None else argv))
    interval = _number(args, "--interval")
    stuck_after = _number(args, "--stuck-after")
    recent = _number(args, "--recent", int) if args["--recent"] is not None else 0
    dirs = RunDirSource(args["--run-dir"] or "./runs")
    runs = list(args["<run>"])
    given_dirs = [r for r in runs if is_run_dir(dirs.path_of(r))]
    local = given_dirs or args["--run-dir"] or args["--bucket"]
    url = args["--database-url"] or ("" if local else os.environ.get("DATABASE_URL", ""))
    try:
        remote = PostgresSource(url) if url else (ObjectStoreSource(args["--bucket"], args["--prefix"])
                                                 if args["--bucket"] else None)
    except Exception as exc:  # noqa: BLE001 - the message is the sources' own, already without secrets
        print(f"loadgen watch: cannot read {'Postgres' if url else 'the bucket'}: {exc}", file=sys.stderr)
        return 1
    if recent:
        runs += [r for r in (remote or dirs).recent(recent) if r not in runs]
    if not runs:
        print("loadgen watch: no runs to watch (give run directories or run ids, or --recent N)", file=sys.stderr)
        return 1

    def source_of(run: str):
        return dirs if remote is None or run in given_dirs else remote

    tty = sys.stdout.isatty() and not args["--json"]
    try:
        while True:
            statuses = [judge(source_of(r).view(r), stuck_after) for r in runs]
            _show(statuses, args["--json"], tty)
            code = exit_code(statuses)
            if args["--once"] or code != 2:
                return code
            time.sleep(interval)
    except KeyboardInterrupt:
        return 2
    finally:
        if isinstance(remote, PostgresSource):
            remote.close()


def _show(statuses: list, as_json: bool, tty: bool) -> None:
    if as_json:
        out = "".join(orjson.dumps(s).decode() + "\n" for s in statuses)
    else:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = [f"loadgen watch, {stamp}: {len(statuses)} run(s)"]
        for s in statuses:
            lines += format_lines(s)
        out = (CLEAR if tty else "") + "\n".join(lines) + "\n" + ("" if tty else "\n")
    sys.stdout.write(out)
    sys.stdout.flush()
