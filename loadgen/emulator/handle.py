"""Running the emulator from Python: as a subprocess or on a thread.

The locustfiles and the tests need an emulator they can start, query and
stop. A subprocess (`start_emulator`) keeps the emulator's CPU off the
generator's core and is what benchmarks should use; `EmulatorThread` is for
quick in-process use. Both answer the same accessors, which go through the
ground-truth HTTP endpoints so that they behave the same either way (and stay
cooperative under gevent, whose monkey-patching makes the socket calls yield).

A subprocess is tied to its parent with PR_SET_PDEATHSIG on Linux, so a test
run that crashes never leaves servers behind.

With `tls=True` the emulator serves HTTPS; `ca_file` is the PEM file of the CA
that signed its certificate (point SSL_CERT_FILE, REQUESTS_CA_BUNDLE or
NODE_EXTRA_CA_CERTS there). It lives as long as the handle.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from loadgen.emulator import settings as S

PR_SET_PDEATHSIG = 1
DEFAULT_HOST = "127.0.0.1"


class _Accessors:
    """Ground-truth accessors shared by the process and the thread handles."""

    url: str
    ca_file: Optional[str] = None  # the CA of the emulator's certificate, when it serves TLS
    _client_ssl: Optional[ssl.SSLContext] = None

    def _call(self, method: str, path: str, timeout: float = 30.0) -> bytes:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        context = None
        if self.ca_file is not None:
            if self._client_ssl is None:
                self._client_ssl = ssl.create_default_context(cafile=self.ca_file)
            context = self._client_ssl
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.read()

    def stats(self) -> Dict[str, Any]:
        return json.loads(self._call("GET", "/_emulator/stats"))

    def sandboxes(self) -> List[Dict[str, Any]]:
        body = self._call("GET", "/_emulator/sandboxes")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _cli_args(profile: Optional[str], port: int, config_path: Optional[str], overrides: Mapping[str, Any],
              host: str = DEFAULT_HOST) -> List[str]:
    args = ["--host", host, "--port", str(port)]
    if profile:
        args += ["--profile", profile]
    if config_path:
        args += ["--config", config_path]
    for name, value in overrides.items():
        setting = S.BY_NAME.get(name)
        if setting is None:
            raise ValueError(f"unknown emulator setting {name!r}; known: {', '.join(S.BY_NAME)}")
        if value is None:
            text = "none"
        elif isinstance(value, (dict, list, bool)):
            text = json.dumps(value)
        else:
            text = str(value)
        args += [setting.option, text]
    return args


def _pdeathsig_preexec():
    """A preexec_fn that asks Linux to SIGTERM the child when the parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class EmulatorProcess(_Accessors):
    """Handle of an emulator subprocess (see `start_emulator`)."""

    def __init__(self, proc: subprocess.Popen, url: str, config_path: Optional[str] = None,
                 ca_file: Optional[str] = None):
        self.proc = proc
        self.url = url
        self._config_path = config_path
        self.ca_file = ca_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._config_path:
            try:
                os.unlink(self._config_path)
            except OSError:
                pass
            self._config_path = None
        if self.ca_file is not None:
            shutil.rmtree(os.path.dirname(self.ca_file), ignore_errors=True)
        return proc.returncode


