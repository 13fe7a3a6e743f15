"""Stop: make sure no worker of this launch is left on this host.

Waits up to `grace` seconds for the workers to end by themselves (they quit
when the master does), then sends SIGTERM (a worker ends its holds and
destroys what it holds), then, after `term_grace`, SIGKILL. With `check_only`
it only says which workers are alive. Prints one JSON line.
"""

import json
import os
import signal
import time


def workers(workdir):
    """pid -> pidfile of each worker of this launch still running (its command line names its pidfile)."""
    alive = {}
    folder = os.path.join(workdir, "pids")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        try:
            with open(path) as fh:
                pid = int(fh.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                cmdline = fh.read()
            with open("/proc/%d/stat" % pid) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            continue
        if path.encode() in cmdline and state != "Z":
            alive[pid] = name
    return alive


def wait(workdir, seconds):
    deadline = time.time() + seconds
    while True:
        alive = workers(workdir)
        if not alive or time.time() >= deadline:
            return alive
        time.sleep(0.2)


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def main(p):
    workdir = os.path.expanduser(p["workdir"])
    if p.get("check_only"):
        print(json.dumps({"alive": sorted(workers(workdir).values())}))
        return
    out = {"terminated": [], "killed": []}
    alive = wait(workdir, p["grace"])
    if alive:
        out["terminated"] = sorted(alive.values())
        signal_all(alive, signal.SIGTERM)
        alive = wait(workdir, p["term_grace"])
    if alive:
        out["killed"] = sorted(alive.values())
        signal_all(alive, signal.SIGKILL)
        alive = wait(workdir, 10)
    out["left"] = sorted(alive.values())
    print(json.dumps(out))
