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
        self.handle = None
        self.profile: Optional[str] = None
        self.external_url: Optional[str] = None  # --emulator-url given on the command line: not ours to restart

    @property
    def url(self) -> Optional[str]:
        if self.external_url:
            return self.external_url
        return self.handle.url if self.handle is not None else None

    def start(self, profile: str, external_url: str = "") -> str:
        if external_url:
            self.external_url, self.profile = external_url, None
            return external_url
        from loadgen.emulator import start_emulator

        self.handle = start_emulator(profile=profile)
        self.profile = profile
        print(f"loadgen: emulator ({profile} profile) serving at {self.handle.url}", flush=True)
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
        events.init_command_line_parser.add_listener(_add_profile_option)
        events.quit.add_listener(lambda **kw: _embedded.stop())
        atexit.register(_embedded.stop)
    return _embedded


def _add_profile_option(parser) -> None:
    from loadgen.emulator.settings import PROFILES

    parser.add_argument("--emulator-profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"Profile of the emulator this locustfile starts (default {DEFAULT_PROFILE}); "
                             "a new profile restarts it.")
    for action in parser._actions:
        if action.dest == "emulator_url":
            # the target is this emulator, whatever a form field would say
            action.include_in_web_ui = False
