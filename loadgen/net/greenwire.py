"""Timed exchanges for SDKs that run in gevent greenlets (sync httpx, urllib3).

loadgen's timed client (``loadgen.net.wirehttp``) runs on the process's
asyncio bridge (``loadgen.net.aio``): its sockets, kernel stamps and deadlines
live on that loop. A sync SDK's request, made in a greenlet, is handed to the
loop as one coroutine and the greenlet waits for it cooperatively, so the hub
keeps running every other sandbox meanwhile. The times are the kernel's
whichever side is busy: a stalled hub or a stalled loop reads the answer late,
but its stamp is when it arrived.

The lifecycle's phase (``loadgen.net.exchange``) is a context variable of the
greenlet; the loop's task does not inherit it, so it is carried over here:
the exchange is judged by the phase's deadline and recorded on it. When the
greenlet stops waiting (a ``gevent.Timeout``, a kill), the coroutine is
cancelled, which closes its connection.
"""

from __future__ import annotations

from typing import Any, Awaitable

from loadgen.net import exchange
from loadgen.net.aio import get_bridge


def call(coroutine: Awaitable) -> Any:
    """Run ``coroutine`` (a wirehttp exchange) on the bridge as part of the current phase; wait for it
    cooperatively. Its result, or its exception."""
    phase = exchange.current()
    pending = get_bridge().submit(coroutine if phase is None else exchange.run_within(phase, coroutine))
    try:
        return pending.wait()
    except BaseException:
        if not pending.done:
            pending.cancel()
        raise


def close(pool) -> None:
    """Close a ``WirePool`` used through ``call``: on the bridge's loop, where its sockets are watched."""
    try:
        call(_close(pool))
    except Exception:  # noqa: BLE001 - closing at exit (the loop may be gone): nothing left to report to
        pool.close()


async def _close(pool) -> None:
    pool.close()