def start_emulator(profile: Optional[str] = "fast", port: int = 0,
                   config: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
                   *, ready_timeout: float = 30.0, faces: str = "e2b", host: str = DEFAULT_HOST,
                   tls: bool = False, wrapper: Sequence[str] = (), **overrides: Any) -> EmulatorProcess:
    """Start `python -m loadgen.emulator` and wait for its URL line.

    `host` is the address it listens on (and that its URL names): 127.0.0.1,
    or an address other machines reach it by (e.g. a test-host bridge's).

    `config` is a profile file path or a mapping of settings; `overrides` are
    single settings by name (e.g. `fault_create_5xx=0.05`,
    `create_latency={"kind": "constant", "ms": 50}`). Settings are validated
    here first, so a typo fails in the caller, not in the child. `tls` serves
    HTTPS (its certificate names `host` too); the handle's `ca_file` is then
    the CA to trust. `wrapper` is an argv the command runs under, one that
    execs it in place (e.g. ``["ip", "netns", "exec", NAME]``: an emulator in a
    network namespace of its own, with that namespace's listen-queue sysctls).
    """
    config_path = None
    mapping: Optional[Mapping[str, Any]] = None
    if isinstance(config, Mapping):
        mapping = config
        fd, config_path = tempfile.mkstemp(prefix="loadgen-emulator-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(config), f)
    elif config is not None:
        config_path = os.fspath(config)
        mapping = S.load_config_file(config_path)
    S.resolve(profile, mapping, overrides)  # validate before spawning
    cmd = [*wrapper, sys.executable, "-m", "loadgen.emulator", "--face", faces] + \
        _cli_args(profile, port, config_path, overrides, host)
    ca_file = None
    if tls:
        ca_file = os.path.join(tempfile.mkdtemp(prefix="loadgen-emulator-tls-"), "ca.pem")
        cmd += ["--tls", "--ca-file", ca_file]
    try:
        proc, url = _spawn(cmd, ready_timeout)
    except BaseException:
        if config_path and isinstance(config, Mapping):
            os.unlink(config_path)
        if ca_file is not None:
            shutil.rmtree(os.path.dirname(ca_file), ignore_errors=True)
        raise
    return EmulatorProcess(proc, url, config_path if isinstance(config, Mapping) else None, ca_file)


def _spawn(cmd: List[str], ready_timeout: float) -> tuple:
    """Start an emulator command; (process, its URL line) once it listens."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_child_env(),
                            preexec_fn=_pdeathsig_preexec(), close_fds=True)
    try:
        return proc, _read_url(proc, ready_timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def spawn_emulator_command(args: List[str], ready_timeout: float = 30.0) -> EmulatorProcess:
    """``loadgen emulate ARGS`` as a subprocess handle (what ``loadgen emulate --processes`` starts)."""
    proc, url = _spawn([sys.executable, "-m", "loadgen.emulator"] + list(args), ready_timeout)
    return EmulatorProcess(proc, url)


def _child_env() -> Dict[str, str]:
    """This process's environment, plus the directory holding `loadgen` on
    PYTHONPATH, so the child imports the same code whatever its cwd."""
    import loadgen

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(loadgen.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _read_url(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    poller = select.poll() if hasattr(select, "poll") else None  # select() fails for fds above 1023
    if poller is not None:
        poller.register(fd, select.POLLIN)
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"emulator did not print its URL within {timeout} s")
        if poller is not None:
            ready = poller.poll(min(left, 0.5) * 1000)
        else:
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"emulator exited before it was ready (exit code {proc.wait()})")
            buf += chunk
        elif proc.poll() is not None:
            raise RuntimeError(f"emulator exited before it was ready (exit code {proc.returncode})")
    line = buf.split(b"\n", 1)[0].decode().strip()
    if not line.startswith(("http://", "https://")):
        raise RuntimeError(f"emulator printed {line!r} instead of its URL")
    return line


def _original(module: str, name: str):
    """The unpatched stdlib object, when gevent has monkey-patched it."""
    try:
        from gevent import monkey

        if monkey.is_module_patched(module):
            return monkey.get_original(module, name)
    except ImportError:
        pass
    return getattr(__import__(module), name)


class EmulatorThread(_Accessors):
    """The emulator on a real OS thread with its own (uv)loop, in this process.

    Under gevent the thread is an original (unpatched) thread, so the
    emulator's loop runs beside the gevent hub rather than inside it.
    """

    def __init__(self, profile: Optional[str] = "fast", port: int = 0,
                 config: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
                 faces: str = "e2b", host: str = DEFAULT_HOST, tls: bool = False, **overrides: Any):
        if config is not None and not isinstance(config, Mapping):
            config = S.load_config_file(os.fspath(config))
        self.settings = S.resolve(profile, config, overrides)
        self._tls = None
        self._own_tls = False
        if tls:
            from loadgen.emulator.tls import ServerTLS

            # a ServerTLS of the caller's: several emulators, one CA (the caller removes it)
            self._tls, self._own_tls = (tls, False) if isinstance(tls, ServerTLS) else (ServerTLS([host]), True)
            self.ca_file = self._tls.ca_file
        self._port = port
        self._host = host
        self._faces = [f.strip() for f in faces.split(",") if f.strip()]
        self._loop = None
        self._stop_event = None
        self._error: Optional[BaseException] = None
        self.url = ""
        self.emulator = None
        self._done = None

    @property
    def pid(self) -> int:
        return os.getpid()

    def start(self, timeout: float = 30.0) -> "EmulatorThread":
        # The original _thread primitives, not threading.Thread: under gevent,
        # even the original Thread class starts a greenlet, because it calls
        # the patched module-level _start_new_thread.
        start_new_thread = _original("_thread", "start_new_thread")
        allocate_lock = _original("_thread", "allocate_lock")
        ready = allocate_lock()
        ready.acquire()
        self._done = allocate_lock()
        self._done.acquire()
        start_new_thread(self._run, (ready,))
        deadline = time.monotonic() + timeout
        while not ready.acquire(False):  # polling keeps a gevent hub responsive
            if time.monotonic() > deadline:
                raise TimeoutError("emulator thread did not start")
            _sleep(0.005)
        if self._error is not None:
            raise self._error
        return self

    def is_alive(self) -> bool:
        return self._done is not None and self._done.locked()

    def _run(self, ready) -> None:
        try:
            self._serve(ready)
        finally:
            self._done.release()

    def _serve(self, ready) -> None:
        import asyncio

        from loadgen.emulator.server import Emulator, new_event_loop

        loop = self._loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self.emulator = Emulator(self.settings, self._faces, self._host, tls=self._tls)
            self._stop_event = asyncio.Event()
            self.url = loop.run_until_complete(self.emulator.start(self._port))
        except BaseException as e:
            self._error = e
            ready.release()
            loop.close()
            return
        ready.release()
        try:
            loop.run_until_complete(self._stop_event.wait())
            loop.run_until_complete(self.emulator.stop())
        finally:
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop_event is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            _sleep(0.01)
        if self._own_tls and not self.is_alive():
            self._tls.cleanup()

    def __enter__(self) -> "EmulatorThread":
        if self._done is None:
            self.start()
        return self


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # gevent-patched time.sleep yields to the hub


class EmulatorCluster:
    """Several emulator processes behind one handle: the same accessors, one view of the ground truth.

    One process holds a connection per client sandbox in flight, so a burst
    bigger than one process's descriptors (or CPU) is spread over several,
    each its own port: ``urls`` lists them, ``url`` is the comma-separated
    list that ``--emulator-url`` takes (each Locust worker then gets one).
    ``stats()`` adds the processes' counters up; ``sandboxes()`` is every
    process's records."""

    def __init__(self, members: List[EmulatorProcess]):
        self.members = members
        self._bundle: Optional[str] = None

    @property
    def urls(self) -> List[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    @property
    def ca_file(self) -> Optional[str]:
        """With TLS: one PEM bundle of every process's CA (each made its own), for SSL_CERT_FILE."""
        files = [m.ca_file for m in self.members if m.ca_file]
        if not files:
            return None
        if self._bundle is None:
            fd, self._bundle = tempfile.mkstemp(prefix="loadgen-emulators-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as out:
                for name in files:
                    with open(name, "rb") as f:
                        out.write(f.read())
        return self._bundle

    def stats(self) -> Dict[str, Any]:
        return merge_stats([m.stats() for m in self.members])

    def sandboxes(self) -> List[Dict[str, Any]]:
        return [row for m in self.members for row in m.sandboxes()]

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def stop(self, timeout: float = 10.0) -> None:
        for m in self.members:
            m.stop(timeout)
        if self._bundle is not None:
            try:
                os.unlink(self._bundle)
            except OSError:
                pass
            self._bundle = None

    def __enter__(self) -> "EmulatorCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def merge_stats(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One stats view of several processes: counters added, settings of the first, each server kept.

    Listen drops are counted per network namespace, which the processes share,
    so the merged figure is the largest any process saw, not their sum."""
    if not parts:
        return {}

    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a.get(k), b.get(k)) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return a + b
        return a

    merged: Dict[str, Any] = {}
    for part in parts:
        body = {k: v for k, v in part.items() if k not in ("settings", "server", "since")}
        merged = add(merged, body) if merged else body
    merged["settings"] = parts[0].get("settings")
    merged["since"] = min((p.get("since") for p in parts if p.get("since") is not None), default=None)
    servers = [p.get("server") or {} for p in parts]
    merged["servers"] = servers
    overloads = [s.get("overload") or {} for s in servers]
    merged["server"] = {
        "processes": len(parts),
        "connections": sum(s.get("connections", 0) for s in servers),
        "connections_total": sum(s.get("connections_total", 0) for s in servers),
        "cpu_s": sum(s.get("cpu_s", 0.0) for s in servers),
        "overload": {
            "loop_lag_ms": {"max": max((o.get("loop_lag_ms", {}).get("max", 0.0) for o in overloads), default=0.0),
                            "p99": max((o.get("loop_lag_ms", {}).get("p99", 0.0) for o in overloads), default=0.0)},
            "accept_queue": {"max": max((o.get("accept_queue", {}).get("max", 0) for o in overloads), default=0),
                             "limit": next((o.get("accept_queue", {}).get("limit") for o in overloads), None)},
            "listen_overflows": max((o.get("listen_overflows", 0) for o in overloads), default=0),
            "listen_drops": max((o.get("listen_drops", 0) for o in overloads), default=0),
            "overloaded": any(o.get("overloaded") for o in overloads),
        },
    }
    return merged


def start_emulators(processes: int = 1, profile: Optional[str] = "fast", port: int = 0,
                    config: Union[None, str, os.PathLike, Mapping[str, Any]] = None, **kwargs: Any) -> EmulatorCluster:
    """``processes`` emulator subprocesses (``start_emulator``'s arguments), on consecutive ports from
    ``port`` (or each a free one with 0), as one EmulatorCluster."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1 (got {processes})")
    members: List[EmulatorProcess] = []
    try:
        for i in range(processes):
            members.append(start_emulator(profile, port + i if port else 0, config, **kwargs))
    except BaseException:
        for m in members:
            m.stop()
        raise
    return EmulatorCluster(members)
