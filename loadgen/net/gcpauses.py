"""Garbage collection in short pauses, for a process whose reader thread must keep reading.

Why: CPython's cyclic collector holds the GIL for a whole pass, and while it
does, wiregrpc's reader thread (``loadgen.net.wiregrpc._Reader``) cannot read.
On a connection that many streams share, segments that wait unread merge in
the receive queue, and the kernel dates the merged buffer by its newest
segment: every request or answer in it gets the latest one's time. Measured
with bench/measurement_error.py at 2,000 concurrent modal creates: the
emulator's full collections walked ~550,000 live objects (the creates in
flight) for 300-630 ms each, eleven of them in a 30 s run; the client, at the
burst thresholds of ``loadgen.engine.lifecycle`` (100,000 objects for the
youngest generation), paused 100-340 ms per young pass. Requests arriving in
such a pause were dated up to 230 ms late (BENCHMARKS.md §9).

So, once per process (``keep_pauses_short``, when the reader thread starts):

- the objects alive then (imports, set-up) are frozen out of every later pass
  (``gc.freeze``);
- the young generations collect at Python's default thresholds (700, 10):
  passes over a few thousand objects at most;
- full collections do not run by themselves: the reader thread has one run
  (``due``, ``collect``) once no socket has had anything to read for
  ``IDLE_S`` (and ``GROWTH`` young passes have promoted objects since the
  last), or every ``MAX_INTERVAL_S`` under traffic that never pauses.

Garbage without cycles is freed at once by reference counting, as always;
only cyclic garbage old enough to have reached the oldest generation waits
for the next full collection (a few thousand objects per 2,000-sandbox burst
in the emulator). ``LOADGEN_GC_THRESHOLD`` is the generator's setting and
does not apply to a server: the emulator inherits the environment of whoever
starts it, and without this policy its stamps were 23-43 ms off again.

A generator whose answers the reader thread stamps (modal's, on wiregrpc)
takes the same policy when its first connection opens
(``keep_a_clients_pauses_short``) instead of the burst thresholds of
``loadgen.engine.lifecycle``, unless ``LOADGEN_GC_THRESHOLD`` names
thresholds of its own: with the burst thresholds a young pass held the GIL
for 50-340 ms, and answers that landed meanwhile shared one stamp (§9).
"""

from __future__ import annotations

import gc
import os
import time

GENERATOR_SETTING_ENV = "LOADGEN_GC_THRESHOLD"  # the generator's own thresholds (loadgen.engine.lifecycle)
IDLE_S = 1.0
MAX_INTERVAL_S = 600.0
GROWTH = 10  # young passes promoted into the oldest generation (at most 7,700 objects each) before a full one
YOUNG_THRESHOLDS = (700, 10)
_NEVER = 2 ** 31 - 1  # the oldest generation's threshold: no full collection by itself

active = False
_client_declined = False  # LOADGEN_GC_THRESHOLD was set: the generator's own thresholds stand
_last_full = 0.0
_scheduled = False


def keep_pauses_short() -> bool:
    """Switch this process to short pauses (once; see the module's doc). True when on."""
    global active, _last_full
    if active:
        return True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*YOUNG_THRESHOLDS, _NEVER)
    _last_full = time.monotonic()
    active = True
    return True


def keep_a_clients_pauses_short() -> bool:
    """A generator's short pauses (see the module's doc), unless LOADGEN_GC_THRESHOLD says otherwise
    (asked once per process: every connection the client opens asks)."""
    global _client_declined
    if active or _client_declined:
        return active
    if os.environ.get(GENERATOR_SETTING_ENV, "").strip():
        _client_declined = True
        return False
    return keep_pauses_short()


def due(idle: bool) -> bool:
    """Whether a full collection should be scheduled now (True once until it has run): GROWTH young
    passes have promoted objects into the oldest generation since the last one, and the sockets are
    idle or the last one was MAX_INTERVAL_S ago."""
    global _scheduled
    if not active or _scheduled or gc.get_count()[2] < GROWTH:
        return False
    if idle or time.monotonic() - _last_full > MAX_INTERVAL_S:
        _scheduled = True
        return True
    return False


def collect() -> None:
    """A full collection (on an event loop's thread, so that finalizers run where they would anyway)."""
    global _last_full, _scheduled
    gc.collect()
    _last_full = time.monotonic()
    _scheduled = False
