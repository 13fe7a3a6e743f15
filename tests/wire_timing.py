"""The wire-timing check the adapters' stall tests share: measured latency against the emulator's own.

For each sandbox (``handles[i]`` is sandbox_idx ``i``) and operation, the
latency the adapter reports for it (``wire_times``) minus the emulator's
service time for it, from its ground truth (``sandboxes()``): a create's
arrival to its answer, the last command's arrival to its end, a kill's
arrival to its answer. A command the emulator served as several RPCs (modal's
TaskExecStart, TaskExecStdioRead, TaskExecWait: its record's ``rpcs``, each
from its request's arrival to its answer's last frame) was served for their sum.
"""

from __future__ import annotations

OPERATIONS = (("create", "t_received", "t_answered"), ("run", "t_start", "t_end"),
              ("destroy", "t_kill_received", "t_kill_answered"))


def wire_errors(adapter, handles, truth: dict) -> dict:
    """{operation: [seconds measured minus served, per sandbox]}; ``truth`` maps sandbox_idx (str) to its row."""
    out = {}
    for operation, received, answered in OPERATIONS:
        errors = []
        for i, handle in enumerate(handles):
            sent, answer = adapter.wire_times(handle, operation)
            row = truth[str(i)]
            if operation == "run":
                row = row["execs"][-1]
            if "rpcs" in row:
                served = sum(done - came for came, done in row["rpcs"])
            else:
                served = row[answered] - row[received]
            errors.append((answer - sent) - served)
        out[operation] = errors
    return out
