"""The schedule on its own: start offsets per mode, option checks, and the sequential turn."""

import math
import time
from types import SimpleNamespace

import gevent
import pytest

from loadgen.engine.abort import Abort
from loadgen.engine.barrier import BarrierGate
from loadgen.engine.schedule import ARRIVAL, Schedule, Sequencer, StartGate, schedule_from_options


def test_offsets_per_mode():
    assert [Schedule("burst").offset_s(i) for i in range(3)] == [0, 0, 0]
    assert [Schedule("staggered", 0.2).offset_s(i) for i in range(3)] == [0, 0.2, 0.4]
    assert [Schedule(ARRIVAL, rate_per_s=20).offset_s(i) for i in range(3)] == [0, 0.05, 0.1]
    assert Schedule(ARRIVAL, rate_per_s=20).span_s(200) == pytest.approx(9.95)
    assert Schedule("sequential").span_s(100) == 0


def test_a_linear_ramp_has_the_cumulative_count_of_a_linearly_rising_rate():
    rate, ramp = 10.0, 4.0
    sched = Schedule(ARRIVAL, rate_per_s=rate, ramp_s=ramp)
    offsets = [sched.offset_s(i) for i in range(100)]
    assert offsets == sorted(offsets) and offsets[0] == 0

    def expected_count(t):  # arrivals due by t, the first at t = 0
        n = rate * t * t / (2 * ramp) if t <= ramp else rate * ramp / 2 + rate * (t - ramp)
        return math.floor(n + 1e-9) + 1

    for k in range(0, 100):
        t = k * 0.1
        assert sum(1 for o in offsets if o <= t + 1e-9) == expected_count(t), t
    # after the ramp the rate is the full rate
    late = [o for o in offsets if o > ramp + 1e-9]
    assert all(b - a == pytest.approx(1 / rate) for a, b in zip(late, late[1:]))


def _options(**kw):
    base = dict(mode="burst", stagger_ms=200.0, arrival_rate=None, ramp=0.0)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("kw, message", [
    (dict(mode="staggered", arrival_rate=5.0), "cannot be combined with --mode staggered"),
    (dict(ramp=10.0), "--ramp needs --arrival-rate"),
    (dict(arrival_rate=0.0), "--arrival-rate must be > 0"),
    (dict(mode="staggered", stagger_ms=-1.0), "--stagger-ms must be > 0"),
    (dict(arrival_rate=5.0, ramp=-1.0), "--ramp must be >= 0"),
    (dict(concurrency=0, mode="sequential"), "--concurrency must be a whole number >= 1"),
    (dict(concurrency=4), "--concurrency is for --mode sequential"),
])
def test_bad_schedules_are_refused_with_the_option_named(kw, message):
    errors = []
    schedule_from_options(_options(**kw), errors)
    assert any(message in e for e in errors), errors


def test_good_schedules():
    errors = []
    assert schedule_from_options(_options(mode="staggered", stagger_ms=50.0), errors) == Schedule("staggered", 0.05)
    assert schedule_from_options(_options(arrival_rate=5.0, ramp=2.0), errors) == Schedule(ARRIVAL, 0.2, 5.0, 2.0)
    assert schedule_from_options(_options(mode="sequential", concurrency=16), errors) == \
        Schedule("sequential", 0.2, concurrency=16)
    assert errors == []


def test_sequencer_skips_the_sandboxes_of_a_lost_worker():
    seq = Sequencer(t0=100.0)
    assert not seq.advance(set())
    assert seq.advance({0, 1}, now=101.0) and seq.message() == {"turn": 2, "granted_at": 101.0}
    # 2 and 3 belonged to a worker that is gone: their records will never come
    assert seq.advance({0, 1}, lost=lambda idx: idx in (2, 3), now=102.0) and seq.turn == 4


def test_sequencer_with_concurrency_keeps_exactly_that_many_lives_granted_and_not_over():
    seq = Sequencer(t0=100.0, concurrency=3)
    assert seq.message() == {"turn": 2, "granted_at": 100.0}  # 0, 1 and 2 start at t0
    assert not seq.advance(set())
    # 1 ends first: one more may start (3), whatever 0 is still doing
    assert seq.advance({1}, now=101.0) and seq.message() == {"turn": 3, "granted_at": 101.0}
    assert seq.advance({1, 2, 3}, now=102.0) and seq.turn == 5  # 0, 4, 5 alive
    # 0's worker is lost and so is 6 (granted on 0's end): each frees its slot
    assert seq.advance({1, 2, 3}, lost=lambda idx: idx in (0, 6), now=103.0) and seq.turn == 7
    over = {1, 2, 3, 0, 6}
    assert len([i for i in range(seq.turn + 1) if i not in over]) == 3  # 4, 5, 7
    assert not seq.advance({1, 2, 3}, lost=lambda idx: idx in (0, 6))


def test_start_gate_releases_lives_in_turn_and_an_abort_ends_the_wait():
    gate = StartGate(Schedule("sequential"), clock_offset=lambda: 0.0)
    abort = Abort()
    started = []

    def life(idx):
        due = gate.wait(idx, abort)
        started.append((idx, due))

    lives = [gevent.spawn(life, i) for i in range(3)]
    gevent.sleep(0.01)
    assert started == [] and gate.waiting == 3  # no t0 yet
    gate.set_origin(50.0)
    gevent.sleep(0.01)
    assert started == [(0, 50.0)]
    gate.grant(1, 51.0)
    gate.grant(0, 99.0)  # a repeated, older grant changes nothing
    gevent.sleep(0.01)
    assert started == [(0, 50.0), (1, 51.0)]
    abort.set()
    gevent.joinall(lives, timeout=2)
    assert started == [(0, 50.0), (1, 51.0), (2, None)]


def test_start_gate_sleeps_until_the_due_time_on_the_masters_clock():
    offset = 0.3  # this worker's clock runs 0.3 s ahead of the master's
    gate = StartGate(Schedule("staggered", 0.1), clock_offset=lambda: offset)
    abort = Abort()
    t0 = time.time() - offset  # "now" on the master's clock
    gate.set_origin(t0)
    due = gate.wait(2, abort)
    assert due == pytest.approx(t0 + 0.2)
    assert time.time() - offset >= due - 0.002


def test_an_abort_ends_every_hold_and_scheduled_start_at_once_and_keeps_no_waiter():
    """2,000 lives held at the barrier and 2,000 waiting for a start 60 s away: one abort ends all 4,000
    waits; waits that ended by themselves leave nothing registered on the abort."""
    abort = Abort()
    holds, starts = BarrierGate(min_hold_s=60.0), StartGate(Schedule("staggered", 60.0), clock_offset=lambda: 0.0)
    starts.set_origin(time.time())
    quick = [gevent.spawn(abort.sleep, 0.01) for _ in range(100)]
    gevent.joinall(quick, timeout=5)
    assert all(g.value is False for g in quick) and not abort._wakes  # slept out: nothing left behind
    holds.release({"released_at": time.time()})
    ended = []
    lives = [gevent.spawn(lambda: (holds.hold(i, time.time(), abort), ended.append("hold"))) for i in range(2000)]
    lives += [gevent.spawn(lambda i=i: ended.append(starts.wait(i + 1, abort))) for i in range(2000)]
    gevent.sleep(0.1)
    assert ended == []
    abort.set()
    gevent.joinall(lives, timeout=30)
    assert len(ended) == 4000 and ended.count("hold") == 2000 and ended.count(None) == 2000
