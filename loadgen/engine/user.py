"""The Locust user class every provider's locustfile subclasses.

Importing this module registers loadgen with Locust (its command-line options
and event listeners, in ``loadgen.engine.wiring``), once per process: a
locustfile needs nothing but ``from loadgen import SandboxUser``.

One user is one sandbox. The user does not run the sandbox's life itself: the
process's run (``ProcessRun``, which the wiring hands to every user through
its Locust environment as ``environment.loadgen_process``) gives the user its
index ticket and runs the life in a greenlet of its own (see
``loadgen.engine.lifecycle`` for why).
"""

from __future__ import annotations

from typing import Optional

import gevent
from locust import User, constant, task

import loadgen.engine.wiring  # noqa: F401  registers loadgen's options and event listeners
from loadgen.engine.lifecycle import tune_gc

PROCESS_ATTRIBUTE = "loadgen_process"


class SandboxUser(User):
    """Base class of every provider's user. A provider's locustfile sets ``provider_name``.

    The task only idles: the work happens once, in the life greenlet started by
    on_start. A user built after its process ran out of index tickets (a
    Locust respawn) never creates anything.
    """

    abstract = True
    provider_name: str = ""
    wait_time = constant(1)

    def __init__(self, environment):
        super().__init__(environment)
        self._proc = getattr(environment, PROCESS_ATTRIBUTE, None)
        tune_gc()
        self.sandbox_idx = self._proc.take_ticket() if self._proc is not None else None
        self._life: Optional[gevent.Greenlet] = None

    def on_start(self) -> None:
        if self.sandbox_idx is None:
            if self._proc is not None:
                self._proc.note_refused_user()
            return
        self._life = self._proc.start_lifecycle(self.sandbox_idx)

    @task
    def idle(self) -> None:
        gevent.sleep(3600)

    def on_stop(self) -> None:
        # Locust is stopping this user (test stop or a ramp-down). The life is
        # not killed: it is told to end its hold, then probes, destroys and records.
        if self._life is not None and not self._life.ready():
            self._proc.abort_all("user stopped")
