"""Old module paths, kept working for one release with a deprecation warning.

loadgen's modules now live in subpackages that name the architecture
(``loadgen.engine``, ``loadgen.net``, ``loadgen.report``). A locustfile or
script written against the old flat paths (``from loadgen.lifecycle import
SandboxUser``, ``import loadgen.run``) still imports: a finder on
``sys.meta_path`` answers for each old name with a module that forwards to the
new ones, and warns once with the path to use instead. Remove in 0.3.0.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

REMOVED_IN = "0.3.0"

# old module -> the modules whose public names it offered (the first one is "where it went")
MOVED: dict[str, tuple[str, ...]] = {
    "loadgen.lifecycle": ("loadgen.engine.lifecycle", "loadgen.engine.user"),
    "loadgen.run": ("loadgen.engine.wiring", "loadgen.engine.options", "loadgen.engine.identity",
                    "loadgen.engine.clocks"),
    "loadgen.process": ("loadgen.engine.process",),
    "loadgen.dispatch": ("loadgen.engine.dispatch",),
    "loadgen.barrier": ("loadgen.engine.barrier",),
    "loadgen.journal": ("loadgen.engine.journal",),
    "loadgen.collector": ("loadgen.engine.collector",),
    "loadgen.coordinator": ("loadgen.engine.coordinator", "loadgen.engine.identity"),
    "loadgen.metrics": ("loadgen.engine.health",),
    "loadgen.webui": ("loadgen.engine.webui",),
    "loadgen.reap": ("loadgen.engine.reap",),
    "loadgen.wirehttp": ("loadgen.net.wirehttp",),
    "loadgen.tcp_info": ("loadgen.net.tcp_info",),
    "loadgen.aio": ("loadgen.net.aio",),
    "loadgen.stats": ("loadgen.report.stats",),
    "loadgen.charts": ("loadgen.report.charts",),
    "loadgen.report_render": ("loadgen.report.render",),
    "loadgen.report_compare": ("loadgen.report.compare",),
    "loadgen.aggregate": ("loadgen.report.aggregate",),
}
# names that changed as well as moved: old module -> {old name: (module, new name)}
RENAMED: dict[str, dict[str, tuple[str, str]]] = {
    "loadgen.run": {"make_sinks": ("loadgen.sinks", "sinks_for")},
}


class LoadgenDeprecationWarning(DeprecationWarning):
    """Shown by default (unlike DeprecationWarning): the people who see it write locustfiles."""


warnings.filterwarnings("default", category=LoadgenDeprecationWarning)


def moved_message(old: str) -> str:
    new = MOVED[old][0]
    hint = "from loadgen import SandboxUser" if old in ("loadgen.lifecycle", "loadgen.run") else f"import {new}"
    return f"{old} has moved to {new}; use `{hint}` (the old path goes in loadgen {REMOVED_IN})"


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # a plain module object

    def exec_module(self, module) -> None:
        old = module.__name__
        warnings.warn(moved_message(old), LoadgenDeprecationWarning, stacklevel=2)
        for target in MOVED[old]:
            new = importlib.import_module(target)
            module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith("__")})
        for name, (target, new_name) in RENAMED.get(old, {}).items():
            module.__dict__[name] = getattr(importlib.import_module(target), new_name)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _MovedLoader())
        return None


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
