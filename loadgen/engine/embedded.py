"""A locustfile whose target is an emulator it starts itself (``locustfiles/local.py``).

Such a run must never reach a real provider, whatever the web form or the
environment says: a locustfile that calls ``embed_emulator()`` has its target
fixed, in the wiring, to the emulator this process started (or to the one
``--emulator-url`` named on the command line). The web form does not offer
``--emulator-url`` for it; its ``--emulator-profile`` is a choice of the known
profiles, and a different profile chosen in the form restarts the emulator
before the run starts. A worker of such a run creates nothing unless the
master sent it the emulator's URL.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger("loadgen.embedded")

DEFAULT_PROFILE = "fast"
# The emulator accepts any key; the real SDK insists on having one.
PLACEHOLDER_KEYS = {"E2B_API_KEY": "e2b_emulator_local_key"}


class EmbeddedEmulator:
    """The emulator of this process (master or single process): started, restarted for a new profile, stopped."""

    def __init__(self):
        self.handle = None  # an EmulatorProcess, or an EmulatorCluster of several
        self.profile: Optional[str] = None
        self.processes = 1
        self.external_url: Optional[str] = None  # --emulator-url given on the command line: not ours to restart

    @property
    def url(self) -> Optional[str]:
        if self.external_url:
            return self.external_url
        return self.handle.url if self.handle is not None else None

    def start(self, profile: str, external_url: str = "", processes: Optional[int] = None) -> str:
        """Start the emulator: ``processes`` of them (one per worker, so that no emulator process is
        the bottleneck of a big burst; the master hands each worker its own), or reuse ``external_url``."""
        if external_url:
            self.external_url, self.profile = external_url, None
            return external_url
        from loadgen.emulator import start_emulator, start_emulators

        self.processes = max(1, processes or self.processes)
        self.handle = start_emulator(profile=profile) if self.processes == 1 else start_emulators(self.processes,
                                                                                                   profile)
        self.profile = profile
        where = self.handle.url if self.processes == 1 else f"{self.processes} processes, {self.handle.url}"
        print(f"loadgen: emulator ({profile} profile) serving at {where}", flush=True)
        return self.handle.url

    def ensure(self, profile: str) -> str:
        """The emulator's URL with ``profile`` in force: a different profile restarts it (between runs)."""
        if self.external_url or profile == self.profile:
            return self.url
        old = self.handle
        url = self.start(profile)
        if old is not None:
            old.stop()
        log.info("[phase] emulator restarted with the %s profile at %s", profile, url)
        return url

    def stop(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.stop()


_embedded: Optional[EmbeddedEmulator] = None


def embedded_emulator() -> Optional[EmbeddedEmulator]:
    """This process's embedded emulator, if its locustfile called ``embed_emulator()``."""
    return _embedded


def embed_emulator() -> EmbeddedEmulator:
    """Make this locustfile's target an emulator of its own (call once, at import)."""
    global _embedded
    if _embedded is None:
        import atexit

        from locust import events

        for name, value in PLACEHOLDER_KEYS.items():
            os.environ.setdefault(name, value)
        _embedded = EmbeddedEmulator()
        events.init_command_line_parser.add_listener(add_local_arguments)
        events.quit.add_listener(lambda **kw: _embedded.stop())
        atexit.register(_embedded.stop)
    return _embedded


def processes_for(options) -> int:
    """How many emulator processes to start: --emulator-processes, or by default one per expected
    worker (a worker's sandboxes are one emulator process's connections), else one."""
    wanted = int(getattr(options, "emulator_processes", 0) or 0)
    if wanted < 0:
        raise ValueError(f"--emulator-processes must be 1 or more, or 0 for one per worker (got {wanted})")
    if wanted > 0:
        return wanted
    if getattr(options, "master", False):
        return max(1, int(getattr(options, "expect_workers", 1) or 1))
    return 1


def add_local_arguments(parser) -> None:
    """The options of locustfiles/local.py, which starts its own emulator."""
    from loadgen.emulator.settings import PROFILES

    parser.add_argument("--emulator-profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"Profile of the emulator this locustfile starts (default {DEFAULT_PROFILE}); "
                             "a new profile restarts it.")
    parser.add_argument("--emulator-processes", type=int, default=0, include_in_web_ui=False,
                        help="Emulator processes this locustfile starts (default: one per expected worker, or one); "
                             "each worker gets its own.")
    for action in parser._actions:
        if action.dest == "emulator_url":
            # the target is this emulator, whatever a form field would say
            action.include_in_web_ui = False
