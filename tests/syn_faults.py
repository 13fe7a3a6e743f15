"""A listener that drops the first SYNs, and a packet capture that says when the handshake really happened.

``BacklogProxy`` is a TCP proxy (to a real upstream, the emulator) whose
accept queue is kept full by connections of its own, so the kernel drops
every SYN that arrives; ``open()`` lets connections in again. A client that
connects in between has its first SYN dropped and gets through on the
kernel's retransmission (1 s later, then 3 s, ...): what a listen queue
overflowing under a burst does to a provider's clients.

``HandshakeCapture`` reads every packet on the loopback interface
(AF_PACKET, root only) with the kernel's receive stamps, and keeps, per
client port, the first SYN's and the SYN-ACK's times: the truth a client's
measured set-up is checked against.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Optional

from tests.s3_fixtures import pipe

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33  # (root: past net.core.rmem_max)
CAPTURE_BUFFER = 64 * 1024 * 1024


class BacklogProxy:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)  # an accept queue of one
        self.port = self.listener.getsockname()[1]
        self.blockers = []
        for _ in range(3):  # fill the queue (and its SYN queue's overflow) with connections of our own
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.blockers.append(s)
        time.sleep(0.2)
        self.blocker_ports = {s.getsockname()[1] for s in self.blockers}
        self._open = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        """Start accepting: the queue drains and SYNs are answered again."""
        self._open.set()

    def _serve(self) -> None:
        self._open.wait()
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, addr = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[1] in self.blocker_ports:
                conn.close()
                continue
            upstream = socket.create_connection(self.upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._open.set()
        for s in self.blockers:
            s.close()
        self.listener.close()


class HandshakeCapture:
    """First SYN and SYN-ACK times (kernel stamps) of every connection to ``port`` on loopback."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # every loopback packet of the machine comes through this socket, up to 64 KiB each: with the
        # default buffer (~200 KiB) a busy moment drops packets before they are read, the SYN among them
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.first_syn: dict[int, float] = {}
        self.syns: dict[int, int] = {}
        self.syn_ack: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, ancillary, _, addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # loopback shows each packet twice; keep the received copy
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec * 1e-9
            self._packet(data, stamp)

    def _packet(self, frame: bytes, stamp: float) -> None:
        if len(frame) < 14 + 20 or struct.unpack("!H", frame[12:14])[0] != 0x0800:
            return
        ip = frame[14:]
        if ip[9] != 6:  # TCP
            return
        tcp = ip[(ip[0] & 0x0F) * 4:]
        src, dst = struct.unpack("!HH", tcp[:4])
        flags = tcp[13]
        syn, ack = bool(flags & 0x02), bool(flags & 0x10)
        if syn and not ack and dst == self.port:
            self.first_syn.setdefault(src, stamp)
            self.syns[src] = self.syns.get(src, 0) + 1
        elif syn and ack and src == self.port:
            self.syn_ack.setdefault(dst, stamp)

    def handshake_s(self, client_port: int) -> Optional[float]:
        if client_port in self.first_syn and client_port in self.syn_ack:
            return self.syn_ack[client_port] - self.first_syn[client_port]
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()
