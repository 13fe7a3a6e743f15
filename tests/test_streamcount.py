"""The amortised open-stream count (loadgen/net/streamcount.py) against h2's own, on real h2 connections.

A client connection and a server connection exchange their bytes in memory: the server's SETTINGS
set the stream limit, its answers close streams. The amortised count must refuse a new stream at
exactly the points h2's own count does, still drop closed streams from the connection's table, and
walk the streams a few times in a burst instead of once per new stream.
"""

import random

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import TooManyStreamsError
from h2.settings import SettingCodes

from loadgen.net import streamcount

_REQUEST = [(":method", "POST"), (":path", "/modal.client.ModalClient/SandboxCreate"), (":scheme", "http"),
            (":authority", "127.0.0.1")]
_ANSWER = [(":status", "200"), ("grpc-status", "0")]


class _WalkCounting(H2Connection):
    """h2's connection, counting its walks of the stream table (h2's own method, unchanged)."""

    walks = 0

    def _open_streams(self, remainder):
        type(self).walks += 1
        return super()._open_streams(remainder)


def _connected(client: H2Connection, max_streams=None) -> H2Connection:
    """A server for ``client``, SETTINGS exchanged (its stream limit ``max_streams``, or none)."""
    server = H2Connection(H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    if max_streams is not None:
        server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
    _pump(client, server)
    return server


def _pump(client: H2Connection, server: H2Connection) -> None:
    """Carry the bytes each side has to send to the other, until neither has any."""
    while True:
        to_server, to_client = client.data_to_send(), server.data_to_send()
        if not to_server and not to_client:
            return
        if to_server:
            server.receive_data(to_server)
        if to_client:
            client.receive_data(to_client)


def _open(client: H2Connection) -> bool:
    """Open one stream (a whole request): True, or False where the stream limit refused it."""
    try:
        client.send_headers(client.get_next_available_stream_id(), _REQUEST, end_stream=True)
    except TooManyStreamsError:
        return False
    return True


def _answer(server: H2Connection, client: H2Connection, how_many: int, rng: random.Random) -> None:
    """The server answers (ends) ``how_many`` of the streams waiting for it, picked at random."""
    waiting = sorted(sid for sid, stream in server.streams.items() if stream.open)
    for sid in rng.sample(waiting, min(how_many, len(waiting))):
        server.send_headers(sid, _ANSWER, end_stream=True)
    _pump(client, server)


@pytest.mark.parametrize("limit", [1, 7, 64])
def test_a_stream_is_refused_exactly_where_h2s_own_count_refuses_it(limit):
    h2s = H2Connection(H2Configuration(client_side=True))
    amortised = H2Connection(H2Configuration(client_side=True))
    streamcount.install(amortised)
    pairs = [(h2s, _connected(h2s, limit)), (amortised, _connected(amortised, limit))]
    outcomes = {id(h2s): [], id(amortised): []}
    for step in range(200):
        burst = random.Random(step).randint(1, 3 * limit)
        answered = random.Random(-step).randint(0, 2 * limit)
        for client, server in pairs:  # the same steps on both: each with its own, equally seeded, picks
            outcomes[id(client)].append([_open(client) for _ in range(burst)])
            _answer(server, client, answered, random.Random(step))
    assert outcomes[id(amortised)] == outcomes[id(h2s)]
    refused = sum(row.count(False) for row in outcomes[id(h2s)])
    assert refused > 0  # (the limit was reached, so the exact count decided somewhere)


def test_closed_streams_still_leave_the_connections_table():
    client = H2Connection(H2Configuration(client_side=True))
    streamcount.install(client)
    server = _connected(client)
    rng = random.Random(1)
    largest = 0
    for _ in range(5_000):
        assert _open(client)
        _answer(server, client, 1, rng)
        largest = max(largest, len(client.streams))
    assert largest <= 2 * 64 + 1  # every walk drops the ones that closed since the last


class _AmortisedWalkCounting(streamcount.AmortisedCountH2Connection, _WalkCounting):
    """The amortised count over h2's connection, counting h2's walks."""


def test_a_burst_walks_the_streams_a_few_times_instead_of_once_per_new_stream():
    walks = {}
    for kind in (_WalkCounting, _AmortisedWalkCounting):
        _WalkCounting.walks = 0
        client = kind(H2Configuration(client_side=True))
        _connected(client, 10_000)
        for _ in range(2_000):
            assert _open(client)
        walks[kind] = _WalkCounting.walks
    assert walks[_WalkCounting] == 2_000  # h2's own: a walk of every open stream per new one
    assert walks[_AmortisedWalkCounting] <= 8  # after 64, 128, 256, ... new streams: 5


def test_only_a_fresh_client_connection_takes_the_amortised_count():
    with pytest.raises(ValueError):
        streamcount.install(H2Connection(H2Configuration(client_side=False)))
    with pytest.raises(TypeError):
        streamcount.install(_WalkCounting(H2Configuration(client_side=True)))
    used = H2Connection(H2Configuration(client_side=True))
    _connected(used)
    assert _open(used)
    with pytest.raises(ValueError):
        streamcount.install(used)  # (its open streams are not in the count)
