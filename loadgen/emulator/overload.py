"""The emulator's own overload, recorded so that a run can tell it apart from a slow provider.

An emulator starved of CPU (it shares the machine with the generator) is late
to run its timers and late to accept connections; its accept queue then
overflows and the kernel drops SYNs, which clients see as slow or failed
connections. Three signals say so:

- loop lag: how late a short periodic sleep wakes (the event loop's
  backlog of work; every answer is at least this late);
- the accept queue: its depth against its limit, sampled from the
  listening socket's TCP_INFO (for a listener, ``tcpi_unacked`` is the
  queue's length and ``tcpi_sacked`` its limit);
- listen drops: TcpExt ListenOverflows and ListenDrops from
  /proc/net/netstat since the emulator started. These count for the whole
  network namespace, not this process alone: on a machine shared with other
  listeners they are an upper bound.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import time
from typing import Optional

PROBE_INTERVAL_S = 0.02
LAG_SAMPLES = 5000
LAG_WARNING_MS = 100.0  # a loop this late is the emulator, not the provider it stands for
NETSTAT = "/proc/net/netstat"
_TCP_INFO = struct.Struct("8B24I")


def read_listen_drops() -> dict:
    """TcpExt ListenOverflows and ListenDrops of this network namespace (zeros where unreadable)."""
    out = {"ListenOverflows": 0, "ListenDrops": 0}
    try:
        with open(NETSTAT) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[0::2], lines[1::2]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            for key in out:
                out[key] = int(table.get(key, 0))
    return out


def accept_queue(sock: socket.socket) -> Optional[tuple[int, int]]:
    """(queued, limit) of a listening socket's accept queue, or None."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        fields = _TCP_INFO.unpack_from(info)
    except (OSError, struct.error):
        return None
    return fields[8 + 4], fields[8 + 5]  # tcpi_unacked, tcpi_sacked


class OverloadMonitor:
    def __init__(self) -> None:
        self.listeners: list[socket.socket] = []
        self._lags: collections.deque = collections.deque(maxlen=LAG_SAMPLES)
        self.lag_max_ms = 0.0
        self.lags_over_warning = 0
        self.queue_max = 0
        self.queue_limit: Optional[int] = None
        self._drops_at_start = read_listen_drops()
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def reset(self) -> None:
        self._lags.clear()
        self.lag_max_ms = 0.0
        self.lags_over_warning = 0
        self.queue_max = 0
        self._drops_at_start = read_listen_drops()

    async def _probe(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(PROBE_INTERVAL_S)
            lag_ms = max(0.0, (time.perf_counter() - before - PROBE_INTERVAL_S) * 1000.0)
            self._lags.append(lag_ms)
            if lag_ms > self.lag_max_ms:
                self.lag_max_ms = lag_ms
            if lag_ms > LAG_WARNING_MS:
                self.lags_over_warning += 1
            for sock in self.listeners:
                queue = accept_queue(sock)
                if queue is not None:
                    self.queue_max = max(self.queue_max, queue[0])
                    self.queue_limit = queue[1]

    def snapshot(self) -> dict:
        lags = sorted(self._lags)
        now = read_listen_drops()
        drops = {k: max(0, now[k] - self._drops_at_start.get(k, 0)) for k in now}
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
        return {
            "loop_lag_ms": {"p99": round(p99, 3), "max": round(self.lag_max_ms, 3), "samples": len(lags),
                            "over_warning": self.lags_over_warning, "warning_ms": LAG_WARNING_MS},
            "accept_queue": {"max": self.queue_max, "limit": self.queue_limit},
            "listen_overflows": drops["ListenOverflows"],  # namespace-wide (see module doc)
            "listen_drops": drops["ListenDrops"],
            "overloaded": bool(drops["ListenOverflows"] or drops["ListenDrops"] or self.lags_over_warning),
        }
