"""Give a provider SDK its module name back from the locustfile that took it.

Locust imports ``locustfiles/e2b.py`` as the top-level module ``e2b`` (and
likewise ``daytona``, ``modal``), which shadows the provider's SDK package of
the same name: everything imported afterwards would get the locustfile. A
locustfile calls ``reclaim_sdk(name, __file__)`` first thing: it imports the
real SDK with the locustfile's folder off ``sys.path`` and puts it back under
its name. Locust keeps its own reference to the locustfile module.
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
