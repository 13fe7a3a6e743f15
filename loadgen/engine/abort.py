"""A process's abort: the one signal that thousands of waiting lives must hear at once.

Why not a plain ``gevent.event.Event``: every greenlet that waits on it with
a timeout (a hold, a scheduled start) or beside another event
(``gevent.wait([released, abort])``) links itself to it, and each of those
links is later removed from one shared list, a scan of every other waiter.
At 8,333 lives in a process that is quadratic: 0.7 s of CPU for one wake of
every life, 0.5 s for one wave of timed waits, each time a burst moves from
one step to the next. Here each wait links only to an event of its own, or to
a gate's own event that the abort also sets, so a wait costs the same with 10
lives or 10,000.
"""

from __future__ import annotations

from typing import Optional

import gevent.event


class Abort:
    """Set once; ``sleep`` and ``wait_for`` end early when it is."""

    def __init__(self):
        self._set = False
        self._wakes: set = set()  # events to set at the abort: each waiter's own, and gates' (see also_sets)

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        for event in list(self._wakes):
            event.set()

    def also_sets(self, event: gevent.event.Event) -> None:
        """Set ``event`` at the abort (now, if it happened already): for a gate that many wait on."""
        if self._set:
            event.set()
        else:
            self._wakes.add(event)

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``, or until the abort; True if it was aborted."""
        return self.wait_for(gevent.event.Event(), seconds)

    def wait_for(self, event: gevent.event.Event, timeout: Optional[float] = None) -> bool:
        """Wait until ``event`` (one this waiter alone waits on) is set, or the abort; True if aborted."""
        if self._set:
            return True
        self._wakes.add(event)
        try:
            event.wait(timeout)
        finally:
            self._wakes.discard(event)
        return self._set
