"""A tiny pretend shell: what a sandbox answers to a command.

Nothing is executed. The emulator only has to give plausible answers to the
commands a load generator sends (`node -v`, `echo`, `exit N`, `sleep N`), with
`;`, `&&` and `||` between them, so that SDKs see real output, exit codes and
durations. Anything else is "command not found", exit 127, like bash.

The identity/reuse probe (``loadgen.engine.reuse_probe``) reads and writes a
sandbox's own files, so a command may also use `cat`, `readlink`, `sh -c` /
`bash -c`, and the redirections `> FILE`, `>> FILE` and `2>/dev/null`. Those
act on a ``Container``: the inside of one sandbox, with its identity
(namespace ids, cgroup, boot id, pid 1, under ``/proc``) and the files written
into it. A container is normally one sandbox's alone; the emulator's
``fault_reuse`` hands one to a later sandbox too, markers included, as a
provider that recycles a used container would.
"""

from __future__ import annotations

import random
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple


@dataclass
class CommandResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_s: float


class Container:
    """One sandbox's inside: a seeded identity and the files written into it.

    The identity is drawn from ``seed`` (so a sandbox's answers are
    reproducible): mount, pid and uts namespace ids in the range Linux gives
    new namespaces, a cgroup of its own, a boot id, and pid 1 (``init``) with
    its start time. Files are text, kept per path; ``/proc`` is read-only.
    """

    __slots__ = ("name", "links", "proc_files", "files")

    def __init__(self, name: str, seed: str):
        rng = random.Random(seed)
        self.name = name
        # Linux numbers new namespaces from 0xF0000000 upwards (the initial ones sit just below).
        self.links = {f"/proc/self/ns/{ns}": f"{ns}:[{4026532000 + rng.randrange(1, 1 << 24)}]"
                      for ns in ("mnt", "pid", "uts", "net", "ipc")}
        boot_id = "%08x-%04x-4%03x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                  0x8000 | rng.getrandbits(14), rng.getrandbits(48))
        start_ticks = rng.randrange(100, 10_000_000)
        fields = ["1", "(init)", "S", "0", "1", "1", "0", "-1", "4194560", "1200", "0", "3", "0", "2", "1",
                  "0", "0", "20", "0", "1", "0", str(start_ticks)] + ["0"] * 30
        self.proc_files = {
            "/proc/self/cgroup": f"0::/sandbox/{name}\n",
            "/proc/sys/kernel/random/boot_id": boot_id + "\n",
            "/proc/1/stat": " ".join(fields) + "\n",
            "/proc/1/comm": "init\n",
        }
        self.files: Dict[str, str] = {}

    def read(self, path: str) -> Optional[str]:
        if path.startswith("/proc/"):
            return self.proc_files.get(path)
        return self.files.get(path)

    def write(self, path: str, text: str, append: bool) -> Optional[str]:
        """Write a file; returns an error message, or None."""
        if path.startswith("/proc/") or path.endswith("/"):
            return f"{path}: Permission denied" if path.startswith("/proc/") else f"{path}: Is a directory"
        self.files[path] = (self.files.get(path, "") if append else "") + text
        return None


ContainerOf = Callable[[], Container]

_FAST_PATH = {}  # command text -> CommandResult, for the few hot commands that touch no container


class _Session:
    """One command line's run: the container it may touch, and whether it did."""

    __slots__ = ("node_version", "container_of", "touched", "duration")

    def __init__(self, node_version: str, container_of: Optional[ContainerOf]):
        self.node_version = node_version
        self.container_of = container_of
        self.touched = False
        self.duration = 0.0

    def container(self) -> Optional[Container]:
        self.touched = True
        return self.container_of() if self.container_of is not None else None


def run(command: str, node_version: str = "v20.18.1", container: Optional[ContainerOf] = None) -> CommandResult:
    """Interpret `command` as bash would, without running anything.

    ``container`` gives the sandbox's ``Container`` when a command reads or
    writes files (called at most when needed); without one, the sandbox has
    no files at all."""
    key = (command, node_version)
    cached = _FAST_PATH.get(key)
    if cached is not None:
        return cached
    session = _Session(node_version, container)
    out, err = [], []
    code = _run(command, session, out, err)
    result = CommandResult("".join(out).encode(), "".join(err).encode(), code, session.duration)
    if result.duration_s == 0 and not session.touched and len(_FAST_PATH) < 256:
        _FAST_PATH[key] = result
    return result


