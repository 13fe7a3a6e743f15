"""The master process: started here, its output shown and kept, its run directory found.

The master runs in a session of its own, so that a Ctrl-C at the terminal
reaches the launcher only; the launcher then passes the signal on
(`interrupt`), and the master interrupts the run as it does on one machine.
Its output goes to this terminal and to a log that ends up in the run
directory (`logs/master.log`). The line it prints when the run starts names
the run directory (`loadgen: run <id> (...), results in <path>`): that is how
the launcher learns where the journals and logs must go.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional

from loadgen import rundir

RUN_LINE = re.compile(r"^loadgen: run (\S+) \(.*\), results in (.+)$")
END_LINE = re.compile(r"^loadgen: run (\S+) .*; exit code (\d+); results in (.+)$")


class Master:
    def __init__(self, argv: List[str], env: dict):
        self.log = tempfile.NamedTemporaryFile(prefix="loadgen-master-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self.run_id: Optional[str] = None
        self.run_path: Optional[str] = None  # as the master printed it (relative to its cwd, or absolute)
        self.started = threading.Event()
        self.ended_at: Optional[float] = None  # when it printed the run's last line (the run is finalized)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            self.log.write(raw)
            self.log.flush()
            line = raw.decode(errors="replace").rstrip("\n")
            if self.run_path is None:
                m = RUN_LINE.match(line)
                if m:
                    self.run_id, self.run_path = m.group(1), m.group(2)
                    self.started.set()
            elif END_LINE.match(line):
                self.ended_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(10)
        return code

    def keep_log(self, run_dir: Optional[Path]) -> Optional[Path]:
        """Move the master's log into <run dir>/logs/master.log (or leave it where it is)."""
        self.log.close()
        if run_dir is None or not run_dir.is_dir():
            return Path(self.log.name)
        target = run_dir / rundir.LOGS_DIR / "master.log"
        target.parent.mkdir(exist_ok=True)
        shutil.move(self.log.name, target)
        return target
