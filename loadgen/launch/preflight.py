"""Preflight: every host is checked, and tuned on paper, before anything is started.

`probe_all` asks each host what it has (on_host/probe.py; nothing is changed
there). `judge` turns the answers into problems, each naming the host and the
fix, and into each host's plan: how many workers, the descriptor limit they
get, whether the ephemeral port range must be widened. Any problem and the
launcher exits 2 with nothing started anywhere.

The tuning raises what a worker cannot raise itself (the hard descriptor
limit, as root; the port range, as root or with sudo), by the engine's own
measure (`loadgen.engine.limits`), at the adapters' most (`Provider.fds_per_sandbox`
connections per sandbox, all to one destination as against an emulator).
Whether a run then fits is the engine's to judge: the master checks every
worker's limits before the first create and refuses (exit 2) a run that
does not fit, naming the host and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import List, Optional

from loadgen.engine.limits import fds_needed
from loadgen.launch.ssh import Remote, each

MIN_PYTHON = (3, 10)
WIDE_PORT_RANGE = "1024 65535"


@dataclass
class Plan:
    """What the launcher will do on one host."""

    workers: int
    nofile: int
    port_range: Optional[str] = None  # widen to this, or leave alone
    port_range_via: Optional[str] = None  # "root" or "sudo"
    needs_install: bool = False
    notes: List[str] = field(default_factory=list)


def probe_all(hosts: List[Remote], params: dict) -> List[Optional[str]]:
    """Fill each host's `facts`; returns, per host, why it could not be probed (or None)."""

    def probe(host: Remote) -> Optional[str]:
        answer = host.run("probe", params, timeout=host.connect_timeout + 60)
        if not answer.reached:
            return (f"does not answer over SSH ({answer.why()}). Fix: check the address, that sshd runs there and "
                    f"accepts your key: ssh -o BatchMode=yes {host.destination} true")
        if answer.returncode == 127:
            return f"has no {host.python} ({answer.why()}). Fix: install Python {'.'.join(map(str, MIN_PYTHON))} or " \
                   "newer there (Debian/Ubuntu: apt-get install python3), or name it with --remote-python"
        try:
            host.facts = json.loads(answer.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return f"answered the probe with an error: {answer.why()}"
        return None

    return each(hosts, probe)


def _version(text: str):
    return tuple(int(x) for x in text.split(".")[:2])


def judge(hosts: List[Remote], *, users: int, per_host: Optional[int], source: Optional[str], install: bool,
          master_python: str, master: str, nofile: Optional[int],
          run_dir: str = "./runs") -> tuple[list, list]:
    """(problems, plans): problems are 'host X: what. Fix: how.' lines."""
    problems: List[str] = []
    plans: List[Plan] = []
    counts = [per_host or int(h.facts.get("cores") or 1) for h in hosts]
    total = sum(counts)
    per_worker = math.ceil(users / total)
    for host, workers in zip(hosts, counts):
        f = host.facts
        say = lambda what: problems.append(f"host {host.destination}: {what}")  # noqa: E731
        plan = Plan(workers=workers, nofile=0)
        plans.append(plan)
        if _version(f["python_version"]) < MIN_PYTHON:
            say(f"{f['python']} is Python {f['python_version']}; loadgen needs {'.'.join(map(str, MIN_PYTHON))} or "
                "newer. Fix: install a newer python3 there, or name one with --remote-python")
            continue
        if not f["master_reachable"]:
            say(f"cannot reach the master at {master} ({f.get('master_error')}). Fix: open TCP port "
                f"{master.rsplit(':', 1)[1]} on this machine to the hosts (firewall, security group), or give "
                "--master-host an address of this machine that they reach")
        before = len(problems)
        venv = f.get("venv") or {}
        installed = venv and not venv.get("error") and not venv.get("missing")
        same = source is not None and f.get("source") == source
        if not (installed and same):
            if install:
                plan.needs_install = True
                if _version(f["python_version"]) != _version(master_python):
                    say(f"python3 there is {f['python_version']}, but the wheels built here are for "
                        f"{master_python}. Fix: install Python {'.'.join(master_python.split('.')[:2])} there and "
                        "name it with --remote-python, or launch from a virtualenv of the hosts' version")
                elif f["remote_dir_exists"] and not f["remote_dir_empty"] and not f.get("install"):
                    say(f"{f['remote_dir']} exists and was not made by --install. Fix: name another --remote-dir, "
                        "or empty that folder")
                elif not f["venv_module"]:
                    say("its python3 has no venv module. Fix: install the full python3 there (not a minimal one)")
            elif not f["remote_dir_exists"]:
                say(f"has no loadgen: {f['remote_dir']} does not exist. Fix: rerun with --install, or check out "
                    f"this commit ({source}) there, or name its folder with --remote-dir")
            elif not installed:
                why = venv.get("error") or (f"{', '.join(venv['missing'])} missing" if venv else
                                            f"no virtualenv at {f['venv_dir']}")
                say(f"has no working loadgen in {f['remote_dir']} ({why}). Fix: rerun with --install, or "
                    f"install loadgen there into {f['venv_dir']} (or name its virtualenv with --remote-venv)")
            else:
                say(f"runs loadgen {f.get('source') or 'of unknown commit'}, this checkout is {source}. "
                    f"Fix: rerun with --install, or check out {source} in {f['remote_dir']} there")
        if not plan.needs_install and len(problems) == before and not f["locustfile_exists"]:
            say(f"has no locustfile {f['locustfile']}. Fix: keep the locustfile inside the checkout (so that "
                "--install ships it), or copy it there")
        if f.get("run_dir_writable") is False:
            say(f"cannot write the run directory {run_dir} there (the workers write their journals under it). "
                "Fix: give --run-dir a relative path (the workers then write inside their launch's folder), or "
                "make that folder writable there")
        _tune(f, plan, workers, per_worker, nofile, say)
    return problems, plans


def _connections_per_sandbox() -> int:
    from loadgen.providers.base import Provider  # (imports gevent: only when judging)

    return Provider.fds_per_sandbox


def _tune(f: dict, plan: Plan, workers: int, per_worker: int, nofile: Optional[int], say) -> None:
    hard = f["nofile"][1]
    per_sandbox = _connections_per_sandbox()
    need = fds_needed(per_worker, per_sandbox)
    if nofile:
        plan.nofile = nofile
        if nofile > hard and not f["root"]:
            say(f"--nofile {nofile} is above the hard limit there ({hard}), which only root may raise. Fix: a lower "
                "--nofile, or raise the hard limit of your login there (limits.conf, or LimitNOFILE= for a service)")
    else:  # the hard limit (as root, what the sandboxes need if that is more, up to fs.nr_open)
        plan.nofile = min(max(hard, need), f["nr_open"]) if f["root"] else hard
    low, high = f["port_range"]
    connections = per_worker * workers * per_sandbox
    if high - low + 1 < connections:
        via = "root" if f["root"] else "sudo" if f["sudo"] else None
        if via is not None:
            plan.port_range, plan.port_range_via = WIDE_PORT_RANGE, via
            plan.notes.append(f"widening the ephemeral port range {low}-{high} to {WIDE_PORT_RANGE.replace(' ', '-')} "
                              f"(up to {connections} connections at once)")