def _split(command: str) -> List[Tuple[str, List[str]]]:
    """Split into (operator-before, words) pairs; operator is '', ';', '&&' or '||'."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    parts: List[Tuple[str, List[str]]] = []
    op, words = "", []
    for token in lexer:
        if token in (";", "&&", "||", "\n"):
            parts.append((op, words))
            op, words = token, []
        else:
            words.append(token)
    parts.append((op, words))
    return [(o, w) for o, w in parts if w]


_REDIRECT = re.compile(r"^([12]?)(>>?)(.*)$")


def _redirections(words: List[str]) -> Tuple[List[str], list]:
    """Words without their redirections, and the redirections as (fd, append, target)."""
    plain, redirects = [], []
    i = 0
    while i < len(words):
        match = _REDIRECT.match(words[i])
        if match is None:
            plain.append(words[i])
            i += 1
            continue
        fd, op, target = match.groups()
        if not target and i + 1 < len(words):
            i += 1
            target = words[i]
        redirects.append((int(fd or 1), op == ">>", target))
        i += 1
    return plain, redirects


def _run(command: str, session: _Session, out: list, err: list) -> int:
    try:
        parts = _split(command)
    except ValueError as e:  # unbalanced quotes
        err.append(f"bash: -c: line 1: syntax error: {e}\n")
        return 2
    code = 0
    for op, words in parts:
        if (op == "&&" and code != 0) or (op == "||" and code == 0):
            continue
        words, redirects = _redirections(words)
        if not words:
            continue
        name, args = words[0], words[1:]
        if name == "exit":
            try:
                code = int(args[0]) % 256 if args else code
            except ValueError:
                err.append(f"bash: line 1: exit: {args[0]}: numeric argument required\n")
                code = 2
            break
        if not redirects:
            code = _builtin(name, args, session, out, err)
        else:
            own_out, own_err = [], []
            code = _builtin(name, args, session, own_out, own_err)
            code = _redirect(redirects, session, own_out, own_err, out, err) or code
        if name == "sleep" and code == 0:
            session.duration += _seconds(args)
    return code


def _redirect(redirects: list, session: _Session, own_out: list, own_err: list, out: list, err: list) -> int:
    """Send one command's output where its redirections say; returns 1 if a file could not be written."""
    streams = {1: own_out, 2: own_err}
    targets = {1: out, 2: err}
    written = {}
    for fd, append, target in redirects:
        if target == "/dev/null":
            targets[fd] = None
        else:
            targets[fd] = None
            written.setdefault(target, []).append((fd, append))
    for target, uses in written.items():
        container = session.container()
        text = "".join("".join(streams[fd]) for fd, _ in uses)
        problem = f"{target}: No such file or directory" if container is None else \
            container.write(target, text, uses[0][1])
        if problem:
            err.append(f"bash: line 1: {problem}\n")
            return 1
    for fd in (1, 2):
        if targets[fd] is not None:
            targets[fd].extend(streams[fd])
    return 0


def _seconds(args: List[str]) -> float:
    total = 0.0
    for a in args:
        unit = 1.0
        if a and a[-1] in "smhd":
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[a[-1]]
            a = a[:-1]
        total += float(a) * unit
    return total


def _builtin(name: str, args: List[str], session: _Session, out: list, err: list) -> int:
    if name == "node" and args and args[0] in ("-v", "--version"):
        out.append(session.node_version + "\n")
        return 0
    if name == "echo":
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        out.append(" ".join(args) + ("\n" if newline else ""))
        return 0
    if name in ("true", ":"):
        return 0
    if name == "false":
        return 1
    if name == "sleep":
        try:
            if not args or _seconds(args) < 0:
                raise ValueError
        except ValueError:
            err.append(f"sleep: invalid time interval {' '.join(args)!r}\n")
            return 1
        return 0
    if name == "pwd":
        out.append("/home/user\n")
        return 0
    if name == "whoami":
        out.append("user\n")
        return 0
    if name == "uname":
        out.append("Linux\n")
        return 0
    if name.rsplit("/", 1)[-1] in ("sh", "bash") and len(args) >= 2 and args[0] in ("-c", "-lc"):
        return _run(args[1], session, out, err)
    if name == "cat":
        return _files(args, session, out, err, "cat", lambda c, p: c.read(p))
    if name == "readlink":
        return _files(args, session, out, err, None, lambda c, p: c.links.get(p) + "\n" if p in c.links else None)
    err.append(f"bash: line 1: {name}: command not found\n")
    return 127


def _files(paths: List[str], session: _Session, out: list, err: list, complain: Optional[str], read) -> int:
    """`cat` / `readlink`: each path's text in order; exit 1 if any was missing (cat says so on stderr)."""
    container = session.container()
    code = 0
    for path in paths:
        text = read(container, path) if container is not None else None
        if text is None:
            code = 1
            if complain:
                err.append(f"{complain}: {path}: No such file or directory\n")
        else:
            out.append(text)
    return code
