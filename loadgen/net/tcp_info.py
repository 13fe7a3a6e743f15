"""Fields of the kernel's per-connection TCP_INFO (Linux), read without disturbing the socket.

Why here: two clocks in loadgen need what the kernel saw rather than when an
event loop got round to it: the emulator's arrival time of a request (the age
of the connection's last segment) and wirehttp's connection set-up (when the
handshake completed, retransmitted SYNs included, and how many there were).
Each reads a u32 of ``struct tcp_info``.
"""

from __future__ import annotations

import socket
import struct

_SIZE = 104
_U32 = struct.Struct("I")
STATE = 0  # u8 tcpi_state (read with read_u8)
LAST_DATA_RECV_MS = 52  # tcpi_last_data_recv: ms since the last data segment arrived (jiffy resolution)
LAST_ACK_RECV_MS = 56  # tcpi_last_ack_recv: ms since the last ACK arrived; right after connect, the SYN-ACK
RTT_US = 68  # tcpi_rtt: smoothed round trip, µs; right after connect, the handshake's own (first SYN's only)
TOTAL_RETRANS = 100  # tcpi_total_retrans: retransmitted segments; right after connect, the SYNs
ESTABLISHED = 1


def read_u32(sock, offset: int):
    """The u32 field at ``offset``, or None where the socket or the platform has no TCP_INFO."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
        return _U32.unpack_from(info, offset)[0]
    except (AttributeError, OSError, struct.error):
        return None


def read_u8(sock, offset: int):
    """The u8 field at ``offset`` (``STATE``), or None where there is no TCP_INFO."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)[offset]
    except (AttributeError, OSError, IndexError):
        return None


def read_fields(sock, *offsets: int):
    """Several u32 fields from one TCP_INFO read (None for each where there is none)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
        return tuple(_U32.unpack_from(info, offset)[0] for offset in offsets)
    except (AttributeError, OSError, struct.error):
        return (None,) * len(offsets)
