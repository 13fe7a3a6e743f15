"""Sinks: the copies of a run beyond its run directory (Postgres, object storage).

Each sink follows the run directory the master writes (never the generator's
hot path), so a sink that fails costs no result: it retries, and its copy can
be completed later from the directory (``loadgen db replay``, ``loadgen store
upload``).
"""

from __future__ import annotations

import os


def sinks_for(options) -> list:
    """The sinks a run's options ask for: Postgres by URL (or $DATABASE_URL), object storage by bucket."""
    sinks = []
    database_url = options.database_url or os.environ.get("DATABASE_URL", "")
    if database_url:
        from loadgen.sinks.postgres import PostgresSink

        sinks.append(PostgresSink(database_url))
    if options.bucket:
        from loadgen.sinks.objectstore import ObjectStoreSink

        sinks.append(ObjectStoreSink(options.bucket, options.prefix or ""))
    return sinks




def sink_refusals(options) -> list[str]:
    """The problems of the sinks these options ask for that retrying cannot fix (an unusable
    database URL, a missing bucket...), one line each, checked before anything is created."""
    try:
        sinks = sinks_for(options)
    except Exception as exc:  # noqa: BLE001 - a sink that cannot even be configured
        return [f"a sink could not be configured: {exc}"]
    problems = []
    for sink in sinks:
        problem = sink.check()
        if problem:
            problems.append(f"{sink.name} sink: {problem}")
        close = getattr(sink, "close", None)
        if close is not None:
            close()
    return problems
