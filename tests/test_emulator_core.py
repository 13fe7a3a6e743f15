"""The emulator's behaviour model, without sockets: samplers, limits, the
pretend shell, settings, and the core driven by a fake clock."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from loadgen.emulator import core as C
from loadgen.emulator import settings as S
from loadgen.emulator import shell
from loadgen.emulator.latency import Latency, parse_latency
from loadgen.emulator.limits import Capacity, TokenBucket
from tests.emulator_fixtures import FakeLoop

N = 20_000


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- latency samplers ------------------------------------------------------
# Tolerances: with n = 20,000 the sampling error of a median or p95 is well
# under 1-2%; the bounds below leave a wide margin so a fixed seed never sits
# on the edge.


def test_constant_latency_is_exact():
    rng = random.Random(1)
    lat = Latency({"kind": "constant", "ms": 50})
    assert {lat.sample(rng) for _ in range(N)} == {0.05}


def test_uniform_latency_matches_configuration():
    rng = random.Random(2)
    lat = Latency({"kind": "uniform", "min_ms": 10, "max_ms": 90})
    xs = [lat.sample(rng) * 1000 for _ in range(N)]
    assert min(xs) >= 10 and max(xs) <= 90
    assert statistics.mean(xs) == pytest.approx(50, rel=0.02)
    assert quantile(xs, 0.25) == pytest.approx(30, rel=0.03)
    assert quantile(xs, 0.75) == pytest.approx(70, rel=0.03)


def test_lognormal_latency_matches_median_and_p95():
    rng = random.Random(3)
    lat = Latency({"kind": "lognormal", "median_ms": 822, "p95_ms": 965})
    xs = [lat.sample(rng) * 1000 for _ in range(N)]
    assert quantile(xs, 0.50) == pytest.approx(822, rel=0.02)
    assert quantile(xs, 0.95) == pytest.approx(965, rel=0.02)
    assert statistics.mean(xs) == pytest.approx(lat.mean() * 1000, rel=0.02)


def test_empirical_latency_reproduces_the_list():
    rng = random.Random(4)
    values = [10, 20, 20, 400]
    lat = Latency({"kind": "empirical", "values_ms": values})
    xs = [round(lat.sample(rng) * 1000) for _ in range(N)]
    assert set(xs) == {10, 20, 400}
    for v, share in ((10, 0.25), (20, 0.5), (400, 0.25)):
        assert xs.count(v) / N == pytest.approx(share, abs=0.02)


def test_samplers_are_reproducible():
    lat = Latency({"kind": "lognormal", "median_ms": 100, "p95_ms": 300})
    a = [lat.sample(random.Random(9)) for _ in range(3)]
    b = [lat.sample(random.Random(9)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize("text, spec", [
    ("constant:50", {"kind": "constant", "ms": 50}),
    ("uniform:10,90", {"kind": "uniform", "min_ms": 10, "max_ms": 90}),
    ("lognormal:822,965", {"kind": "lognormal", "median_ms": 822, "p95_ms": 965}),
    ("empirical:1,2,3", {"kind": "empirical", "values_ms": [1, 2, 3]}),
    ('{"kind":"constant","ms":5}', {"kind": "constant", "ms": 5}),
    (7, {"kind": "constant", "ms": 7.0}),
])
def test_parse_latency_forms(text, spec):
    assert parse_latency(text) == spec


@pytest.mark.parametrize("bad", ["gauss:1,2", "uniform:9,1", "lognormal:100,50", "constant:-1", "empirical:", {"kind": "x"}])
def test_parse_latency_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        parse_latency(bad)


# -- settings and profiles ------------------------------------------------


def test_profiles_cover_every_provider_and_chaos_every_fault():
    for provider in ("e2b", "daytona", "runloop", "modal", "codesandbox"):
        values = S.resolve(f"realistic-{provider}")
        median, p95 = S.REFERENCE_TTI[provider]
        # create + exec medians add up to the reference median
        total = values["create_latency"]["median_ms"] + values["exec_latency"]["median_ms"]
        assert total == pytest.approx(median, rel=0.01)
    chaos = S.resolve("chaos")
    for name in ("fault_create_5xx", "fault_create_hang", "fault_reset", "fault_readiness", "fault_died", "fault_kill"):
        assert 0 < chaos[name] <= 0.05, name
    fast = S.resolve("fast")
    assert all(fast[n] == 0 for n in S.BY_NAME if n.startswith("fault_"))


def test_overrides_win_and_typos_fail():
    values = S.resolve("chaos", {"fault_kill": 0.5}, {"fault_kill": "0.25", "capacity": "10"})
    assert values["fault_kill"] == 0.25 and values["capacity"] == 10
    with pytest.raises(ValueError, match="unknown setting"):
        S.resolve("fast", overrides={"fault_kil": 0.1})
    with pytest.raises(ValueError, match="probability"):
        S.resolve("fast", overrides={"fault_kill": 2})
    with pytest.raises(ValueError, match="unknown profile"):
        S.resolve("nope")


# -- limits ----------------------------------------------------------------


def test_token_bucket_edge():
    clock = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: clock[0])
    assert [bucket.take() for _ in range(3)] == [None, None, None]
    wait = bucket.take()
    assert wait == pytest.approx(0.5)
    clock[0] += 0.49
    assert bucket.take() is not None
    clock[0] += 0.02
    assert bucket.take() is None
    clock[0] += 100
    assert [bucket.take() for _ in range(4)][:3] == [None, None, None]  # refills only up to burst


def test_capacity_counts_slots():
    cap = Capacity(2)
    assert cap.try_acquire() and cap.try_acquire() and not cap.try_acquire()
    cap.release()
    assert cap.try_acquire()
    assert all(Capacity(None).try_acquire() for _ in range(1000))


# -- the pretend shell -------------------------------------------------------


@pytest.mark.parametrize("command, stdout, code, duration", [
    ("node -v", b"v20.18.1\n", 0, 0),
    ("node --version", b"v20.18.1\n", 0, 0),
    ("echo hello   world", b"hello world\n", 0, 0),
    ("echo -n 'a b'", b"a b", 0, 0),
    ("exit 3", b"", 3, 0),
    ("sleep 2", b"", 0, 2.0),
    ("sleep 0.5 && echo done", b"done\n", 0, 0.5),
    ("false || echo rescued", b"rescued\n", 0, 0),
    ("echo a; exit 4; echo b", b"a\n", 4, 0),
    ("true && false", b"", 1, 0),
])
def test_shell_answers(command, stdout, code, duration):
    r = shell.run(command)
    assert (r.stdout, r.exit_code, r.duration_s) == (stdout, code, duration)


def test_shell_unknown_command_is_127():
    r = shell.run("python3 -c 'print(1)'")
    assert r.exit_code == 127 and b"command not found" in r.stderr


# -- the core, on a fake clock ---------------------------------------------------


def make_core(**overrides):
    loop = FakeLoop()
    values = S.resolve("fast", overrides=overrides)
    core = C.Core(values, loop.call_later, loop.time, wallclock=loop.time)
    return core, loop


def run_creates(order, **overrides):
    core, loop = make_core(**overrides)
    for idx in order:
        core.create("e2b", {"run_id": "r", "sandbox_idx": str(idx)}, "base", 60, lambda out: None)
    loop.advance(10)
    return {int(sb.metadata["sandbox_idx"]): (sb.fault, round(sb.t_answered - sb.t_received, 9) if sb.t_answered else None)
            for sb in core.records}


def test_draws_do_not_depend_on_arrival_order():
    settings = dict(seed=7, fault_create_5xx=0.2, fault_create_hang=0.2, fault_reset=0.2,
                    create_latency={"kind": "lognormal", "median_ms": 100, "p95_ms": 400})
    forward = run_creates(range(300), **settings)
    backward = run_creates(reversed(range(300)), **settings)
    assert forward == backward
    faults = [f for f, _ in forward.values()]
    assert {None, "create_5xx", "create_hang", "reset"} <= set(faults)
    other_seed = run_creates(range(300), **dict(settings, seed=8))
    assert other_seed != forward


def test_without_metadata_the_arrival_counter_seeds_the_draws():
    a, _ = make_core(seed=3, fault_create_5xx=0.5)
    b, _ = make_core(seed=3, fault_create_5xx=0.5)
    for core in (a, b):
        for _ in range(50):
            core.create("e2b", None, "base", None, lambda out: None)
    assert [sb.fault for sb in a.records] == [sb.fault for sb in b.records]


def test_lifecycle_states_and_expiry_on_fake_clock():
    core, loop = make_core(create_latency={"kind": "constant", "ms": 100})
    outs = []
    core.create("e2b", None, "base", 2, outs.append)
    assert outs == [] and core.records[0].state == C.REQUESTED
    loop.advance(0.1)
    (out,) = outs
    assert out.kind == C.OK and out.sandbox.state == C.RUNNING and core.live == 1
    loop.advance(1.95)
    assert out.sandbox.state == C.RUNNING
    loop.advance(0.1)
    assert out.sandbox.state == C.EXPIRED and core.live == 0 and core.totals["expired"] == 1


def test_died_after_first_command_with_delay():
    core, loop = make_core(fault_died=1.0, died_delay_s=5)
    core.create("e2b", None, "base", 60, lambda out: None)
    sb = core.records[0]
    events = []
    core.exec(sb.sandbox_id, "node -v", events.append)
    assert [e.kind for e in events] == [C.STARTED, C.ENDED]
    loop.advance(4.9)
    assert sb.state == C.RUNNING
    loop.advance(0.2)
    assert sb.state == C.DIED and sb.fault == "died"
    events.clear()
    core.exec(sb.sandbox_id, "node -v", events.append)
    assert [e.kind for e in events] == [C.GONE]


def test_queue_mode_admits_in_arrival_order_when_a_slot_frees():
    core, loop = make_core(capacity=1, capacity_mode="queue")
    outs = []
    for _ in range(3):
        core.create("e2b", None, "base", 60, outs.append)
    assert [o.kind for o in outs] == [C.OK] and core.stats()["queued"] == 2
    core.kill(outs[0].sandbox.sandbox_id, lambda out: None)
    assert [o.sandbox.seq for o in outs] == [0, 1]
    core.kill(outs[1].sandbox.sandbox_id, lambda out: None)
    assert [o.sandbox.seq for o in outs] == [0, 1, 2] and core.stats()["queued"] == 0


def test_a_long_command_is_broken_when_its_sandbox_ends():
    core, loop = make_core()
    core.create("e2b", None, "base", 60, lambda out: None)
    sb = core.records[0]
    events = []
    core.exec(sb.sandbox_id, "sleep 30", events.append)
    assert [e.kind for e in events] == [C.STARTED]
    core.kill(sb.sandbox_id, lambda out: None)
    assert [e.kind for e in events] == [C.STARTED, C.ERROR] and events[1].code == "unavailable"
    loop.advance(60)
    assert len(events) == 2
