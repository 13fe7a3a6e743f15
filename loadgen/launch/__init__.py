"""The launcher behind `bin/launch-shards.sh`: one burst across many machines.

A Locust master runs on this machine; worker processes run on shard hosts,
reached over SSH (or on this machine). In order:

1. `preflight`: every host is probed (`on_host/probe.py`) and judged before
   anything starts: SSH, Python, loadgen at this checkout's identity, the
   locustfile, the master's port, descriptor and port limits. A problem is
   exit 2, naming the host and the fix.
2. `source` (`--install`): this checkout's tracked files and a wheelhouse of
   its dependencies, built on this machine, installed into a venv on each
   host that lacks them (`on_host/install.py`).
3. `master`: the master process, its output and its run directory.
4. `on_host/start.py`: each host's workers, tuned and detached; secrets reach
   them on standard input only (`worker`).
5. At the end or on a signal: `on_host/stop.py` leaves no worker behind, and
   `collect` brings each host's journals and logs into the run directory.

`ssh` runs each step on a host: the step's program travels on SSH's standard
input to a fixed bootstrap, so parameters and secrets never reach a command
line there.
"""
