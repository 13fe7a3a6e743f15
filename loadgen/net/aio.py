"""Run asyncio SDKs from gevent greenlets without blocking the hub.

Several provider SDKs are asyncio-only (together-sandbox), or do their I/O in
a native client that would block gevent's hub if called synchronously (e2b's
pyqwest transport). Each process therefore runs ONE asyncio event loop in a
real OS thread, and greenlets hand it coroutines. The greenlet waits on a
gevent primitive; the loop thread wakes the hub through a single thread-safe
async watcher, so thousands of concurrent calls cost one wake-up per batch of
completions rather than one thread each.

A call that the greenlet stops waiting for (a timeout) is *not* cancelled
unless the caller asks: a sandbox create that answers late must still be seen,
so that the sandbox it made can be destroyed instead of leaked.
"""

from __future__ import annotations

import asyncio
import collections
import os
from typing import Any, Awaitable, Callable, Optional

import gevent
import gevent.event
import gevent.lock

try:  # the loop thread must be a real OS thread even when gevent has patched threading
    from gevent.monkey import get_original

    # threading.Thread from get_original still starts through the patched
    # _thread module (a greenlet); only the original start_new_thread is real.
    _start_new_thread = get_original("_thread", "start_new_thread")
    _allocate_lock = get_original("_thread", "allocate_lock")
    _get_ident = get_original("_thread", "get_ident")
except Exception:  # pragma: no cover - gevent always provides get_original
    import _thread

    _start_new_thread = _thread.start_new_thread
    _allocate_lock = _thread.allocate_lock
    _get_ident = _thread.get_ident


class Pending:
    """The gevent side of one coroutine running on the bridge's loop."""

    __slots__ = ("_event", "_value", "_error", "_done", "_callbacks", "_future", "_bridge")

    def __init__(self, bridge: "AsyncBridge"):
        self._event = gevent.event.Event()
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._done = False
        self._callbacks: list[Callable[["Pending"], None]] = []
        self._future: Optional[asyncio.Future] = None
        self._bridge = bridge

    @property
    def done(self) -> bool:
        return self._done

    @property
    def waitable(self) -> gevent.event.Event:
        """What ``gevent.wait`` can wait on for this call's end."""
        return self._event

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Wait cooperatively. Raises TimeoutError if the result is not there in time
        (the coroutine keeps running), or the coroutine's own exception."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value

    def result(self) -> Any:
        if not self._done:
            raise RuntimeError("not done")
        if self._error is not None:
            raise self._error
        return self._value

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    def add_done_callback(self, fn: Callable[["Pending"], None]) -> None:
        """Run fn(self) in a new greenlet when done (immediately if already done)."""
        if self._done:
            gevent.spawn(fn, self)
        else:
            self._callbacks.append(fn)

    def cancel(self) -> None:
        """Cancel the coroutine on the loop (used for commands, never for creates)."""
        future = self._future
        if future is not None and not self._done:
            self._bridge.loop.call_soon_threadsafe(future.cancel)

    # called on the hub, from the watcher callback
    def _settle(self, value: Any, error: Optional[BaseException]) -> None:
        self._value, self._error, self._done = value, error, True
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            gevent.spawn(fn, self)


