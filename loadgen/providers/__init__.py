"""Provider registry and the `loadgen providers` command.

Usage:
  loadgen providers

Lists every provider, the environment variables it needs, and whether each is
set. Values are never printed.
"""

from __future__ import annotations

import importlib
import os

from docopt import docopt

# name -> "module:Class"; adding a provider is one module and one line here.
REGISTRY = {
    "e2b": "loadgen.providers.e2b:E2BProvider",
    "daytona": "loadgen.providers.daytona:DaytonaProvider",
    "runloop": "loadgen.providers.runloop:RunloopProvider",
    "modal": "loadgen.providers.modal:ModalProvider",
    "codesandbox": "loadgen.providers.codesandbox:CodeSandboxProvider",
    "storage": "loadgen.providers.storage:StorageProvider",  # the storage benchmark (locustfiles/storage.py)
}


def get_provider_class(name: str):
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    if not isinstance(target, str):  # a class registered at run time (a locustfile's own provider)
        return target
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def main(argv) -> int:
    docopt(__doc__, argv=argv)
    for name in sorted(REGISTRY):
        cls = get_provider_class(name)
        print(name)
        for var in cls.required_env:
            print(f"  {var:<28} required  {'set' if os.environ.get(var) else 'NOT SET'}")
        for var in cls.optional_env:
            print(f"  {var:<28} optional  {'set' if os.environ.get(var) else 'not set'}")
    return 0
