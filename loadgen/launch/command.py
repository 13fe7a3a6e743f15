"""`bin/launch-shards.sh`: the options, and the two ways a launch runs (SSH hosts, or this machine)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Optional, Sequence

from loadgen.launch import collect, preflight, ssh
from loadgen.launch.master import Master
from loadgen.launch.source import CHECKOUT, BuildError, Wheelhouse, identity, untracked_files

EXIT_REFUSED = 2
EXIT_INTERRUPTED = 4
HOST_WHEEL_CACHE = "~/.cache/loadgen/wheelhouse"
DEFAULT_WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loadgen" / "wheelhouse"

DESCRIPTION = """\
Launch one burst across many machines: a Locust master on this machine, and
worker processes on every shard host over SSH (without --hosts, on this
machine). The master waits for every worker, dispatches all N sandboxes at
once, and ends by itself when every sandbox's life is over; the exit code is
the run's (0 complete, 2 refused to start, 3 incomplete, 4 interrupted; see
README "Exit codes").

Before anything is started, every host is checked: it answers over SSH, has
Python and loadgen at this checkout's commit (or --install puts them there),
has the locustfile, and reaches the master's port. Any problem: exit 2, each
problem naming its host and the fix, nothing created. Where their sandboxes
need it and it is allowed, the workers get a higher hard descriptor limit and
a wider ephemeral port range (the master then checks every worker's limits). At the end, and after Ctrl-C or SIGTERM (which
interrupt the run as on one machine), every host's workers are stopped and
their journals and logs are copied into the run directory (journal/, logs/,
hosts.json), so `loadgen reap RUN_DIR` can reach sandboxes created anywhere.
Forwarded variables travel on SSH's standard input only: never on a command
line, in an environment a process starts with, or in a log.

examples:
  bin/launch-shards.sh -f locustfiles/e2b.py -u 100000 --hosts shards.txt -w 8 --env E2B_API_KEY --install
  bin/launch-shards.sh -f locustfiles/local.py -u 2000 -w 2      # every worker on this machine
  bin/launch-shards.sh ... -- --hold 60 --run-dir runs            # after --: the master's locust options
"""

EPILOG = """\
The hosts file lists one ssh destination per line (host, user@host, or a Host
of --ssh-config); blank lines and lines starting with # are skipped. Workers
run in ~/.loadgen/launches/<launch id>-<host>/ on each host (their logs/ and,
for a relative --run-dir, their journals). See docs/many-machines.md.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bin/launch-shards.sh", usage="%(prog)s -u N [options] [-- LOCUST_OPTIONS...]",
                                description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", dest="locustfile", default="locustfiles/e2b.py", metavar="FILE",
                   help="locustfile (default locustfiles/e2b.py)")
    p.add_argument("-u", dest="users", metavar="N", help="sandboxes in the whole run (required)")
    p.add_argument("-w", dest="per_host", metavar="N",
                   help="worker processes per host (default: the host's core count)")
    p.add_argument("--hosts", metavar="FILE", help="shard hosts, one ssh destination per line; without it, "
                                                    "the workers run on this machine")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh client configuration to use (ssh -F FILE)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="an ssh option, as for ssh -o (repeatable)")
    p.add_argument("--master-host", metavar="ADDR",
                   help="address the workers reach the master at (default: this machine's first address, "
                        "from hostname -I)")
    p.add_argument("--master-bind-host", default="0.0.0.0", metavar="ADDR",
                   help="address the master listens on (default 0.0.0.0)")
    p.add_argument("--master-port", type=int, default=0, metavar="PORT",
                   help="the master's port, which the hosts must reach (default: a free one)")
    p.add_argument("--remote-dir", metavar="DIR",
                   help="loadgen on the hosts: a checkout with a .venv, or where --install puts it "
                        "(default: this checkout's path; with --install, ~/loadgen)")
    p.add_argument("--remote-venv", metavar="DIR",
                   help="without --install: the virtualenv loadgen runs from on the hosts (default "
                        "REMOTE_DIR/.venv)")
    p.add_argument("--remote-python", default="python3", metavar="CMD",
                   help="the hosts' Python, for the checks and for --install's venv (default python3)")
    p.add_argument("--install", action="store_true",
                   help="install this checkout, and every dependency as a wheel built here, into a venv in "
                        "--remote-dir on each host that lacks it (nothing is fetched on the hosts)")
    p.add_argument("--check", action="store_true",
                   help="run the preflight (and --install) only, then stop: exit 0 when every host is ready")
    p.add_argument("--wheelhouse", default=str(DEFAULT_WHEELHOUSE), metavar="DIR",
                   help=f"where --install keeps the wheels it builds (default {DEFAULT_WHEELHOUSE})")
    p.add_argument("--env", dest="forward", action="append", default=[], metavar="NAME",
                   help="forward this environment variable to the workers (repeatable)")
    p.add_argument("--nofile", type=int, metavar="N",
                   help="descriptor limit for each worker (default: what its sandboxes need, at least the "
                        "host's hard limit)")
    p.add_argument("--grace", type=float, default=30.0, metavar="S",
                   help="seconds the workers get to end by themselves after the master ends, before they are "
                        "sent SIGTERM (and, 30 s later, SIGKILL) (default 30)")
    return p


