"""Drive Locust's web UI the way a person does: a real Chromium (Debian's) through playwright.

``WebLocust`` starts ``locust -f <locustfile>`` with its web UI on 127.0.0.1,
under ``strace`` so that every ``connect()`` the Locust process and its
children (the embedded emulator) make is recorded by the kernel's tracer:
the proof that no request left this machine is that list, not a mock.
Every endpoint variable of the e2b SDK points at a ``Trap``, a listener on
127.0.0.1 that counts who knocked: the real service's stand-in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Optional

from tests.locust_harness import LOCUST, LOCUSTFILES, base_env, free_port, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STRACE = shutil.which("strace")
ARTIFACTS_ENV = "LOADGEN_TEST_ARTIFACTS"

_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([0-9.]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"')
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: $LOADGEN_TEST_ARTIFACTS if set, else the test's own folder."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Trap:
    """A TCP listener on 127.0.0.1 that accepts and counts connections (and answers nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def inet_connects(trace: str) -> list[tuple[str, int]]:
    """(address, port) of every IPv4/IPv6 connect() in an strace log."""
    out = [(m.group(2), int(m.group(1))) for m in _INET.finditer(trace)]
    out += [(m.group(2), int(m.group(1))) for m in _INET6.finditer(trace)]
    return out


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


class WebLocust:
    """``locust -f locustfile`` with its web UI, traced; stopped (its whole session) on exit."""

    def __init__(self, tmp_path: Path, locustfile: str = "local.py", args=(), env: Optional[dict] = None,
                 trace: bool = True):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.run_dir = tmp_path / "runs"
        self.trace_path = tmp_path / "connect.strace"
        self.trap = Trap()
        trapped = {name: self.trap.url for name in ("E2B_API_URL", "E2B_SANDBOX_URL")}
        cmd = [LOCUST, "-f", str(LOCUSTFILES / locustfile), "--web-host", "127.0.0.1", "--web-port", str(self.port),
               "--run-dir", str(self.run_dir), *args]
        if trace and STRACE:
            # --seccomp-bpf: only connect() stops the tracee, so the run keeps its speed
            cmd = [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-o", str(self.trace_path), *cmd]
        self.log_path = tmp_path / "locust.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=base_env({**trapped, **(env or {})}), start_new_session=True)
        wait_for(self._ready, 60, what="the web UI to answer")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"locust exited early:\n{self.output()}")
        try:
            return get_json(self.base + "/loadgen/sandboxes")
        except OSError:
            return None

    def snapshot(self) -> dict:
        return get_json(self.base + "/loadgen/sandboxes")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def connects(self) -> list[tuple[str, int]]:
        return inet_connects(self.trace_path.read_text(errors="replace")) if self.trace_path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        self.trap.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def open_browser(playwright):
    """Debian's Chromium, headless, through playwright (no browser download)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def fill_form(page, users: int, fields: Optional[dict] = None) -> None:
    """Fill the start form: users and ramp-up, then any custom parameters by field name (camelCase)."""
    page.fill('input[name="userCount"]', str(users))
    page.fill('input[name="spawnRate"]', str(users))
    if fields:
        page.get_by_text("Custom parameters").click()
        for name, value in fields.items():
            page.fill(f'input[name="{name}"]', value)


NON_WHITE_PIXELS_JS = """async (img) => {
  if (!img.complete) await new Promise(r => { img.onload = r; img.onerror = r; });
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  if (!c.width || !c.height) return 0;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
  return n;
}"""
