"""Verdicts and times on the wire: a busy generator never turns the provider's answer into a timeout."""

from __future__ import annotations

import os
import time

from loadgen.emulator import start_emulator
from tests.locust_harness import REPO, run_locust

LOCUSTFILES = REPO / "tests" / "locustfiles"


def test_answers_that_arrive_during_a_stall_longer_than_the_timeout_are_successes(tmp_path):
    """Hub and bridge blocked 2.5 s with a 1 s command timeout, while 40 readiness answers
    (400 ms each) arrive: every record is a success whose latency is the wire's, and
    the generator's share shows the stall."""
    stalled_at = tmp_path / "stalled"
    with start_emulator("fast", exec_latency="constant:400") as emu:
        run = run_locust(str(LOCUSTFILES / "stalled.py"), 40, tmp_path / "runs",
                         ["--emulator-url", emu.url, "--command-timeout", "1"],
                         env={"TEST_STALL_S": "2.5", "TEST_STALLED_AT_FILE": str(stalled_at)})
        truth = {int(r["metadata"]["sandbox_idx"]): r for r in emu.sandboxes()}
    assert run.returncode == 0, run.output[-3000:]
    stall_start, stall_end = map(float, stalled_at.read_text().split())
    records = run.records
    assert len(records) == 40
    assert all(r["status"] == "success" and r["failure_class"] is None for r in records), \
        [(r["sandbox_idx"], r["status"], r["error_message"]) for r in records if r["status"] != "success"]
    answered_in_stall = 0
    for r in records:
        assert r["wire_timed"] is True
        server = truth[r["sandbox_idx"]]["execs"][0]
        server_ms = (server["t_end"] - server["t_start"]) * 1000.0
        exchange_ms = r["first_command_ms"] - r["readiness_setup_ms"]
        assert abs(exchange_ms - server_ms) < 15.0, (r["sandbox_idx"], exchange_ms, server_ms)
        if stall_start < server["t_end"] < stall_end:
            answered_in_stall += 1
            assert r["readiness_gen_after_ms"] > 500.0  # read late, after the stall
    assert answered_in_stall >= 10, "the answers did not arrive during the stall: the test proves nothing"
    meta = run.meta
    assert meta["generator_share"]["delayed"] >= answered_in_stall
    assert meta["generator_failures"] == 0 and meta["success_rate"] == 1.0


def test_a_stall_longer_than_the_verdict_window_still_ends_in_the_wires_verdict(tmp_path):
    """The bridge's loop blocked 6 s, twice the lifecycle's window for a verdict (2 x the 1 s timeout + 1 s),
    while the hub runs on and 30 readiness answers arrive: the requests were on the wire, so the
    transport was busy, not stuck, and every record is the wire's success, none the generator's stall."""
    with start_emulator("fast", exec_latency="constant:400") as emu:
        run = run_locust(str(LOCUSTFILES / "stalled.py"), 30, tmp_path / "runs",
                         ["--emulator-url", emu.url, "--command-timeout", "1"],
                         env={"TEST_STALL_S": "6", "TEST_STALL_HUB": "0", "TEST_VERDICT_GRACE_S": "1"})
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    assert len(records) == 30
    assert all(r["status"] == "success" for r in records), \
        [(r["sandbox_idx"], r["status"], r["error_message"]) for r in records if r["status"] != "success"]
    assert max(r["readiness_gen_after_ms"] for r in records) > 3000.0  # read after the window had passed
    assert run.meta["generator_failures"] == 0


def test_a_dropped_syn_is_in_the_measured_readiness(tmp_path):
    """The sandbox's host drops the first SYN (a full listen queue): readiness includes the
    kernel's 1 s retransmission, and its set-up equals the handshake a packet capture saw
    (first SYN to SYN-ACK) within 20 ms."""
    import threading

    from tests.syn_faults import BacklogProxy, HandshakeCapture

    with start_emulator("fast") as emu:
        host, port = emu.url.rsplit("/", 1)[-1].rsplit(":", 1)
        proxy = BacklogProxy((host, int(port)))
        capture = HandshakeCapture(proxy.port)
        try:
            def open_after_the_first_syn():
                while not any(p not in proxy.blocker_ports for p in capture.first_syn):
                    time.sleep(0.005)
                time.sleep(0.3)  # the first SYN was dropped; the retransmission, 1 s after it, gets in
                proxy.open()

            opener = threading.Thread(target=open_after_the_first_syn, daemon=True)
            opener.start()
            run = run_locust(str(LOCUSTFILES / "data_plane_via.py"), 1, tmp_path / "runs",
                             ["--emulator-url", emu.url], env={"TEST_SANDBOX_URL": proxy.url})
            opener.join(5)
            clients = [p for p in capture.first_syn if p not in proxy.blocker_ports]
            truth_s = capture.handshake_s(clients[0])
            syns = capture.syns[clients[0]]
        finally:
            capture.close()
            proxy.close()
    assert run.returncode == 0, run.output[-3000:]
    (record,) = run.records
    assert record["status"] == "success", record
    assert len(clients) == 1 and syns >= 2 and truth_s > 0.9, (clients, syns, truth_s)
    assert abs(record["readiness_setup_ms"] - truth_s * 1000.0) <= 20.0, (record["readiness_setup_ms"], truth_s)
    assert record["first_command_ms"] >= record["readiness_setup_ms"]
    assert record["syn_retransmits"] == syns - 1


def test_a_verdict_the_loop_finished_is_taken_in_before_the_busy_hub_wakes_for_it():
    """The lifecycle's last look before it calls a phase the generator's stall: a call the bridge's loop
    finished while the hub was held (its wake-up queued behind every other ready greenlet) is
    settled by deliver(), so a slow hub does not turn the provider's in-time answer into a failure."""
    import gevent.monkey

    from loadgen.net.aio import get_bridge

    real_sleep = gevent.monkey.get_original("time", "sleep")
    bridge = get_bridge()

    async def answer():
        return "answered"

    pending = bridge.submit(answer())
    deadline = time.monotonic() + 60
    while not bridge._completed and time.monotonic() < deadline:  # the hub held, never yielding to gevent
        real_sleep(0.01)
    assert bridge._completed, "the loop thread did not finish the call within 60 s"
    assert not pending.done  # finished on the loop, not yet taken in by the hub
    bridge.deliver()
    assert pending.done and pending.result() == "answered"
