"""`loadgen store upload` and `loadgen store fetch`: a run directory to object storage and back.

Upload is the live sink's own code (``ObjectStoreSink``) run over a directory
after the fact, so it resumes where the run's copy stopped; fetch rebuilds a
run directory from the stored chunks and manifest.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from docopt import docopt

from loadgen import rundir
from loadgen.sinks.base import RunContext
from loadgen.sinks.objectstore import LOG, ObjectStoreError, ObjectStoreSink, describe_error, key_root
from loadgen.sinks.s3_config import ConfigError, Redactor, make_client, settings_from_env
from loadgen.sinks.s3_fetch import fetch_run

USAGE = """Copy run directories to S3-compatible object storage (Tigris, R2, S3, MinIO) and back.

Usage:
  loadgen store upload RUN_DIR --bucket=BUCKET [--prefix=PREFIX] [--timeout=SECONDS]
  loadgen store fetch RUN_ID DIR --bucket=BUCKET [--prefix=PREFIX]
  loadgen store (-h | --help)

Options:
  --bucket=BUCKET     Bucket name.
  --prefix=PREFIX     Key prefix; the run lives under PREFIX/RUN_ID/ [default: ].
  --timeout=SECONDS   Give up retrying an unreachable store after this long [default: 120].
  -h --help           Show this help.

upload copies a run directory (finished or not) with the same code the live
sink uses; running it again uploads only what is missing. fetch writes the
stored run into DIR (created if needed) as a run directory: raw.jsonl
(verified against the manifest's sha256), run.json, meta.json, metrics.jsonl,
coordinator.log, heartbeat.json.

Endpoint and credentials come from the environment: TIGRIS_STORAGE_ACCESS_KEY_ID,
TIGRIS_STORAGE_SECRET_ACCESS_KEY, TIGRIS_STORAGE_ENDPOINT (default
https://t3.storage.dev), or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION, AWS_ENDPOINT_URL_S3; LOADGEN_S3_ADDRESSING_STYLE=path|virtual|auto.

Exit codes: 0 complete; 1 failed or incomplete; 3 fetched, but the stored run
has no meta.json (it did not finish).
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = docopt(USAGE, argv=argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args["upload"]:
            return _upload(Path(args["RUN_DIR"]), args["--bucket"], args["--prefix"], float(args["--timeout"]))
        return _fetch(args["RUN_ID"], Path(args["DIR"]), args["--bucket"], args["--prefix"])
    except (ConfigError, ObjectStoreError) as exc:
        print(f"loadgen store: {exc}", file=sys.stderr)
        return 1


def _upload(run_path: Path, bucket: str, prefix: str, timeout: float) -> int:
    if not (run_path / rundir.RAW).exists() and not (run_path / rundir.RUN).exists():
        print(f"loadgen store upload: {run_path} is not a run directory (no run.json or raw.jsonl)", file=sys.stderr)
        return 1
    identity = rundir.read_json(run_path / rundir.RUN) if (run_path / rundir.RUN).exists() else {}
    run_id = identity.get("run_id") or run_path.name
    meta = rundir.read_json(run_path / rundir.META) if (run_path / rundir.META).exists() else None
    status = (meta or {}).get("status") or ("done" if meta else "interrupted")
    sink = ObjectStoreSink(bucket, prefix, finish_timeout=timeout)
    sink.start(RunContext(run_id=run_id, run_path=run_path, identity=identity, log=LOG))
    report = sink.finish(meta, status)
    print(("complete: " if report.complete else "INCOMPLETE: ") + report.detail)
    return 0 if report.complete else 1


def _fetch(run_id: str, dest: Path, bucket: str, prefix: str) -> int:
    settings = settings_from_env()
    client, secrets = make_client(settings)
    redactor = Redactor(settings.secrets() + secrets)
    try:
        result = fetch_run(client, bucket, key_root(prefix, run_id), dest, log=LOG)
    except Exception as exc:  # noqa: BLE001
        message, _ = describe_error(exc, redactor)
        print(f"loadgen store fetch: {message}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0 if result.finished else 3