def say(message: str) -> None:
    sys.stderr.write(f"launch-shards: {message}\n")
    sys.stderr.flush()


class Refused(Exception):
    """Bad input or a failed preflight: exit 2, nothing started."""


class Interrupted(Exception):
    pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    opts = parser().parse_args(argv)
    signals = Signals()
    try:
        check_options(opts)
        if opts.hosts:
            return ShardLaunch(opts, extra, signals).run()
        return local_launch(opts, extra, signals)
    except Refused as e:
        for line in str(e).splitlines():
            say(line)
        return EXIT_REFUSED
    except Interrupted:
        ssh.kill_all()
        say("interrupted before the run started; nothing was created")
        return EXIT_INTERRUPTED


def check_options(o) -> None:
    if not o.users:
        raise Refused("-u N is required (see --help)")
    for name, value in (("-u", o.users), ("-w", o.per_host)):
        if value is not None and not (value.isdigit() and int(value) > 0):
            raise Refused(f"{name} must be a positive integer")
    if o.install and o.remote_venv:
        raise Refused("--remote-venv is for hosts that have loadgen already; --install puts it in REMOTE_DIR/.venv")
    o.users = int(o.users)
    o.per_host = int(o.per_host) if o.per_host else None
    for name in o.forward:
        if not os.environ.get(name):
            raise Refused(f"--env {name}: the variable is not set here")
    path = Path(o.locustfile)
    if not path.is_file() and not path.is_absolute() and (CHECKOUT / path).is_file():
        path = CHECKOUT / path
    if not path.is_file():
        raise Refused(f"-f {o.locustfile}: no such locustfile")
    o.locustfile_path = path.resolve()
    o.locust = locust_command()


def locust_command() -> str:
    sibling = Path(sys.executable).with_name("locust")
    found = str(sibling) if sibling.exists() else shutil.which("locust")
    if not found:
        raise Refused("locust is not installed here: activate loadgen's virtualenv (pip install -e .)")
    return found


class Signals:
    """Ctrl-C and SIGTERM: before the run, abort; during it, pass them on to the master."""

    def __init__(self):
        self.master: Optional[Master] = None
        self.received: List[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, sig, frame) -> None:
        self.received.append(sig)
        if self.master is None:
            raise Interrupted()
        if not self.master.alive():
            say("the run has ended: stopping the workers and copying their journals home; a moment")
            return
        if len(self.received) >= 3:
            say("third signal: killing the master")
            self.master.kill()
        else:
            name = signal.Signals(sig).name
            say(f"{name}: interrupting the run (the master ends every hold and destroys what it holds)")
            self.master.interrupt(sig)


