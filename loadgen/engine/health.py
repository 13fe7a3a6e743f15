"""Per-process health: how busy the generator itself was.

A burst figure is only trustworthy if the generator was not the bottleneck,
so every process (master, workers, local) samples itself once a second: CPU,
memory, gevent hub lag, open fds, sockets, load, and how many requests and
held sandboxes it had. Hub lag is the overshoot of a short sleep: when the
hub is busy (CPU-bound work, a blocking call), timers fire late, and every
latency the process measures is inflated by about that much.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import gevent
import psutil

from loadgen.host import open_descriptors
from loadgen.report.percentiles import percentile
from loadgen.result import iso

PROBE_INTERVAL_S = 0.02
TRIM_INTERVAL_S = 10.0


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def read_sockstat() -> dict:
    out = {}
    try:
        with open("/proc/net/sockstat") as fh:
            for line in fh:
                proto, _, rest = line.partition(":")
                fields = rest.split()
                out[proto.strip()] = {fields[i]: int(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    except OSError:
        pass
    return out


class HealthSampler:
    def __init__(self, process_name: str, emit: Callable[[dict], None], gauges: Optional[Callable[[], dict]] = None,
                 interval_s: float = 1.0):
        self.process_name = process_name
        self.emit = emit
        self.gauges = gauges or (lambda: {})
        self.interval_s = interval_s
        self._lags: list[float] = []
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)
        self._greenlets: list[gevent.Greenlet] = []
        self._trim = _malloc_trim()
        self._trimmed_at = 0.0
        self._trimmed_for = None

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._probe), gevent.spawn(self._sample_loop)]

    def stop(self) -> None:
        for g in self._greenlets:
            g.kill(block=False)

    def _probe(self) -> None:
        while True:
            before = time.perf_counter()
            gevent.sleep(PROBE_INTERVAL_S)
            lag = (time.perf_counter() - before - PROBE_INTERVAL_S) * 1000.0
            self._lags.append(max(lag, 0.0))

    def _maybe_trim(self, gauges: dict) -> None:
        """Hand the burst's freed heap back to the OS once the process is quiet.

        A burst allocates request buffers, SDK objects and greenlet stacks for
        every sandbox at once; once they are freed, glibc keeps most of those
        pages (about 10 KiB a sandbox), so the RSS at the barrier overstates what
        a held sandbox costs. With nothing in flight and sandboxes held (the
        barrier), malloc_trim(0) returns them: at most once per TRIM_INTERVAL_S
        and once per held count, a few ms each."""
        if self._trim is None or gauges.get("in_flight") or not gauges.get("held"):
            return
        now = time.monotonic()
        if gauges["held"] == self._trimmed_for or now - self._trimmed_at < TRIM_INTERVAL_S:
            return
        self._trimmed_at, self._trimmed_for = now, gauges["held"]
        try:
            self._trim(0)
        except Exception:  # noqa: BLE001
            self._trim = None

    def sample(self) -> dict:
        gauges = self.gauges()
        self._maybe_trim(gauges)
        lags, self._lags = sorted(self._lags), []
        now = time.time()
        fds = open_descriptors()
        sample = {
            "t": now,
            "ts": iso(now),
            "process": self.process_name,
            "pid": os.getpid(),
            "cpu_percent": self._proc.cpu_percent(None),
            "rss_bytes": self._proc.memory_info().rss,
            "hub_lag_ms": {
                "p50": round(percentile(lags, 50) or 0.0, 3),
                "p99": round(percentile(lags, 99) or 0.0, 3),
                "max": round(lags[-1], 3) if lags else 0.0,
            },
            "open_fds": fds,
            "sockstat": read_sockstat(),
            "loadavg": list(os.getloadavg()),
        }
        sample.update(gauges)
        return sample

    def _sample_loop(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            try:
                self.emit(self.sample())
            except Exception:  # noqa: BLE001 - health sampling must never end a run
                pass
