"""Bringing a launch home: each host's worker journals and logs into the run directory.

Journals go to `<run>/journal/` (where `loadgen reap RUN_DIR` reads the
sandboxes each worker created), logs to `<run>/logs/<host>.worker-N.log`, and
`<run>/hosts.json` records each host: what it had (Python, loadgen, cores,
memory), the limits its workers ran with, the worker ids it ran, and how its
workers ended.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path
from typing import List, Optional

from loadgen import rundir
from loadgen.launch.ssh import Remote

HOSTS_FILE = rundir.HOSTS
JOURNAL = rundir.JOURNAL_DIR
LOGS = rundir.LOGS_DIR
_MEMBER = re.compile(r"^(logs|journal)/([A-Za-z0-9._-]+)$")


def fetch(host: Remote, workdir: str, run_path: Optional[str], run_dir: Path) -> dict:
    """Copy one host's logs and journals into run_dir; returns what was copied (or the error)."""
    with tempfile.TemporaryFile() as spool:
        answer = host.run("collect", {"workdir": workdir, "run_path": run_path}, stdout=spool, timeout=600)
        if answer.returncode != 0:
            return {"error": answer.why()}
        spool.seek(0)
        copied = {"journals": [], "logs": []}
        with tarfile.open(fileobj=spool, mode="r|gz") as tar:
            for member in tar:
                m = _MEMBER.match(member.name)
                if not m or not member.isfile():
                    continue  # only plain files with plain names, in the two folders
                folder, name = m.groups()
                if folder == "logs":
                    target = run_dir / LOGS / f"{host.label}.{name}"
                    copied["logs"].append(target.name)
                else:
                    target = run_dir / JOURNAL / name
                    copied["journals"].append(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:
                    target.write_bytes(src.read())
        return copied


def worker_ids(journals: List[str]) -> List[str]:
    """The worker ids whose journals came from a host (journal/<worker id>.jsonl)."""
    return sorted(n[: -len(".jsonl")] for n in journals if n.endswith(".jsonl") and not n.endswith(".created.jsonl"))


def write_hosts_file(run_dir: Path, record: dict) -> Path:
    path = run_dir / HOSTS_FILE
    rundir.atomic_write_json(path, record)
    return path
