"""Fields of the kernel's per-connection TCP_INFO (Linux), read without disturbing the socket.

Why here: two clocks in loadgen need what the kernel saw rather than when an
event loop got round to it: the emulator's arrival time of a request (the age
of the connection's last segment) and wirehttp's connection set-up (the
handshake's round trip). Both read one u32 of ``struct tcp_info``.
"""

from __future__ import annotations

import socket
import struct

_SIZE = 104
_U32 = struct.Struct("I")
LAST_DATA_RECV_MS = 52  # tcpi_last_data_recv: ms since the last data segment arrived (jiffy resolution)
RTT_US = 68  # tcpi_rtt: smoothed round trip, µs; right after connect, the handshake's own


def read_u32(sock, offset: int):
    """The u32 field at ``offset``, or None where the socket or the platform has no TCP_INFO."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
        return _U32.unpack_from(info, offset)[0]
    except (AttributeError, OSError, struct.error):
        return None