def master_argv(o, locustfile: str, workers: int, bind: str, port: int, extra: List[str]) -> List[str]:
    return [o.locust, "-f", locustfile, "--master", "--headless", "-u", str(o.users), "-r", str(o.users),
            "--expect-workers", str(workers), "--master-bind-host", bind, "--master-bind-port", str(port), *extra]


LINGER_S = 20.0  # a master still running this long after its run's last line is told to go


def wait_for_master(master: Master, signals: Signals) -> int:
    signals.master = master
    told = False
    while True:
        code = master.wait(0.5)
        if code is not None:
            return EXIT_INTERRUPTED if code < 0 else code
        if not told and master.ended_at is not None and time.monotonic() - master.ended_at > LINGER_S:
            # (Locust keeps a headless master running when it stopped the test itself, e.g. after
            # its last worker went missing; the run is finalized by then, so nothing is lost.)
            say(f"the run is finalized but the master is still running after {LINGER_S:.0f} s: sending it SIGTERM")
            master.interrupt(signal.SIGTERM)
            told = True


# -- this machine only --------------------------------------------------------------------------------


def local_launch(o, extra: List[str], signals: Signals) -> int:
    workers = o.per_host or os.cpu_count() or 1
    port = o.master_port or _free_port("127.0.0.1")
    say(f"master on 127.0.0.1:{port}, {workers} workers on this machine, {o.users} sandboxes")
    master = Master(master_argv(o, str(o.locustfile_path), workers, "127.0.0.1", port, extra), dict(os.environ))
    procs = [subprocess.Popen([o.locust, "-f", str(o.locustfile_path), "--worker", "--master-host", "127.0.0.1",
                               "--master-port", str(port)], stdin=subprocess.DEVNULL, start_new_session=True)
             for _ in range(workers)]
    code = wait_for_master(master, signals)
    deadline = time.time() + o.grace
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        deadline = time.time() + 30
    run_dir = Path(master.run_path) if master.run_path else None
    master.keep_log(run_dir)
    say(f"master exited with {code}")
    unfinished(run_dir)
    return code


def unfinished(run_dir: Optional[Path]) -> None:
    """A master that died mid-run wrote no meta.json: say how to finish the run from the journals."""
    from loadgen import rundir

    if run_dir is not None and run_dir.is_dir() and not (run_dir / rundir.META).exists():
        say(f"the master ended without finishing the run (no {rundir.META}); the workers' journals are in "
            f"{run_dir / rundir.JOURNAL_DIR}. Finish it with: loadgen recover {run_dir}; then: loadgen reap {run_dir}")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# -- shard hosts over SSH ----------------------------------------------------------------------------


def run_dir_option(locust_args: List[str]) -> str:
    """The master's --run-dir among its options (the workers write their journals under it too)."""
    value = "./runs"
    for i, arg in enumerate(locust_args):
        if arg == "--run-dir" and i + 1 < len(locust_args):
            value = locust_args[i + 1]
        elif arg.startswith("--run-dir="):
            value = arg.split("=", 1)[1]
    return value


