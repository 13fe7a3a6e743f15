"""Test hosts: a cluster of shard hosts inside this machine, reached over real SSH.

Each host is a network namespace on a bridge, with

- its own address (10.77.SLOT.10+i on bridge `lgbrSLOT`; this machine's root
  namespace is 10.77.SLOT.1 on the same bridge, so a master or an emulator
  listening there is reachable from every host);
- its own sysctls (a test can give one a small `net.ipv4.ip_local_port_range`
  or `net.core.somaxconn`) and descriptor limits;
- its own mount and UTS namespaces: its own hostname (the name the ssh config
  knows it by), its own /tmp, /run, /etc/ssh and home directory (/root), and,
  with ``checkout=False``, no loadgen checkout or virtualenv at all;
- Debian's sshd, accepting a key generated for the cluster.

Nothing outside a temporary folder is written: the keys, sshd_config and
known_hosts live under ``/tmp/loadgen-testhosts/slot-SLOT/``, and each host's
/tmp, /root and /run are tmpfs inside its own mount namespace (this machine
reads them as ``host.local_path(path)``, through /proc/<sshd>/root), freed
when the host's last process ends. The machine's /etc/ssh and /root/.ssh are
never touched: a host's /etc/ssh is a bind mount, and its /root a tmpfs,
inside its own mount namespace only.

Several clusters can exist at once (engineers sharing a machine): each takes
a free slot under a lock. A cluster whose owner died (a killed test run) is
torn down by the next `up`, and `down` removes everything (processes, the
namespaces, veths, the bridge, the folder) even half-made.

By hand (or from a benchmark script):

    python -m tests.testhosts up -k 2 [--no-checkout] [--sysctl lg0h1:net.core.somaxconn=64] [--nofile lg0h0:1024:4096]
    ssh -F /tmp/loadgen-testhosts/slot-0/ssh_config lg0h0 hostname
    bin/launch-shards.sh --ssh-config /tmp/loadgen-testhosts/slot-0/ssh_config --hosts /tmp/loadgen-testhosts/slot-0/hosts ...
    python -m tests.testhosts status
    python -m tests.testhosts down 0        # or: down --all

In Python:

    with Cluster.up(2, checkout=False, sysctls={1: {"net.core.somaxconn": "64"}}) as cluster:
        cluster.ssh(cluster.hosts[0], "hostname")

and in pytest, a module-scoped fixture made by `fixture(...)`, which skips
with the reason when this machine cannot make network namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(tempfile.gettempdir()) / "loadgen-testhosts"
SLOTS = 32
SSHD = "/usr/sbin/sshd"
ABSENT_OCTET = 250  # an address on the bridge that nothing answers: a host that is down


def subnet_prefix(slot: int) -> str:
    return f"10.77.{slot}"


def bridge_name(slot: int) -> str:
    return f"lgbr{slot}"


def host_name(slot: int, index: int) -> str:
    return f"lg{slot}h{index}"


def absent_name(slot: int) -> str:
    return f"lg{slot}absent"


def _veth(slot: int, index: int) -> str:
    return f"lg{slot}v{index}"


def _run(argv: Sequence[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return out


# -- who owns a slot -------------------------------------------------------------------


def _start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(owner: Mapping) -> bool:
    if owner.get("manual"):
        return True  # made by hand: only `down` removes it
    pid = owner.get("pid")
    return bool(pid) and _start_time(int(pid)) == owner.get("start")


def _read_owner(slot_dir: Path) -> Optional[dict]:
    try:
        return json.loads((slot_dir / "owner.json").read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    ROOT.mkdir(mode=0o755, exist_ok=True)
    with open(ROOT / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- the pieces of a host ----------------------------------------------------------------------


@dataclass
class Host:
    """One test host. `dir` holds what this machine keeps for it (its boot script, sshd's
    keys and log); the host's own files (its /tmp, /root, /run) are tmpfs inside its mount
    namespace, gone the moment its last process is."""

    name: str
    address: str
    netns: str
    dir: Path
    pid: int = 0  # its sshd (the first process of its mount and UTS namespaces)
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    shared: List[str] = field(default_factory=list)  # this machine's folders seen inside its private ones

    PRIVATE = ("/tmp", "/run", "/root")  # a tmpfs of its own each

    def own_files(self) -> Iterator[Path]:
        """Every file in the host's own folders (not in folders shared from this machine)."""
        shared = {str(self.local_path(p)) for p in self.shared}
        for private in self.PRIVATE:
            for folder, dirs, files in os.walk(self.local_path(private)):
                dirs[:] = [d for d in dirs if os.path.join(folder, d) not in shared]
                for name in files:
                    path = Path(folder) / name
                    if path.is_file() and not path.is_symlink():
                        yield path

    def local_path(self, path: str) -> Path:
        """A path on the host, as this machine reaches it (through its sshd's root)."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")


BOOT = r"""#!/bin/sh
# The first process of one test host, inside its network, mount and UTS namespaces.
set -eu
H={dir}
mount --make-rprivate /
mount --bind "$H/etc-ssh" /etc/ssh
{share_out}
mount -t tmpfs -o mode=0700 loadgen-home /root
mkdir -m 0700 /root/.ssh
cp "$H/authorized_keys" /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
{share_in}
mount -t tmpfs -o mode=0755 loadgen-run /run
mkdir -m 0755 /run/sshd
for p in {hide}; do if [ -d "$p" ]; then mount -t tmpfs -o mode=0755,size=1m loadgen-hidden "$p"; fi; done
mount -t tmpfs -o mode=1777 loadgen-tmp /tmp   # last: $H itself is under /tmp
hostname {name}
{sysctls}
prlimit --pid $$ --nofile={nofile_soft}:{nofile_hard}
exec {sshd} -D -e -f /etc/ssh/sshd_config
"""

SSHD_CONFIG = """# sshd of one loadgen test host (its own /etc/ssh, inside its own mount namespace)
ListenAddress 0.0.0.0
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxStartups 64:30:128
MaxSessions 64
LogLevel INFO
"""


@dataclass
class Cluster:
    """K test hosts on one bridge, and everything needed to reach them."""

    slot: int
    dir: Path
    hosts: List[Host] = field(default_factory=list)

    @property
    def root_address(self) -> str:
        """This machine's address on the bridge: where the master and the emulator listen."""
        return f"{subnet_prefix(self.slot)}.1"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def hosts_file(self) -> Path:
        """One host name per line, as `bin/launch-shards.sh --hosts` reads."""
        return self.dir / "hosts"

    @property
    def absent_host(self) -> str:
        """A name in the ssh config whose address nothing answers (a host that is down)."""
        return absent_name(self.slot)

    # -- bring up -----------------------------------------------------------------------
    @classmethod
    def up(cls, count: int, *, checkout: Union[bool, Sequence[bool]] = True,
           sysctls: Optional[Mapping[int, Mapping[str, str]]] = None,
           nofile: Optional[Mapping[int, Tuple[int, int]]] = None, hide: Optional[Sequence[str]] = None,
           manual: bool = False) -> "Cluster":
        """Make `count` hosts. `checkout=False` (or a list of one flag per host) hides this
        checkout and its virtualenv (or the folders `hide` names); `sysctls` and `nofile`
        (soft, hard) are per host index."""
        problem = unavailable_reason()
        if problem:
            raise RuntimeError(problem)
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} is missing: install Debian's openssh-server (.ci/run does)")
        flags = [checkout] * count if isinstance(checkout, bool) else list(checkout)
        if len(flags) != count:
            raise ValueError(f"checkout names {len(flags)} hosts, not {count}")
        layouts = [([], _interpreter_paths()) if has else (list(hide) if hide is not None else _checkout_paths(), [])
                   for has in flags]
        with _lock():
            reap_stale()
            slot = next((s for s in range(SLOTS) if not (ROOT / f"slot-{s}").exists()), None)
            if slot is None:
                raise RuntimeError(f"all {SLOTS} test-host slots are in use (python -m tests.testhosts status)")
            slot_dir = ROOT / f"slot-{slot}"
            slot_dir.mkdir(mode=0o755)
            owner = {"manual": True} if manual else {"pid": os.getpid(), "start": _start_time(os.getpid())}
            (slot_dir / "owner.json").write_text(json.dumps(owner))
        cluster = cls(slot, slot_dir)
        try:
            cluster._make(count, sysctls or {}, nofile or {}, layouts)
        except BaseException:
            cluster.down()
            raise
        return cluster

    def _make(self, count: int, sysctls, nofile, layouts: List[Tuple[List[str], List[str]]]) -> None:
        slot, prefix, bridge = self.slot, subnet_prefix(self.slot), bridge_name(self.slot)
        _remove_kernel_objects(slot)  # names of this slot left over by a run that could not clean up
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{prefix}.1/24", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        key = self.dir / "client_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"loadgen-testhosts-{slot}", "-f", str(key)])
        public_key = (self.dir / "client_key.pub").read_text()
        known_hosts, config = [], []
        for i in range(count):
            host = Host(host_name(slot, i), f"{prefix}.{10 + i}", host_name(slot, i), self.dir / host_name(slot, i))
            self.hosts.append(host)
            self._make_host(host, i, public_key, sysctls.get(i, {}), nofile.get(i), *layouts[i])
            host_key = (host.dir / "etc-ssh" / "ssh_host_ed25519_key.pub").read_text().split()
            known_hosts.append(f"{host.name} {host_key[0]} {host_key[1]}")
            config += [f"Host {host.name}", f"  HostName {host.address}", f"  HostKeyAlias {host.name}", ""]
        config += [f"Host {self.absent_host}", f"  HostName {prefix}.{ABSENT_OCTET}",
                   f"  HostKeyAlias {self.absent_host}", ""]
        config += ["Host *", "  User root", "  Port 22", f"  IdentityFile {key}", "  IdentitiesOnly yes",
                   f"  UserKnownHostsFile {self.dir / 'known_hosts'}", "  GlobalKnownHostsFile /dev/null",
                   "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 5", "  LogLevel ERROR",
                   "  ServerAliveInterval 5", "  ServerAliveCountMax 6", ""]
        (self.dir / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        self.ssh_config.write_text("\n".join(config))
        self.hosts_file.write_text("".join(h.name + "\n" for h in self.hosts))
        for host in self.hosts:
            self._wait_for_sshd(host)

    def _make_host(self, host: Host, index: int, public_key: str, sysctls: Mapping[str, str],
                   nofile: Optional[Tuple[int, int]], hide: List[str], share: List[str]) -> None:
        veth, peer = _veth(self.slot, index), f"lg{self.slot}p{index}"
        _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", host.netns])
        _run(["ip", "link", "set", veth, "master", bridge_name(self.slot), "up"])
        for argv in (["link", "set", peer, "name", "eth0"], ["addr", "add", f"{host.address}/24", "dev", "eth0"],
                     ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
            _run(["ip", "-n", host.netns, *argv])
        etc = host.dir / "etc-ssh"
        etc.mkdir(parents=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(etc / "ssh_host_ed25519_key")])
        (etc / "sshd_config").write_text(SSHD_CONFIG)
        (host.dir / "authorized_keys").write_text(public_key)
        soft, hard = nofile or _nofile_here()
        lines = [f"sysctl -q -w {shlex.quote(k)}={shlex.quote(str(v))}" for k, v in sysctls.items()]
        # A real path under a private folder (the interpreter under /root, with pyenv) stays
        # visible: bound aside before the tmpfs covers it, moved back on top of it after.
        share_out, share_in = [], []
        host.shared = list(share)
        for n, path in enumerate(share):
            aside, there = shlex.quote(str(host.dir / f"share{n}")), shlex.quote(path)
            share_out.append(f"mkdir -p {aside} && mount --bind {there} {aside}")
            share_in.append(f"mkdir -p {there} && mount --move {aside} {there}")
        boot = BOOT.format(dir=shlex.quote(str(host.dir)), hide=" ".join(shlex.quote(p) for p in hide) or '""',
                           share_out="\n".join(share_out), share_in="\n".join(share_in), name=host.name,
                           sysctls="\n".join(lines), nofile_soft=soft, nofile_hard=hard, sshd=SSHD)
        (host.dir / "boot.sh").write_text(boot)
        log = open(host.dir / "sshd.log", "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
                                 "--propagation", "private", "sh", str(host.dir / "boot.sh")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        host.proc = proc
        host.pid = proc.pid  # ip netns exec, unshare and sh each exec the next: this is sshd's pid
        (host.dir / "pid").write_text(str(proc.pid))

    def _wait_for_sshd(self, host: Host, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = self.ssh(host, "true", timeout=10, check=False)
            if out.returncode == 0:
                return
            dead = host.proc is not None and host.proc.poll() is not None
            if dead or time.monotonic() > deadline:
                log = (host.dir / "sshd.log").read_text(errors="replace")[-2000:]
                if dead:
                    raise RuntimeError(f"sshd on {host.name} exited ({host.proc.returncode}):\n{log}")
                raise RuntimeError(f"sshd on {host.name} did not answer within {timeout} s: {out.stderr.strip()}\n{log}")
            time.sleep(0.2)

    # -- use ----------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def ssh_argv(self, host: Host | str, command: str) -> List[str]:
        name = host.name if isinstance(host, Host) else host
        return ["ssh", "-F", str(self.ssh_config), name, command]

    def ssh(self, host: Host | str, command: str, input: Optional[str] = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on a host over SSH, as any client would."""
        out = subprocess.run(self.ssh_argv(host, command), input=input, capture_output=True, text=True,
                             timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        if check and out.returncode != 0:
            name = host.name if isinstance(host, Host) else host
            raise RuntimeError(f"ssh {name} {command!r} failed ({out.returncode}): {out.stderr.strip()}")
        return out

    def enter(self, host: Host, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """Run a command inside a host's namespaces directly, without SSH (for inspection)."""
        return _run(["nsenter", "-t", str(host.pid), "-n", "-m", "-u", *argv], **kw)

    def processes(self, host: Host) -> List[Tuple[int, str]]:
        """(pid, command line) of every process on a host, its sshd listener included."""
        out = []
        for pid in _netns_pids(host.netns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out.append((pid, cmdline.strip()))
        return out

    def set_link(self, host: Host, up: bool) -> None:
        """Cut (or restore) a host's link to the bridge, as a network partition would."""
        _run(["ip", "link", "set", _veth(self.slot, self.hosts.index(host)), "up" if up else "down"])

    def write_hosts_file(self, path: Path, names: Sequence[str]) -> Path:
        path.write_text("".join(n + "\n" for n in names))
        return path

    # -- tear down -----------------------------------------------------------------------------
    def down(self) -> None:
        with _lock():
            teardown(self.slot)
        for host in self.hosts:  # reap our own children (their namespaces are gone already)
            if host.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.proc.wait(5)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def describe(self) -> dict:
        return {"slot": self.slot, "dir": str(self.dir), "root_address": self.root_address,
                "ssh_config": str(self.ssh_config), "hosts_file": str(self.hosts_file),
                "absent_host": self.absent_host,
                "hosts": [{"name": h.name, "address": h.address, "dir": str(h.dir), "sshd_pid": h.pid}
                          for h in self.hosts]}


def _checkout_paths() -> List[str]:
    """This checkout and the virtualenv running us: what a host that lacks loadgen must not see."""
    paths = [str(REPO)]
    prefix = Path(sys.prefix).resolve()
    if REPO not in prefix.parents and prefix != REPO and prefix != Path(sys.base_prefix).resolve():
        paths.append(str(prefix))
    return paths


def _interpreter_paths() -> List[str]:
    """The interpreter this checkout's virtualenv runs on, if it lives in a folder each host
    has a private copy of (pyenv under /root): a host that has the checkout needs it."""
    base = str(Path(sys.base_prefix).resolve())
    return [base] if any(base.startswith(p + "/") for p in Host.PRIVATE) else []


def _nofile_here() -> Tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- removal (idempotent; every step tolerates a missing piece) -----------------------------------


def _netns_pids(netns: str) -> List[int]:
    out = _run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def _kill_netns(netns: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {netns} survived SIGKILL")
        time.sleep(0.05)


def _remove_kernel_objects(slot: int) -> None:
    pattern = re.compile(rf"^lg{slot}h\d+$")
    namespaces = [line.split()[0] for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines()
                  if line.strip()]
    for netns in namespaces:
        if pattern.match(netns):
            _kill_netns(netns)
            _run(["ip", "netns", "del", netns], check=False)
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    for name in re.findall(rf"^\d+: (lg{slot}[vp]\d+|lgbr{slot})[@:]", links, re.M):
        _run(["ip", "link", "del", name], check=False)


def teardown(slot: int) -> None:
    """Remove a slot's cluster entirely: processes, namespaces, veths, bridge, folder."""
    _remove_kernel_objects(slot)
    slot_dir = ROOT / f"slot-{slot}"
    if slot_dir.exists():
        shutil.rmtree(slot_dir, ignore_errors=True)
    if slot_dir.exists():
        raise RuntimeError(f"could not remove {slot_dir}")


def reap_stale() -> List[int]:
    """Tear down every cluster whose owner is gone, and kernel objects no slot owns. (Lock held.)"""
    reaped = []
    owned = set()
    for slot in range(SLOTS):
        slot_dir = ROOT / f"slot-{slot}"
        if slot_dir.exists():
            owner = _read_owner(slot_dir)
            if owner is not None and _owner_alive(owner):
                owned.add(slot)
                continue
            teardown(slot)
            reaped.append(slot)
    namespaces = _run(["ip", "netns", "list"], check=False).stdout
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    leftovers = {int(s) for s in re.findall(r"^lg(\d+)h\d+\b", namespaces, re.M)}
    leftovers |= {int(s) for s in re.findall(r"^\d+: (?:lgbr|lg)(\d+)(?:[vp]\d+)?[@:]", links, re.M)}
    for slot in sorted(leftovers - owned):
        if slot < SLOTS:
            teardown(slot)
            reaped.append(slot)
    return reaped


def unavailable_reason() -> Optional[str]:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "test hosts need root (network and mount namespaces)"
    for tool in ("ip", "unshare", "nsenter", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"test hosts need `{tool}` (iproute2, util-linux, openssh-client)"
    probe = f"lgprobe{os.getpid()}"
    out = _run(["ip", "netns", "add", probe], check=False)
    if out.returncode != 0:
        return f"this machine cannot make network namespaces: {out.stderr.strip()}"
    try:
        out = _run(["ip", "netns", "exec", probe, "unshare", "--mount", "--uts", "true"], check=False)
        if out.returncode != 0:
            return f"this machine cannot make mount namespaces: {out.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


# -- pytest ---------------------------------------------------------------------------------------


def fixture(count: int = 2, scope: str = "module", **options):
    """A pytest fixture yielding a `Cluster` of `count` hosts (options as for `Cluster.up`),
    torn down afterwards whatever happened; skipped where namespaces cannot be made."""
    import pytest

    @pytest.fixture(scope=scope)
    def _cluster():
        reason = unavailable_reason()
        if reason:
            pytest.skip(reason)
        cluster = Cluster.up(count, **options)
        try:
            yield cluster
        finally:
            cluster.down()

    return _cluster


# -- command line ---------------------------------------------------------------------------------


def _per_host(values: Sequence[str], what: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not rest:
            raise SystemExit(f"testhosts: {what} {value!r}: expected HOST:...")
        out.setdefault(name, []).append(rest)
    return out


def _index_of(name: str) -> int:
    m = re.fullmatch(r"(?:lg\d+)?h(\d+)", name)
    if not m:
        raise SystemExit(f"testhosts: {name!r} is not a host name (h0, h1, ... or lgSLOTh0, ...)")
    return int(m.group(1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testhosts", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="make a cluster (it stays until `down`)")
    up.add_argument("-k", "--count", type=int, default=2, help="number of hosts (default 2)")
    up.add_argument("--no-checkout", action="store_true", help="hosts lack this checkout and its virtualenv")
    up.add_argument("--sysctl", action="append", default=[], metavar="HOST:KEY=VALUE",
                    help="a sysctl of one host, e.g. h1:net.ipv4.ip_local_port_range='40000 40999' (repeatable)")
    up.add_argument("--nofile", action="append", default=[], metavar="HOST:SOFT:HARD",
                    help="the descriptor limits a host's sessions start with (repeatable)")
    down = sub.add_parser("down", help="remove a cluster")
    down.add_argument("slot", nargs="?", type=int)
    down.add_argument("--all", action="store_true", help="remove every cluster, also ones still in use")
    sub.add_parser("status", help="list clusters")
    args = parser.parse_args(argv)

    if args.command == "up":
        sysctls: Dict[int, Dict[str, str]] = {}
        for name, items in _per_host(args.sysctl, "--sysctl").items():
            for item in items:
                key, sep, value = item.partition("=")
                if not sep:
                    raise SystemExit(f"testhosts: --sysctl {name}:{item}: expected KEY=VALUE")
                sysctls.setdefault(_index_of(name), {})[key] = value
        nofile = {}
        for name, items in _per_host(args.nofile, "--nofile").items():
            soft, _, hard = items[-1].partition(":")
            nofile[_index_of(name)] = (int(soft), int(hard or soft))
        try:
            cluster = Cluster.up(args.count, checkout=not args.no_checkout, sysctls=sysctls, nofile=nofile, manual=True)
        except RuntimeError as e:
            print(f"testhosts: {e}", file=sys.stderr)
            return 1
        print(json.dumps(cluster.describe(), indent=2))
        return 0
    if args.command == "down":
        with _lock():
            slots = list(range(SLOTS)) if args.all else [args.slot] if args.slot is not None else []
            if not slots:
                reaped = reap_stale()
                print(f"testhosts: removed stale clusters {reaped}" if reaped else "testhosts: nothing stale; "
                      "name a slot or --all")
                return 0
            for slot in slots:
                teardown(slot)
        return 0
    for slot in range(SLOTS):
        slot_dir = ROOT / f"slot-{slot}"
        if slot_dir.exists():
            owner = _read_owner(slot_dir) or {}
            state = "manual" if owner.get("manual") else ("in use" if _owner_alive(owner) else "stale")
            names = sorted(p.name for p in slot_dir.iterdir() if p.is_dir())
            print(f"slot {slot}: {state}, hosts {' '.join(names) or '-'}, ssh config {slot_dir / 'ssh_config'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
