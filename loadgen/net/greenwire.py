"""Timed exchanges for SDKs that run in gevent greenlets (sync httpx, urllib3), on the hub itself.

loadgen's timed client (``loadgen.net.wirehttp``) is written as coroutines
whose only waits are its ``Io``'s. ``HUB`` is the Io of gevent's hub: a wait
switches the calling greenlet out until its socket is ready (or its deadline
has passed), and the coroutine never suspends, so ``run`` drives a whole
exchange to its end in the greenlet that made the request, and the hub keeps
running every other sandbox meanwhile. The sockets are the same non-blocking
stdlib sockets, read with ``recvmsg`` and their kernel stamps (SO_TIMESTAMPNS)
as on the asyncio bridge, so the times are the kernel's whichever greenlet is
busy: a stalled hub reads the answer late, but its stamp is when it arrived.

Why not on the bridge: handing each exchange to the bridge's thread and its
answer back cost two GIL hand-offs and a wake-up of each thread per request,
and a task, futures and watchers on both sides (BENCHMARKS.md §8); here the
exchange is a few function calls in the greenlet that was waiting for it
anyway.

The lifecycle's phase (``loadgen.net.exchange``) is a context variable of the
greenlet, and the exchange runs in that greenlet: it is judged by the phase's
deadline and recorded on it. When the greenlet stops waiting (a
``gevent.Timeout``, a kill), the exception comes out of the wait inside the
exchange, which closes its connection and records it unanswered, as a
cancelled task does on the bridge.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Coroutine, Optional

import gevent
from gevent.hub import get_hub, Waiter

from loadgen.net.wirehttp import Io, WirePool


class HubIo(Io):
    """wirehttp's waits on gevent's hub, from the calling greenlet."""

    def loop_key(self):
        return get_hub(), os.getpid()

    async def wait(self, fd: int, writable: bool, until: Optional[float]) -> None:
        hub = get_hub()
        waiter = Waiter(hub)
        watcher = hub.loop.io(fd, 2 if writable else 1)
        watcher.start(waiter.switch, None)
        timer = None
        if until is not None:
            timer = hub.loop.timer(max(0.0, until - time.time()))
            timer.start(waiter.switch, None)
        try:
            waiter.get()
        finally:
            watcher.stop()
            if timer is not None:
                timer.stop()

    async def resolve(self, host: str, port: int, until: Optional[float]) -> list:
        try:  # an address literal (the emulator's 127.0.0.1) is parsed, never looked up
            return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        timeout = None if until is None else gevent.Timeout(max(0.0, until - time.time()),
                                                              TimeoutError(f"cannot resolve {host} in time"))
        if timeout is not None:
            timeout.start()
        try:
            return get_hub().resolver.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        finally:
            if timeout is not None:
                timeout.close()

    def call_later(self, delay: float, fn) -> object:
        timer = get_hub().loop.timer(delay, 0, ref=False)  # (a sweep never keeps the process alive)
        timer.start(fn)
        return timer


HUB = HubIo()


def pool(**kwargs: Any) -> WirePool:
    """A ``WirePool`` whose exchanges run on the hub, in the greenlet that makes them (through ``run``)."""
    return WirePool(io=HUB, **kwargs)


def run(coroutine: Coroutine) -> Any:
    """Run ``coroutine`` (an exchange on a ``pool()``'s pool) to its end in this greenlet: its result, or its
    exception. The current phase, if any, is this greenlet's, and so the exchange's."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a wirehttp exchange on the hub awaited something that is not the hub's (an asyncio "
                       "pool's exchange?)")
