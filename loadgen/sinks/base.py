"""The sink contract: a sink follows the run directory.

The master writes every result to ``raw.jsonl`` in the run directory first.
A sink never receives records from the generator's hot path; it copies what
is new in the run directory to somewhere else. That is what makes each sink
crash-safe and replayable: ``loadgen db replay`` and ``loadgen store upload``
run the very same ``sync``/``finish`` code over a finished directory.

Threading: the master calls ``sync()`` every few seconds from one greenlet
per sink. A sink must never block the gevent hub for long: do blocking I/O on
gevent-cooperative sockets (psycogreen for psycopg2, monkey-patched sockets
for boto3) or in ``gevent.get_hub().threadpool``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunContext:
    run_id: str
    run_path: Path  # <run-dir>/<run_id>
    identity: dict  # run.json: run_id, provider, commit_sha, host, started_at, group_id, shard_index, shard_count, options
    log: object = None  # a logging.Logger-like object; sinks report failures and backlog through it


@dataclass
class SinkReport:
    name: str
    complete: bool
    detail: str = ""
    extra: dict = field(default_factory=dict)


class Sink:
    """Base class. Subclasses implement start, sync, finish."""

    name = "sink"

    def check(self):
        """Called before anything is created: a problem that retrying cannot fix, as one line naming
        the fix (the run is refused), or None. Transient trouble is left to the retries."""
        return None

    def start(self, ctx: RunContext) -> None:
        """Called once at test start, before any sandbox is created (e.g. insert the runs row)."""

    def sync(self) -> None:
        """Copy whatever is new in the run directory. Raise on failure; the master retries with backoff
        and logs the failure and the backlog loudly."""

    def store_final_meta(self, meta: dict) -> bool:
        """Called after meta.json is written with the keys that only exist once every sink finished
        (exit_code, complete, sinks): a sink that keeps a copy of meta.json replaces it. Never raises."""
        return True

    def finish(self, meta: dict, status: str) -> SinkReport:
        """Copy the rest, then the final meta (status is done/failed/interrupted). Called once at the end,
        after raw.jsonl is complete. Must return (not raise) and say whether the copy is complete."""
        return SinkReport(self.name, True)