def read_hosts(path: str) -> List[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise Refused(f"--hosts {path}: {e.strerror}") from None
    hosts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not hosts:
        raise Refused(f"{path} lists no hosts")
    if len(set(hosts)) != len(hosts):
        raise Refused(f"{path} lists a host twice")
    return hosts


def first_address() -> str:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except OSError:
        out = []
    if not out:
        raise Refused("cannot tell this machine's address: give --master-host")
    return out[0]


class ShardLaunch:
    """One launch over SSH: preflight, install, master, workers, wait, stop, collect."""

    def __init__(self, o, extra: List[str], signals: Signals):
        self.o, self.extra, self.signals = o, extra, signals
        self.launch_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.remote_dir = o.remote_dir or ("~/loadgen" if o.install else str(CHECKOUT))
        self.hosts = [ssh.Remote(dest, o.ssh_config, o.ssh_option, python=o.remote_python)
                      for dest in read_hosts(o.hosts)]
        self.source = identity()
        self.master_host = o.master_host or first_address()
        self.plans: List[preflight.Plan] = []
        self.started: dict = {}  # destination -> what start.py answered
        self.stopped: dict = {}
        self.installed: dict = {}

    def workdir(self, host: ssh.Remote) -> str:
        """This launch's folder on a host (one per destination, should two name the same machine)."""
        return f"~/.loadgen/launches/{self.launch_id}-{host.label}"

    @property
    def remote_locustfile(self) -> str:
        """The locustfile's path on the hosts: the same place in their checkout, or the same absolute path."""
        path = self.o.locustfile_path
        try:
            return str(path.relative_to(CHECKOUT))
        except ValueError:
            return str(path)

    # -- preflight -------------------------------------------------------------------------------
    def preflight(self, port: int) -> None:
        params = {"remote_dir": self.remote_dir, "venv": self.o.remote_venv, "locustfile": self.remote_locustfile,
                  "master_host": self.master_host, "master_port": port, "wheel_cache": HOST_WHEEL_CACHE,
                  "run_dir": run_dir_option(self.extra)}
        say(f"preflight: checking {len(self.hosts)} hosts over SSH")
        failures = preflight.probe_all(self.hosts, params)
        problems = [f"host {h.destination}: {why}" for h, why in zip(self.hosts, failures) if why]
        if problems:
            raise Refused(self._refusal(problems))
        problems, self.plans = self._judge(self.o.install)
        if problems:
            raise Refused(self._refusal(problems))
        todo = [h for h, plan in zip(self.hosts, self.plans) if plan.needs_install]
        if todo:
            self.install(todo)
            failures = preflight.probe_all(todo, params)
            problems = [f"host {h.destination}: {why}" for h, why in zip(todo, failures) if why]
            problems += self._judge(False)[0]
            if problems:
                raise Refused(self._refusal(problems))
        for host, plan in zip(self.hosts, self.plans):
            for note in plan.notes:
                say(f"{host.destination}: {note}")

    def _judge(self, install: bool):
        import platform

        return preflight.judge(self.hosts, users=self.o.users, per_host=self.o.per_host, source=self.source,
                               install=install, master_python=platform.python_version(),
                               master=f"{self.master_host}:{self.port}", nofile=self.o.nofile, run_dir=run_dir_option(self.extra))

    def _refusal(self, problems: List[str]) -> str:
        return "\n".join(["preflight failed; nothing was started:", *[f"  {p}" for p in problems]])

    def install(self, hosts: List[ssh.Remote]) -> None:
        if self.source is None:
            raise Refused("--install needs this checkout to be a git checkout (it ships the tracked files)")
        try:
            wheelhouse = Wheelhouse(Path(self.o.wheelhouse))
            wheelhouse.build(progress=say)
        except BuildError as e:
            raise Refused(f"--install: {e}") from None
        say(f"installing loadgen {self.source} into {self.remote_dir}/.venv on "
            f"{', '.join(h.destination for h in hosts)}")
        untracked = untracked_files()
        if untracked:
            say(f"note: {len(untracked)} untracked files are not shipped (git add them to ship them): "
                f"{', '.join(untracked[:5])}{' ...' if len(untracked) > 5 else ''}")
        params = wheelhouse.install_params(self.remote_dir, HOST_WHEEL_CACHE)

        def one(host: ssh.Remote) -> Optional[str]:
            answer = host.run("install", params, data=wheelhouse.install_stream(host.facts.get("wheels", [])),
                              timeout=1800)
            result = _json_line(answer.stdout)
            if answer.returncode != 0 or not result.get("ok"):
                return f"host {host.destination}: --install failed: {result.get('error') or answer.why()}"
            self.installed[host.destination] = result
            return None

        started = time.monotonic()
        problems = [p for p in ssh.each(hosts, one) if p]
        if problems:
            raise Refused(self._refusal(problems))
        say(f"installed in {time.monotonic() - started:.0f} s")

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> int:
        listener = socket.create_server((self.o.master_bind_host, self.o.master_port))  # holds the port
        self.port = listener.getsockname()[1]
        try:
            self.preflight(self.port)
        finally:
            listener.close()
        if self.o.check:
            say(f"preflight passed: {len(self.hosts)} hosts ready, {sum(p.workers for p in self.plans)} workers; "
                "nothing was started (--check)")
            return 0
        total = sum(p.workers for p in self.plans)
        say(f"master on {self.master_host}:{self.port}, {total} workers on {len(self.hosts)} hosts, "
            f"{self.o.users} sandboxes")
        master = Master(master_argv(self.o, str(self.o.locustfile_path), total, self.o.master_bind_host, self.port,
                                    self.extra), dict(os.environ))
        self.signals.master = master
        refused = self.start_workers()
        if refused is None:
            refused = self.watch_start(master)
        if refused is not None:
            master.interrupt(signal.SIGTERM)
        code = wait_for_master(master, self.signals)
        run_dir = Path(master.run_path) if master.run_path else None
        self.finish(run_dir)
        master.keep_log(run_dir)
        if refused is not None:
            for line in refused.splitlines():
                say(line)
            return EXIT_REFUSED
        say(f"master exited with {code}")
        unfinished(run_dir)
        return code

    def start_workers(self) -> Optional[str]:
        secrets = {name: os.environ[name] for name in self.o.forward}
        args = ["--worker", "--master-host", self.master_host, "--master-port", str(self.port)]

        def one(pair) -> Optional[str]:
            host, plan = pair
            params = {"workdir": self.workdir(host), "python": host.facts["venv_python"], "workers": plan.workers,
                      "nofile": plan.nofile, "port_range": plan.port_range, "port_range_via": plan.port_range_via,
                      "locust_args": ["-f", host.facts["locustfile"], *args], "secrets": secrets}
            answer = host.run("start", params, timeout=120)
            result = _json_line(answer.stdout)
            if answer.returncode != 0 or "pids" not in result:
                return f"host {host.destination}: could not start its workers: {answer.why()}"
            self.started[host.destination] = result
            return None

        problems = [p for p in ssh.each(list(zip(self.hosts, self.plans)), one) if p]
        return "\n".join(["could not start every worker; the run was stopped before it began:", *problems]) \
            if problems else None

    def watch_start(self, master: Master, every: float = 3.0) -> Optional[str]:
        """Until the run starts: a worker that dies (bad credentials, an import error) ends the launch."""
        while master.alive() and not master.started.wait(every):
            answers = ssh.each(self.hosts, lambda h: _json_line(
                h.run("stop", {"workdir": self.workdir(h), "check_only": True}, timeout=60).stdout))
            dead = []
            for host, answer in zip(self.hosts, answers):
                expected = len(self.started.get(host.destination, {}).get("pids", []))
                if "alive" in answer and len(answer["alive"]) < expected:
                    dead.append(host)
            if dead and not master.started.is_set():
                lines = ["a worker ended before the run started; nothing was created:"]
                for host in dead:
                    lines += [f"  host {host.destination}: {len(self.started[host.destination]['pids'])} started, "
                              f"{len(answers[self.hosts.index(host)]['alive'])} alive; its log ends:"]
                    lines += [f"    {line}" for line in self._log_tail(host)]
                return "\n".join(lines)
        return None

    def _log_tail(self, host: ssh.Remote, lines: int = 8) -> List[str]:
        with tempfile.TemporaryDirectory(prefix="loadgen-launch-") as tmp:
            collect.fetch(host, self.workdir(host), None, Path(tmp))
            out = []
            for log in sorted((Path(tmp) / collect.LOGS).glob("*.log")):
                text = log.read_text(errors="replace").strip().splitlines()
                out += [f"{log.name}: {line}" for line in text[-lines:]]
            return out

    # -- the end ---------------------------------------------------------------------------------------
    def finish(self, run_dir: Optional[Path]) -> None:
        """Stop every host's workers, then bring journals and logs home and record the hosts."""

        grace = self.o.grace if run_dir is not None else min(self.o.grace, 5.0)  # no run: nothing to finish

        def stop(host: ssh.Remote) -> dict:
            answer = host.run("stop", {"workdir": self.workdir(host), "grace": grace, "term_grace": 30},
                              timeout=grace + 90)
            return _json_line(answer.stdout) if answer.returncode == 0 else {"error": answer.why()}

        target = run_dir if run_dir is not None and run_dir.is_dir() else \
            Path(tempfile.mkdtemp(prefix=f"loadgen-launch-{self.launch_id}-"))
        run_path = self._master_run_path()
        say(f"stopping the workers on {len(self.hosts)} hosts (up to {grace:.0f} s for them to end by themselves)")
        stops = ssh.each(self.hosts, stop)
        fetched = ssh.each(self.hosts, lambda h: collect.fetch(h, self.workdir(h), run_path, target))
        record = {"launch_id": self.launch_id, "source": self.source,
                  "master": {"address": self.master_host, "port": self.port, "bind": self.o.master_bind_host},
                  "remote_dir": self.remote_dir, "hosts": []}
        for host, plan, stopped, copied in zip(self.hosts, self.plans, stops, fetched):
            f, started = host.facts, self.started.get(host.destination, {})
            record["hosts"].append({
                "host": host.destination, "hostname": f.get("hostname"), "cores": f.get("cores"),
                "memory_bytes": f.get("memory_bytes"), "python_version": (f.get("venv") or {}).get("python_version"),
                "source": f.get("source"), "installed": self.installed.get(host.destination),
                "workdir": self.workdir(host), "workers": plan.workers, "worker_pids": started.get("pids", []),
                "limits": {"nofile_before": started.get("nofile_before", f.get("nofile")),
                           "nofile": started.get("nofile"),
                           "port_range_before": started.get("port_range_before", f.get("port_range")),
                           "port_range": started.get("port_range"), "port_range_error": started.get("port_range_error"),
                           "somaxconn": f.get("somaxconn")},
                "worker_ids": collect.worker_ids(copied.get("journals", [])),
                "journals": copied.get("journals", []), "logs": copied.get("logs", []),
                "stop": stopped, "collect_error": copied.get("error")})
            self._report(host, stopped, copied, target, run_path)
        collect.write_hosts_file(target, record)
        n = sum(len(h["worker_ids"]) for h in record["hosts"])
        if run_dir is not None:
            say(f"journals of {n} workers and their logs are in {target} (journal/, logs/, hosts.json)")
        else:
            say(f"no run started; the workers' logs are in {target / collect.LOGS}")

    def _master_run_path(self) -> Optional[str]:
        master = self.signals.master
        return master.run_path if master is not None else None

    def _report(self, host: ssh.Remote, stopped: dict, copied: dict, target: Path, run_path: Optional[str]) -> None:
        where = f"{self.workdir(host)} (and the run directory {run_path})" if run_path else self.workdir(host)
        if "error" in stopped:
            say(f"WARNING: host {host.destination}: could not be reached to stop its workers ({stopped['error']}); "
                f"they may still run. Their journals stay in {where} there: copy them into {target}/journal/ and "
                f"run loadgen reap {target}")
        elif stopped.get("killed") or stopped.get("left"):
            say(f"WARNING: host {host.destination}: workers {', '.join(stopped.get('killed') or stopped['left'])} "
                f"had to be killed; run loadgen reap {target} for what they held")
        elif stopped.get("terminated"):
            say(f"host {host.destination}: workers {', '.join(stopped['terminated'])} ended after SIGTERM")
        if copied.get("error"):
            say(f"WARNING: host {host.destination}: its journals and logs could not be copied ({copied['error']}); "
                f"they stay in {where} there")


def _json_line(data: bytes) -> dict:
    import json

    lines = data.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
