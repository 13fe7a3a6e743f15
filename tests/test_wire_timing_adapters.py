"""daytona, runloop and codesandbox are timed on the wire: a stalled client does not move their latencies.

Each adapter's create, command and destroy run on loadgen's timed client
(loadgen.net.wirehttpx / wireurllib3 over wirehttp). With the asyncio
bridge's loop AND gevent's hub stalled for 0.5 s while the answers arrive
(this process is not monkey-patched, so ``time.sleep`` blocks the hub), every
latency the adapter reports (``wire_times``) still equals the emulator's
service time for it (its ground truth, ``sandboxes()``) to within 15 ms:
loopback and the emulator's own scheduling on a loaded machine, nothing of
this process's. Over HTTP/1.1 in cleartext and over TLS (the emulator's CA
trusted through SSL_CERT_FILE), where the answer's stamp is its encrypted
bytes'.

codesandbox's operations are two exchanges each (create and wait, exec and
its SSE stream, terminate and wait). Its creates and terminates are stalled
while the first answers arrive: the wait that follows is answered at once,
so the gap the stall made is the generator's and is left out. Its commands
are stalled once their output streams are open, while the exit events
arrive: a stall between an exec's start and its stream's request could not
be told apart from the command's own time on the wire (loadgen.net.exchange,
Phase.span).
"""

from __future__ import annotations

import os
import time

import gevent
import pytest

from loadgen.emulator import start_emulator
from loadgen.net.aio import get_bridge
from loadgen.providers import get_provider_class
from loadgen.providers.base import ProviderSettings
from tests.protocol_fixtures import speaking, spoke, uses_tls

pytestmark = pytest.mark.timeout(240)

FACES = {"daytona": "e2b,daytona,runloop", "runloop": "e2b,daytona,runloop", "codesandbox": "codesandbox"}
SANDBOXES = 50
TOLERANCE_S = 0.015
LATENCY = "uniform:150,250"


def _arrived(stats: dict, provider: str, operation: str) -> int:
    """Requests the emulator has received that the stall must wait for: the last exchange of each
    operation that waits on the server (for codesandbox's commands, the output streams too)."""
    if provider == "codesandbox" and operation == "run":
        return stats["requests"]  # the execs' starts and their streams
    return stats["ops"][{"create": "create", "run": "exec", "destroy": "kill"}[operation]]["requests"]


@pytest.mark.parametrize("protocol", ["h1", "tls"])
@pytest.mark.parametrize("provider", ["daytona", "runloop", "codesandbox"])
def test_latencies_are_the_wire_even_when_the_client_is_stalled(provider, protocol, monkeypatch):
    cls = get_provider_class(provider)
    for name in cls.required_env:
        monkeypatch.setenv(name, f"{provider}_test_key")
    for name in ("LOADGEN_DAYTONA_TRANSPORT", "LOADGEN_RUNLOOP_TRANSPORT", "LOADGEN_CODESANDBOX_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    bridge = get_bridge()

    def burst(operation, calls):
        before = _arrived(emu.stats(), provider, operation)
        expected = before + len(calls) * (2 if provider == "codesandbox" and operation == "run" else 1)
        pending = [adapter.start_call(method, *args) for method, *args in calls]
        deadline = time.time() + 60
        while _arrived(emu.stats(), provider, operation) < expected and time.time() < deadline:
            gevent.sleep(0.01)  # until every request is on the wire (a busy machine sends them slowly)
        bridge.loop.call_soon_threadsafe(time.sleep, 0.5)  # the bridge's loop, where the sockets are read
        time.sleep(0.5)  # and the hub, where a sync SDK runs
        values = [p.wait(60) for p in pending]
        read_late = time.time()
        handles = values if operation == "create" else [args[0] for _, *args in calls]
        answered = [adapter.wire_times(h, operation)[1] for h in handles]
        assert read_late - max(answered) > 0.2, "the client was not stalled: the test proves nothing"
        return values

    with start_emulator("fast", faces=FACES[provider], tls=uses_tls(protocol), create_latency=LATENCY,
                        exec_latency=LATENCY, kill_latency=LATENCY) as emu, speaking(protocol, emu):
        adapter = cls(ProviderSettings(base_url=emu.url, users_in_process=SANDBOXES, create_timeout_s=30,
                                       late_create_window_s=0, command_timeout_s=30, destroy_timeout_s=30))
        adapter.prepare()
        assert adapter.wire_verdicts
        warm = adapter.start_call(adapter.create, {"run_id": "warm", "sandbox_idx": "-1"}).wait(60)
        handles = burst("create", [(adapter.create, {"run_id": "busy", "sandbox_idx": str(i)})
                                   for i in range(SANDBOXES)])
        # a first round opens the connections the timed commands then reuse (a command's time includes its
        # connection's set-up when it needs one, TLS handshake and all, by design)
        [p.wait(60) for p in [adapter.start_call(adapter.run, h, "true", 30) for h in handles]]
        results = burst("run", [(adapter.run, h, "node -v", 30) for h in handles])
        assert all(r.exit_code == 0 and r.stdout.startswith("v20.") for r in results)
        assert all(burst("destroy", [(adapter.destroy, h, 30) for h in handles]))
        adapter.start_call(adapter.destroy, warm, 30).wait(60)
        truth = {row["metadata"]["sandbox_idx"]: row for row in emu.sandboxes()
                 if (row.get("metadata") or {}).get("run_id") == "busy"}
        assert spoke(emu.stats(), protocol)
    assert len(truth) == SANDBOXES
    for operation, received, answered in (("create", "t_received", "t_answered"), ("run", "t_start", "t_end"),
                                          ("destroy", "t_kill_received", "t_kill_answered")):
        errors = []
        for i, handle in enumerate(handles):
            sent, answer = adapter.wire_times(handle, operation)
            row = truth[str(i)]
            if operation == "run":
                row = row["execs"][-1]
            errors.append((answer - sent) - (row[answered] - row[received]))
        assert max(abs(e) for e in errors) < TOLERANCE_S, (provider, protocol, operation, sorted(errors)[-5:],
                                                            sorted(errors)[:3], os.getloadavg())
