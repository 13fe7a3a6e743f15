"""The run's identity: who ran what, where and when, recorded once at the start.

``make_identity`` gives the run its id (UTC time, short commit, provider), the
commit and host, the group/shard tags and the public options. The identity is
written to run.json, merged into meta.json and stored in Postgres, so it must
never carry a secret (``public_options`` drops or redacts them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Optional

from loadgen import __version__
from loadgen.result import iso
from loadgen.sinks.pg_redact import redact_url

SECRET_OPTIONS = ("database_url",)


def default_host() -> str:
    return socket.gethostname()


def commit_sha(explicit: str = "") -> str:
    if explicit:
        return explicit
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def public_options(options) -> dict:
    """The options as recorded in run.json / meta.json / Postgres: JSON values only, secrets never."""
    out = {}
    for key, value in sorted(vars(options).items()):
        if key.startswith("loadgen_") or any(s in key for s in ("password", "secret", "token", "api_key")):
            continue
        if key in SECRET_OPTIONS:
            value = redact_url(value) if value else value
        if isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = list(value)
    return out


def make_identity(options, provider: str, target: Optional[dict] = None) -> dict:
    """The run's identity. ``target`` says what the sandboxes are created on (the wiring's
    ``Controller.target()``); without it, an emulator URL in the options means an emulator."""
    if target is None:
        target = {"kind": "emulator" if getattr(options, "emulator_url", "") else "provider", "emulator_profile": None}
    sha = commit_sha(options.commit_sha)
    started = time.time()
    run_id = options.run_id or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{sha[:7]}-{provider}"
    return {
        "run_id": run_id,
        "provider": provider,
        "commit_sha": sha,
        "host": default_host(),
        "started_at": iso(started),
        "loadgen_version": __version__,
        "label": getattr(options, "label", "") or None,
        "target": target["kind"],
        "emulator_profile": target.get("emulator_profile"),
        "group_id": options.group_id or None,
        "shard_index": options.shard_index,
        "shard_count": options.shard_count,
        "tigris_prefix": (f"s3://{options.bucket}/" + "/".join(p for p in (options.prefix.strip("/"), run_id) if p) + "/")
        if options.bucket else None,
        "options": public_options(options),
    }
