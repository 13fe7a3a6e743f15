"""Where figures are computed and shown: pure statistics over records, charts,
HTML and Markdown pages, run comparison and shard aggregation.

Nothing here talks to a provider or to Locust; every function reads records
(or a run directory) and returns figures or files.
"""

import importlib
import importlib.util
import warnings


def __getattr__(name: str):
    # This package took the place of the module `loadgen.report` (now
    # loadgen.report.command); its names still resolve here, with a warning,
    # for one release. Submodules (stats, charts, ...) import as usual.
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    command = importlib.import_module(f"{__name__}.command")
    if not name.startswith("__") and hasattr(command, name):
        from loadgen._moved import REMOVED_IN, LoadgenDeprecationWarning

        warnings.warn(f"loadgen.report.{name} has moved to loadgen.report.command.{name} "
                      f"(the old path goes in loadgen {REMOVED_IN})", LoadgenDeprecationWarning, stacklevel=2)
        return getattr(command, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
