"""Reaching a shard host: one SSH connection per step, the step's program on standard input.

`Remote.run("probe", params)` runs `loadgen/launch/on_host/probe.py` on the host
under its python3 and returns what it printed. The only command line the host
ever sees is the fixed bootstrap (`on_host.BOOTSTRAP`); parameters and secrets
travel inside the program, on SSH's standard input.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Iterable, List, Optional, Sequence, Set, TypeVar

from loadgen.launch.on_host import BOOTSTRAP, program

UNREACHABLE = 255  # ssh's own exit code: it could not connect or log in
_live: Set[subprocess.Popen] = set()
_live_lock = threading.Lock()
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Answer:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def reached(self) -> bool:
        return self.returncode != UNREACHABLE

    def why(self) -> str:
        """The last line ssh or the program said on stderr."""
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.returncode}"


@dataclass
class Remote:
    """One shard host: its ssh destination and how to reach it."""

    destination: str
    ssh_config: Optional[str] = None
    ssh_options: Sequence[str] = ()
    python: str = "python3"
    connect_timeout: int = 10
    facts: Dict = field(default_factory=dict)  # what the probe found

    @property
    def label(self) -> str:
        """The destination as a file-name-safe label (for logs/<label>.worker-N.log)."""
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.destination)

    def ssh_argv(self, remote_command: str) -> List[str]:
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        for option in self.ssh_options:
            argv += ["-o", option]
        return argv + ["--", self.destination, remote_command]

    def run(self, name: str, params: dict, data: Optional[Iterable[bytes]] = None, timeout: float = 120,
            stdout: Optional[BinaryIO] = None) -> Answer:
        """Run on_host/<name>.py there; `data` (chunks) follows the program on stdin; `stdout`
        receives the answer as a stream instead of memory."""
        command = f"{shlex.quote(self.python)} -c {shlex.quote(BOOTSTRAP)}"
        proc = subprocess.Popen(self.ssh_argv(command), stdin=subprocess.PIPE,
                                stdout=stdout if stdout is not None else subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        with _live_lock:
            _live.add(proc)
        err: List[bytes] = []
        out: List[bytes] = []
        readers = [threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]
        if stdout is None:
            readers.append(threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True))
        for reader in readers:
            reader.start()
        try:
            try:
                proc.stdin.write(program(name, params))
                for chunk in data or ():
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the host went away or the program ended early: its answer says why
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Answer(UNREACHABLE, b"", f"no answer from {self.destination} within {timeout:.0f} s")
        finally:
            for reader in readers:
                reader.join(10)
            with _live_lock:
                _live.discard(proc)
        return Answer(proc.returncode, b"".join(out), b"".join(err).decode(errors="replace"))


def kill_all() -> None:
    """End every SSH connection still open (an interrupted preflight or install)."""
    with _live_lock:
        for proc in _live:
            if proc.poll() is None:
                proc.kill()


def each(items: Sequence[T], fn: Callable[[T], R]) -> List[R]:
    """fn over every item at once (one thread per host), results in order. Interrupted, it
    ends the SSH connections in flight before it waits for its threads."""
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(len(items), 64))
    try:
        return list(pool.map(fn, items))
    except BaseException:
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
