"""Non-blocking socket reads with their kernel receive stamps, made without releasing the GIL.

Why: wiregrpc's reader thread reads a connection's waiting bytes in cuts (one
MSG_PEEK, then one recvmsg per stream-ending frame, so that each frame keeps
the stamp of its own segment). Python's socket methods release the GIL around
every such call, and a thread that released it waits a switch interval (5 ms)
to get it back whenever another thread wants it. With the process's event
loop busy, that cost every cut of every ready connection 5 ms: measured in the
emulator's modal face at 2,000 concurrent creates, one pass over 71 ready
connections took 1.5 s, and a connection's next segment merged meanwhile with
the unread one in its receive queue, which the kernel then dates by the newer
arrival (stamps up to 229 ms late; the client's transmit stamps, read with
SO_TIMESTAMPING, showed those bytes had left the client at once). The calls
here are libc's ``recv``/``recvmsg`` through ``ctypes.PyDLL``, which keeps the
GIL: with MSG_DONTWAIT they never block, take a few microseconds, and a whole
pass reads every cut in one hold of the GIL.

Without libc (not Linux, no ctypes), ``available`` is False and callers use the
socket methods.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys
from typing import Optional

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value (SCM_TIMESTAMPNS is the same)
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
_MSG_PEEK = socket.MSG_PEEK
_CMSG_HEADER = struct.Struct("Nii")  # cmsg_len (size_t), cmsg_level, cmsg_type
_TIMESPEC = struct.Struct("qq")
_CONTROL_SIZE = 128  # SO_TIMESTAMPNS's, and room for an SCM_TIMESTAMPING a socket may also carry


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


def _libc():
    try:
        # None: the symbols already loaded into this process (libc's among them), found without
        # ctypes.util.find_library, which runs a subprocess (refused by gevent off the main thread)
        lib = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL is kept across the call
        recv, recvmsg = lib.recv, lib.recvmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    recv.restype = ctypes.c_ssize_t
    recvmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Msghdr), ctypes.c_int]
    recvmsg.restype = ctypes.c_ssize_t
    return recv, recvmsg


_calls = _libc() if sys.platform.startswith("linux") else None  # (the msghdr layout and the constants are Linux's)
available = _calls is not None


class Reader:
    """Reads into one fixed buffer (a bytearray, whose address is taken once); one per thread."""

    __slots__ = ("buffer", "view", "_base", "_iov", "_msg", "_control", "_control_addr", "_keep")

    def __init__(self, buffer: bytearray):
        self.buffer = buffer
        self.view = memoryview(buffer)
        self._keep = (ctypes.c_char * len(buffer)).from_buffer(buffer)  # pins the buffer (no resize)
        self._base = ctypes.addressof(self._keep)
        self._control = ctypes.create_string_buffer(_CONTROL_SIZE)
        self._control_addr = ctypes.addressof(self._control)
        self._iov = _Iovec()
        self._msg = _Msghdr()
        self._msg.msg_iov = ctypes.pointer(self._iov)
        self._msg.msg_iovlen = 1

    def peek(self, fd: int, size: int) -> Optional[int]:
        """Bytes waiting (copied to the buffer's start, left in the socket); None when none are, 0 at EOF."""
        while True:
            n = _calls[0](fd, self._base, size, _MSG_PEEK | _MSG_DONTWAIT)
            if n >= 0:
                return n
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                return None
            if code != errno.EINTR:
                raise OSError(code, f"recv: {errno.errorcode.get(code, code)}")

    def read(self, fd: int, start: int, size: int) -> tuple:
        """Read up to ``size`` bytes into the buffer at ``start``: (count, the kernel's receive stamp or None)."""
        msg, iov = self._msg, self._iov
        while True:
            iov.iov_base = self._base + start
            iov.iov_len = size
            msg.msg_control = self._control_addr
            msg.msg_controllen = _CONTROL_SIZE
            msg.msg_flags = 0
            n = _calls[1](fd, msg, _MSG_DONTWAIT)
            if n >= 0:
                break
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            raise OSError(code, f"recvmsg: {errno.errorcode.get(code, code)}")
        stamp = None
        length = msg.msg_controllen
        if length:
            raw = self._control.raw[:length]
            pos = 0
            while pos + _CMSG_HEADER.size <= length:
                cmsg_len, level, kind = _CMSG_HEADER.unpack_from(raw, pos)
                if cmsg_len < _CMSG_HEADER.size:
                    break
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and cmsg_len >= _CMSG_HEADER.size + 16:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(raw, pos + _CMSG_HEADER.size)
                    stamp = seconds + nanoseconds * 1e-9
                    break
                pos += (cmsg_len + 7) & ~7
        return n, stamp
