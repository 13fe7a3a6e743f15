"""Exactly-once dispatch: one user is one sandbox, once.

Locust treats users as interchangeable: it respawns users that ended when
the next spawn message arrives, and it rebalances (stops users on some
workers, starts new ones on others) when a worker joins late, reconnects or
goes missing. For a burst benchmark each of those is a duplicate create or a
killed sandbox. Two mechanisms defeat them:

1. **Dispatch freeze** (master): the first ``runner.start`` of a run is the
   only one honoured; later calls (rebalances) are logged and ignored.
2. **Index tickets**: the master hands each worker contiguous ranges of
   sandbox indexes inside its spawn message (a per-worker copy of
   ``parsed_options``, which Locust already copies into the worker's options).
   A user takes the next unused index when it is constructed; a user that
   finds none left (a respawn) stays inert. Indexes only ever grow, so no
   index is used twice, and ``sandbox_idx`` is 0..N-1 in submission order.
"""

from __future__ import annotations

import logging
from typing import Optional

from locust.runners import STATE_RUNNING, STATE_SPAWNING

log = logging.getLogger("loadgen.dispatch")

RANGES_OPTION = "loadgen_idx_ranges"


class IndexAllocator:
    """Master side: gives each worker index ranges as its target user count grows."""

    def __init__(self) -> None:
        self.next_index = 0
        self.ranges: dict[str, list[list[int]]] = {}
        self.counts: dict[str, int] = {}

    def grant(self, worker_id: str, target: int) -> list[list[int]]:
        have = self.counts.get(worker_id, 0)
        if target > have:
            start, end = self.next_index, self.next_index + (target - have)
            self.ranges.setdefault(worker_id, []).append([start, end])
            self.counts[worker_id] = target
            self.next_index = end
        return self.ranges.get(worker_id, [])

    @property
    def allocated(self) -> int:
        return self.next_index


class TicketBook:
    """Worker side: hands out the indexes of the ranges granted so far, each once."""

    def __init__(self, limit: Optional[int] = None) -> None:
        self.ranges: list[list[int]] = []
        self._range_pos = 0
        self._next: Optional[int] = None
        self.limit = limit  # local mode: a plain counter up to the target user count
        self.issued = 0
        self.refused = 0

    def update(self, ranges) -> None:
        for r in ranges or []:
            r = [int(r[0]), int(r[1])]
            if r not in self.ranges:
                self.ranges.append(r)

    def take(self) -> Optional[int]:
        if self.limit is not None:
            if self.issued >= self.limit:
                self.refused += 1
                return None
            self.issued += 1
            return self.issued - 1
        while self._range_pos < len(self.ranges):
            start, end = self.ranges[self._range_pos]
            if self._next is None:
                self._next = start
            if self._next < end:
                value = self._next
                self._next += 1
                self.issued += 1
                return value
            self._range_pos += 1
            self._next = None
        self.refused += 1
        return None


def install_master_dispatch(runner, allocator_for_run, options_for_worker=None) -> None:
    """Freeze dispatch after a run's first start, and put index ranges into each spawn message.

    ``allocator_for_run()`` returns the current run's IndexAllocator (a new run,
    in the web UI, gets a new one). ``options_for_worker(worker_id)``, if given,
    returns options that worker gets in place of the master's (its own emulator
    URL when the run spreads over several). The spawn hook is installed on the zmq
    Server class, not the instance, because the master replaces its server
    object when it resets a broken connection.
    """
    from locust.rpc import zmqrpc

    original_start = runner.start
    state = {"started": False}

    def frozen_start(user_count, spawn_rate, wait=False, user_classes=None):
        # A start while a run is under way is a rebalance; a start from "stopped"
        # (the web UI's next run) begins a new run and is honoured.
        if state["started"] and runner.state in (STATE_RUNNING, STATE_SPAWNING, "stopping", "cleanup"):
            log.warning(
                "dispatch frozen: ignored a rebalance to %s users (a worker joined, reconnected or was lost)", user_count
            )
            return None
        state["started"] = True
        return original_start(user_count, spawn_rate, wait=wait, user_classes=user_classes)

    def add_ranges(msg):
        if msg.type == "spawn" and isinstance(msg.data, dict):
            target = sum(msg.data.get("user_classes_count", {}).values())
            ranges = allocator_for_run().grant(msg.node_id, target)
            msg.data = dict(msg.data)
            own = options_for_worker(msg.node_id) if options_for_worker is not None else {}
            msg.data["parsed_options"] = {**msg.data.get("parsed_options", {}), **own, RANGES_OPTION: ranges}

    if not getattr(zmqrpc.Server, "_loadgen_hooked", False):
        original_send = zmqrpc.Server.send_to_client

        def send_to_client(self, msg):
            hook = _class_hook.get("hook")
            if hook is not None:
                hook(msg)
            return original_send(self, msg)

        zmqrpc.Server.send_to_client = send_to_client
        zmqrpc.Server._loadgen_hooked = True
    _class_hook["hook"] = add_ranges

    runner.start = frozen_start


_class_hook: dict = {}
