"""Give a provider SDK its module name back from the locustfile that took it.

Locust imports ``locustfiles/e2b.py`` as the top-level module ``e2b`` (and
likewise ``daytona``, ``modal``), which shadows the provider's SDK package of
the same name: everything imported afterwards would get the locustfile.
``from loadgen import SandboxUser``, a locustfile's first loadgen import,
calls ``reclaim_shadowed_sdks()``: it imports each shadowed SDK with the
locustfile's folder off ``sys.path`` and puts it back under its name. Locust
keeps its own reference to the locustfile module.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def reclaim_sdk(name: str, locustfile: str, marker: str) -> ModuleType:
    """Import the SDK package `name` (recognised by its attribute `marker`) and register it as `name`."""
    module = sys.modules.get(name)
    if module is not None and hasattr(module, marker):
        return module
    sys.modules.pop(name, None)
    here = os.path.dirname(os.path.abspath(locustfile))
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        module = importlib.import_module(name)
    finally:
        sys.path[:] = saved
    getattr(module, marker)  # lazy packages pay their import now, before the run, not on the running hub
    return module


# SDK package name -> an attribute only the real package has
SHADOWED_SDKS = {"e2b": "AsyncSandbox", "daytona": "Daytona", "modal": "Sandbox"}


def reclaim_shadowed_sdks() -> None:
    """Reclaim every SDK name that a locustfile (a plain ``<sdk>.py`` file) has taken.

    Called when a locustfile imports ``SandboxUser``, which is the locustfile's
    first loadgen import, so a provider's locustfile needs no code of its own
    for this. The real SDKs are packages, never a lone ``<sdk>.py``."""
    for name, marker in SHADOWED_SDKS.items():
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if module is not None and not hasattr(module, marker) and os.path.basename(path) == f"{name}.py":
            reclaim_sdk(name, path, marker)
