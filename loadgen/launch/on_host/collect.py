"""Collect: this launch's worker logs and journals, as a gzipped tar on standard output.

`logs/worker-N.log` from the launch's folder, and `journal/*` from the run
directory the workers wrote (the master's --run-dir, taken relative to the
launch's folder when it is relative, as the workers took it).
"""

import os
import sys
import tarfile


def main(p):
    workdir = os.path.expanduser(p["workdir"])
    run_path = p.get("run_path")
    journal = None
    if run_path:
        journal = os.path.join(run_path if os.path.isabs(run_path) else os.path.join(workdir, run_path), "journal")
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|gz") as tar:
        for folder, arc in ((os.path.join(workdir, "logs"), "logs"), (journal, "journal")):
            if folder and os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    if os.path.isfile(path):
                        tar.add(path, arcname=arc + "/" + name)
    sys.stdout.buffer.flush()
