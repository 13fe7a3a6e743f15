"""The e2b face of the emulator, with this process out of file descriptors for a while mid-run.

Once TEST_HOG_AFTER sandboxes exist, every descriptor the process may still
open is taken (by /dev/null) and held for TEST_HOG_S seconds: the sandboxes
whose connections fall in that window cannot be made by the generator.
"""

import os

import gevent
from locust import events

from loadgen import SandboxUser

HOG_AFTER = int(os.environ.get("TEST_HOG_AFTER", "10"))
HOG_S = float(os.environ.get("TEST_HOG_S", "1.5"))


@events.test_start.add_listener
def _arm(environment, **kw):
    def hog():
        while True:
            proc = getattr(environment, "loadgen_process", None)
            if proc is not None and proc.created_count >= HOG_AFTER:
                break
            gevent.sleep(0.002)
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        gevent.sleep(HOG_S)
        for fd in held:
            os.close(fd)

    gevent.spawn(hog)


class HoggedUser(SandboxUser):
    provider_name = "e2b"
