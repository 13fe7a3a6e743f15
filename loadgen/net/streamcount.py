"""h2's client connection with an amortised count of its open streams.

Why: before it opens a stream, h2 (4.x) checks the server's
SETTINGS_MAX_CONCURRENT_STREAMS by counting the open streams, and the count
walks every stream the connection holds (dropping the closed ones as it
goes). modal's SDK multiplexes every sandbox of a process over one
control-plane connection, so a burst of N creates walks N streams N times:
at 2,000 sandboxes per process that was 5 % of a lifecycle's client CPU
(BENCHMARKS.md §9), and it grows with the sandboxes per process.

What changes: nothing that is sent or refused. ``open_outbound_streams`` is
only read when a new stream is about to be opened, so the last exact count
plus the streams opened since is an upper bound on the open streams. While
that bound is below the server's limit the check passes without a walk;
when it reaches the limit, the exact count decides, as h2's would. The walk
also runs once as many streams were opened as were open at the last walk,
so closed streams still leave the connection's table (amortised: one walk
of n streams per n new ones).
"""

from __future__ import annotations

from h2.connection import H2Connection

_WALK_EVERY_AT_LEAST = 64  # new streams between walks, at least (a small table is walked often anyway)


class AmortisedCountH2Connection(H2Connection):
    """An h2 connection whose outbound stream count walks its streams only when the answer could matter."""

    _counted = 0  # open outbound streams at the last walk
    _opened_since = 0  # streams asked for since (each read of the count precedes one new stream)

    @property
    def open_outbound_streams(self) -> int:
        limit = self.remote_settings.max_concurrent_streams
        bound = self._counted + self._opened_since
        if bound + 1 > limit or self._opened_since >= max(_WALK_EVERY_AT_LEAST, self._counted):
            self._counted = bound = H2Connection.open_outbound_streams.fget(self)  # exact, and drops closed ones
            self._opened_since = 0
        self._opened_since += 1  # (the caller opens a stream next, or is refused and the bound only grows)
        return bound


def install(connection: H2Connection) -> None:
    """Give ``connection`` (a client's, before its first stream) the amortised count."""
    if type(connection) is not H2Connection:
        raise TypeError(f"expected h2's own H2Connection, got {type(connection).__name__}")
    if not connection.config.client_side:
        raise ValueError("the amortised count is a client's: a server counts the streams its peer opens")
    if connection.streams:
        raise ValueError("the amortised count starts with no stream open: install it before the first")
    connection.__class__ = AmortisedCountH2Connection
