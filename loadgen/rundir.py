"""The run directory: the local, authoritative copy of a run.

Every other copy (Postgres, object storage) follows the files written here,
so a crash of any sink, or of the master after a result reached disk, loses
nothing: the copy can be completed later from this directory.

Layout of ``<run-dir>/<run_id>/``:

- ``run.json``        identity and options, written at test start;
- ``raw.jsonl``       one result record per sandbox (see loadgen.result);
- ``heartbeat.json``  done / in flight / errors / timestamp, rewritten every few seconds;
- ``metrics.jsonl``   one health sample a second for each process;
- ``coordinator.log`` timestamped, level-tagged lines with phase markers;
- ``meta.json``       the run's identity, options and figures, written at the end;
- ``journal/``        each worker's own journal (on the worker's machine; `bin/launch-shards.sh`
                      copies every shard host's journals here at the end);
- ``logs/``           each worker's log and the master's (`bin/launch-shards.sh`);
- ``hosts.json``      each shard host: what it had, its workers' limits and ids (`bin/launch-shards.sh`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import orjson

RUN = "run.json"
RAW = "raw.jsonl"
HEARTBEAT = "heartbeat.json"
METRICS = "metrics.jsonl"
LOG = "coordinator.log"
META = "meta.json"
JOURNAL_DIR = "journal"
LOGS_DIR = "logs"
HOSTS = "hosts.json"


def atomic_write_json(path: Path | str, obj) -> None:
    """Write JSON so that a reader never sees half a file (write, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path | str):
    with open(path, "rb") as fh:
        return orjson.loads(fh.read())


def iter_jsonl(path: Path | str) -> Iterator[dict]:
    """Records of a JSON-lines file; a torn last line (crash mid-write) is skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            line = line.strip()
            if line:
                yield orjson.loads(line)


def read_records(run_path: Path | str) -> list[dict]:
    """All result records of a run directory, one per sandbox_idx (last one wins)."""
    by_idx = {}
    for record in iter_jsonl(Path(run_path) / RAW):
        by_idx[record["sandbox_idx"]] = record
    return [by_idx[k] for k in sorted(by_idx)]
