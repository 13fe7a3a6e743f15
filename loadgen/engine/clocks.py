"""Worker clocks measured against the master's, before any sandbox is created.

Every timestamp in raw.jsonl is on the master's clock, so that phases taken on
different machines line up. The master pings each worker a few times, each
worker answers with its own clock, and the offset is estimated from the
round trip with the least delay (``loadgen.report.stats.estimate_clock_offset``);
the estimate and its uncertainty go in meta.json, and the worker subtracts the
offset from every time it records.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import gevent

from loadgen.report.stats import estimate_clock_offset

log = logging.getLogger("loadgen.run")

MSG_PING = "loadgen_ping"
MSG_PONG = "loadgen_pong"
MSG_CLOCK = "loadgen_clock"

CLOCK_SAMPLES = 5
ANSWER_WAIT_S = 2.0


class MasterClock:
    """Master side: pings the workers and tells each its offset."""

    def __init__(self, runner):
        self.runner = runner
        self._pongs: dict[str, list] = {}
        runner.register_message(MSG_PONG, self._on_pong)

    def _on_pong(self, environment, msg, **kw) -> None:
        self._pongs.setdefault(msg.data["worker_id"], []).append((msg.data["t"], msg.data["tw"], time.time()))

    def measure(self) -> dict[str, dict]:
        """Each connected worker's offset estimate (worker clock minus master clock), sent to it too."""
        clients = [c.id for c in self.runner.clients.all]
        self._pongs = {}
        for _ in range(CLOCK_SAMPLES):
            for client_id in clients:
                self.runner.send_message(MSG_PING, {"t": time.time()}, client_id=client_id)
            gevent.sleep(0.02)
        deadline = time.time() + ANSWER_WAIT_S
        while time.time() < deadline and any(len(self._pongs.get(c, [])) < CLOCK_SAMPLES for c in clients):
            gevent.sleep(0.02)
        offsets = {}
        for client_id in clients:
            samples = self._pongs.get(client_id)
            if not samples:
                log.warning("no clock samples from worker %s; its timestamps are uncorrected", client_id)
                continue
            estimate = estimate_clock_offset(samples)
            offsets[client_id] = estimate
            self.runner.send_message(MSG_CLOCK, {"offset_s": estimate["offset_s"]}, client_id=client_id)
        return offsets


class WorkerClock:
    """Worker side: answers pings, and keeps the offset the master measured."""

    def __init__(self, runner, on_offset: Callable[[float], None]):
        self.runner = runner
        self.offset_s = 0.0
        self.on_offset = on_offset
        runner.register_message(MSG_PING, self._on_ping)
        runner.register_message(MSG_CLOCK, self._on_clock)

    def _on_ping(self, environment, msg, **kw) -> None:
        self.runner.send_message(MSG_PONG, {"worker_id": self.runner.client_id, "t": msg.data["t"], "tw": time.time()})

    def _on_clock(self, environment, msg, **kw) -> None:
        self.offset_s = float(msg.data.get("offset_s", 0.0))
        self.on_offset(self.offset_s)