class AsyncBridge:
    """One asyncio loop in one real thread, shared by every greenlet of the process."""

    def __init__(self, name: str = "loadgen-asyncio"):
        self._completed: collections.deque = collections.deque()
        # Submissions are batched: one call_soon_threadsafe (a handle and a write to the
        # loop's wake-up pipe) per batch instead of per coroutine.
        self._submitted: collections.deque = collections.deque()
        self._start_scheduled = False
        self._hub = gevent.get_hub()
        self._watcher = self._hub.loop.async_()
        self._watcher.start(self._drain)
        self._ready = _allocate_lock()
        self._ready.acquire()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread_id: Optional[int] = None
        _start_new_thread(self._run, ())
        # Blocking acquire of a real lock would block the hub; the loop starts in
        # microseconds, so poll cooperatively instead.
        while not self._ready.acquire(False):
            gevent.sleep(0.001)
        self.in_flight = 0

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        # uvloop makes no Python socket calls of its own, which keeps the loop
        # clear of gevent's monkey-patched socket and selectors modules.
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:  # pragma: no cover
            import selectors

            return asyncio.SelectorEventLoop(selectors.DefaultSelector())

    def _run(self) -> None:
        loop = self._new_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.thread_id = _get_ident()
        self._ready.release()
        loop.run_forever()

    def _drain(self) -> None:
        completed = self._completed
        while completed:
            pending, value, error = completed.popleft()
            if pending is None:  # a callback for the hub (call_on_hub)
                value()
                continue
            self.in_flight -= 1
            pending._settle(value, error)

    def deliver(self) -> None:
        """Settle now what the loop thread has finished but the hub has not yet taken in (its
        wake-up waits its turn behind every other ready greenlet on a busy hub). Called on the
        hub's thread, by a greenlet about to judge a call it has waited long for."""
        self._drain()

    def call_on_hub(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on gevent's hub; callable from the loop thread (or any thread)."""
        self._completed.append((None, fn, None))
        self._watcher.send()

    def hub_callback(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn``, made safe to call from the loop thread: there it is queued for the hub, elsewhere run at once."""
        def callback() -> None:
            if _get_ident() == self.thread_id:
                self.call_on_hub(fn)
            else:
                fn()
        return callback

    def submit(self, coro: Awaitable) -> Pending:
        """Start `coro` on the loop; returns at once."""
        pending = Pending(self)
        self.in_flight += 1
        self._submitted.append((coro, pending))
        if not self._start_scheduled:
            # The loop clears the flag before it drains, so an item appended after the
            # drain began either is drained by it or schedules the next drain.
            self._start_scheduled = True
            self.loop.call_soon_threadsafe(self._start_submitted)
        return pending

    def call(self, coro: Awaitable, timeout: Optional[float] = None, cancel_on_timeout: bool = True) -> Any:
        """Submit and wait. On timeout, cancel the coroutine unless told not to."""
        pending = self.submit(coro)
        try:
            return pending.wait(timeout)
        except TimeoutError:
            if cancel_on_timeout:
                pending.cancel()
            raise

    # runs on the loop thread
    def _start_submitted(self) -> None:
        self._start_scheduled = False
        submitted = self._submitted
        while submitted:
            coro, pending = submitted.popleft()
            try:
                self._start(coro, pending)
            except BaseException as exc:  # noqa: BLE001 - not a coroutine: fail this call, start the rest
                self._completed.append((pending, None, exc))
                self._watcher.send()

    def _start(self, coro: Awaitable, pending: Pending) -> None:
        future = asyncio.ensure_future(coro)
        pending._future = future
        future.add_done_callback(lambda f, p=pending: self._finished(f, p))

    def _finished(self, future: asyncio.Future, pending: Pending) -> None:
        if future.cancelled():
            value, error = None, asyncio.CancelledError("cancelled")
        else:
            error = future.exception()
            value = None if error is not None else future.result()
        self._completed.append((pending, value, error))
        self._watcher.send()

    def close(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)


_bridge: Optional[AsyncBridge] = None
_bridge_pid: Optional[int] = None
_bridge_lock = gevent.lock.Semaphore()


def get_bridge() -> AsyncBridge:
    """The process's one bridge, created on first use (and again after a fork).

    Creation yields to the hub while the loop thread starts, so it is guarded:
    two bridges would mean two event loops, and SDK connection pools are bound
    to the loop that opened them.
    """
    global _bridge, _bridge_pid
    with _bridge_lock:
        if _bridge is None or _bridge_pid != os.getpid():
            _bridge = AsyncBridge()
            _bridge_pid = os.getpid()
    return _bridge
