"""The e2b face of the emulator, with this process stalled while the readiness answers arrive.

Once every sandbox is created (their readiness commands then on the wire),
the asyncio bridge's loop and the gevent hub (unless TEST_STALL_HUB=0) are blocked for
TEST_STALL_S seconds: longer than the command timeout (and, with
TEST_VERDICT_GRACE_S, than the lifecycle's window for a verdict). The answers arrive
during the stall and wait, unread, in the sockets.
"""

import os

import gevent
from gevent.monkey import get_original
from locust import events

from loadgen import SandboxUser
from loadgen.net.aio import get_bridge

_real_sleep = get_original("time", "sleep")
STALL_S = float(os.environ.get("TEST_STALL_S", "2.5"))
STALLED_AT = os.environ.get("TEST_STALLED_AT_FILE")
STALL_HUB = os.environ.get("TEST_STALL_HUB", "1") == "1"  # 0: only the bridge's loop (the hub runs on)
if os.environ.get("TEST_VERDICT_GRACE_S"):  # a short verdict window, so that a stall can outlast it
    import loadgen.engine.lifecycle

    loadgen.engine.lifecycle.VERDICT_GRACE_S = float(os.environ["TEST_VERDICT_GRACE_S"])


@events.test_start.add_listener
def _arm(environment, **kw):
    def stall_once_every_create_is_in():
        while True:
            proc = getattr(environment, "loadgen_process", None)
            if proc is not None and proc.created_count >= environment.parsed_options.num_users:
                break
            gevent.sleep(0.002)
        gevent.sleep(0.05)  # the last readiness commands leave
        import time

        started = time.time()
        get_bridge().loop.call_soon_threadsafe(_real_sleep, STALL_S)
        if STALL_HUB:
            _real_sleep(STALL_S)  # the hub, with every greenlet on it
        else:
            gevent.sleep(STALL_S)
        if STALLED_AT:
            with open(STALLED_AT, "w") as fh:
                fh.write(f"{started} {time.time()}\n")

    gevent.spawn(stall_once_every_create_is_in)


class StalledUser(SandboxUser):
    provider_name = "e2b"
