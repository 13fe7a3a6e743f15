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
its SSE stream, terminate and wait); against the emulator the first of each
is answered once the work is done (the exec's start once the command has
run) and the second at once. The stall comes while the first answers
arrive, so the second requests go out half a second late: that gap is the
generator's, and is left out of the latency (loadgen.net.exchange,
Phase.span).
"""

from __future__ import annotations

import os
import time

import gevent
import pytest

from loadgen.emulator import start_emulator
from loadgen.net.aio import get_bridge
from loadgen.net.exchange import Phase
from loadgen.providers import get_provider_class
from loadgen.providers.base import ProviderSettings
from tests.protocol_fixtures import speaking, spoke, uses_tls
from tests.wire_timing import OPERATIONS, wire_errors

pytestmark = pytest.mark.timeout(240)

FACES = {"daytona": "e2b,daytona,runloop", "runloop": "e2b,daytona,runloop", "codesandbox": "codesandbox"}
SANDBOXES = 30
TOLERANCE_S = 0.015
LATENCY = "uniform:300,400"  # long enough for a loaded machine to send every request first


@pytest.mark.parametrize("protocol", ["h1", "tls"])
@pytest.mark.parametrize("provider", ["daytona", "runloop", "codesandbox"])
def test_latencies_are_the_wire_even_when_the_client_is_stalled(provider, protocol, monkeypatch):
    cls = get_provider_class(provider)
    for name in cls.required_env:
        monkeypatch.setenv(name, f"{provider}_test_key")
    for name in ("LOADGEN_DAYTONA_TRANSPORT", "LOADGEN_RUNLOOP_TRANSPORT", "LOADGEN_CODESANDBOX_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    bridge = get_bridge()
    stalls = {}

    def burst(operation, calls):
        phases = [Phase() for _ in calls]  # (as the lifecycle's, without deadlines: what was sent shows on them)
        pending = [adapter.start_call(method, *args, phase=phase) for phase, (method, *args) in zip(phases, calls)]
        deadline = time.time() + 60
        while not all(p.wire_started is not None for p in phases) and time.time() < deadline:
            gevent.sleep(0.005)  # until every request is on the wire (a busy machine sends them slowly)
        stalled = time.time()
        bridge.loop.call_soon_threadsafe(time.sleep, 0.5)  # the bridge's loop, where the sockets are read
        time.sleep(0.5)  # and the hub, where a sync SDK runs
        stalls[operation] = (stalled, time.time())
        return [p.wait(60) for p in pending]

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
    during = {}
    for operation, _, answered in OPERATIONS:  # the emulator answered while this process was stalled
        start, end = stalls[operation]
        rows = [row["execs"][-1] if operation == "run" else row for row in truth.values()]
        during[operation] = sum(start < row[answered] < end for row in rows)
    assert min(during.values()) >= 5, (during, "the client was not stalled: the test proves nothing")
    for operation, errors in wire_errors(adapter, handles, truth).items():
        assert max(abs(e) for e in errors) < TOLERANCE_S, (provider, protocol, operation, sorted(errors)[-5:],
                                                            sorted(errors)[:3], os.getloadavg())


TRANSPORT_VARIABLES = {"daytona": "LOADGEN_DAYTONA_TRANSPORT", "runloop": "LOADGEN_RUNLOOP_TRANSPORT",
                       "codesandbox": "LOADGEN_CODESANDBOX_TRANSPORT"}


@pytest.mark.parametrize("provider", ["daytona", "runloop", "codesandbox"])
def test_the_escape_hatch_sends_on_the_sdks_own_transport(provider, monkeypatch):
    """LOADGEN_<PROVIDER>_TRANSPORT=sdk: a whole lifecycle on the SDK's own HTTP stack, timed around the
    SDK call (no wire times, no wire verdicts)."""
    cls = get_provider_class(provider)
    for name in cls.required_env:
        monkeypatch.setenv(name, f"{provider}_test_key")
    monkeypatch.setenv(TRANSPORT_VARIABLES[provider], "sdk")
    with start_emulator("fast", faces=FACES[provider]) as emu:
        adapter = cls(ProviderSettings(base_url=emu.url, users_in_process=2))
        adapter.prepare()
        assert not adapter.wire_verdicts
        handle = adapter.start_call(adapter.create, {"run_id": "hatch", "sandbox_idx": "0"}).wait(60)
        result = adapter.start_call(adapter.run, handle, "node -v", 10).wait(60)
        destroyed = adapter.start_call(adapter.destroy, handle, 10).wait(60)
        stats = emu.stats()
    assert (result.exit_code, result.stdout.strip(), destroyed) == (0, "v20.18.1", True)
    assert stats["created"] == 1 and stats["live"] == 0
    assert all(adapter.wire_times(handle, op) is None for op in ("create", "run", "destroy"))
