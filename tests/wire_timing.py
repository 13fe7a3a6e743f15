"""The wire-timing check the adapters' stall tests share: measured latency against the emulator's own.

For each sandbox (``handles[i]`` is sandbox_idx ``i``) and operation, the
latency the adapter reports for it (``wire_times``) minus the emulator's
service time for it, from its ground truth (``sandboxes()``): a create's
arrival to its answer, the last command's arrival to its end, a kill's
arrival to its answer (each plus the service time of the wait that follows
it, where the SDK makes one: ``waits``; for a command, the delivery of its
output asked for after it ended, ``stream``). A command the emulator served
as several RPCs (modal's TaskExecStart, TaskExecStdioRead, TaskExecWait: its
record's ``rpcs``, each from its request's arrival to its answer's last
frame) was served for their sum.
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
            wait = (row.get("waits") or {}).get(operation)  # its second exchange, where the SDK makes one
            if operation == "run":
                row = row["execs"][-1]
                wait = row.get("stream")  # the output, asked for once the command had ended (codesandbox)
            if "rpcs" in row:
                served = sum(done - came for came, done in row["rpcs"])
            else:
                served = row[answered] - row[received]
            if wait is not None:
                served += wait[1] - wait[0]
            errors.append((answer - sent) - served)
        out[operation] = errors
    return out
