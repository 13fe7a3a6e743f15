"""grpclib's HTTP/2 connections with each stream's exchange timed at the socket, by the kernel.

Why: modal's SDK (grpclib over h2) multiplexes every sandbox of a process over
one control-plane connection, and each sandbox's commands over a connection of
its own. A clock read where grpclib hands an answer to the SDK measures how busy
the asyncio loop was (BENCHMARKS.md §3: hundreds of milliseconds at 2,000
sandboxes per process). So this module gives a grpclib channel a transport of
its own (``open_connection``, used in place of ``loop.create_connection``):

- the request's time is read just before the frame that ends it (END_STREAM,
  for a unary request its DATA) is handed to the kernel, or, when the socket's
  buffer was full, before the send that finally took it: the request is whole
  only then (gRPC writes HEADERS and DATA apart, and this process's own work,
  or its being descheduled on a loaded machine, may come between them);
- the answer's time is the kernel's receive stamp (SO_TIMESTAMPNS) of the bytes
  that completed the stream: the frame carrying END_STREAM (the trailers, a
  trailers-only answer) or the server's RST_STREAM. Many streams share a
  connection, and one read of a busy loop may take the answers of many: the
  stamp of a read is its last segment's, so the reader peeks at what is
  waiting, finds where each stream-ending frame ends (over TLS: each record),
  and reads exactly up to there, so every stream-ending frame gets the stamp of
  the segment that carried its last byte;
- a new connection's set-up (first SYN to the handshake's completion as
  TCP_INFO dates it, retransmitted SYNs counted; TLS from ClientHello to the
  server's last handshake flight) is wirehttp's, and counts for the first
  exchange of the phase that opened the connection.

Phases and verdicts (``loadgen.net.exchange``): every stream sent inside a phase
is recorded on it as an ``Exchange`` as it is sent, unanswered until it is
(a modal command is three: TaskExecStart, TaskExecStdioRead, TaskExecWait;
``Phase.span`` leaves the generator's gaps between them out). Each has the
phase's deadline (its timeout from the first exchange's wire start); at the
deadline the bytes already waiting in the socket are read first, and only a
stream still unanswered then makes the phase's verdict a timeout. A lingering phase (a create) keeps
listening for the late answer until ``linger_s`` more, then the stream is given
up (``ReadTimeout``). A request the generator could not send before the phase's
send deadline is not sent (``NotSent``).

Reading: the kernel merges segments that wait unread in a receive queue and
dates the merged buffer by its newest segment, so the sockets are read by a
thread of their own (``_Reader``) as data lands, not when the loop gets to
it: real-time where the process may ask (``READER_SCHEDULING_ENV``), with the
GIL's hand-over and the collector's passes kept short (``SWITCH_INTERVAL_S``,
``gcpauses``). What is left: a process the machine does not schedule at all (a load far
above its cores) cannot read either, and answers that land on one connection
meanwhile share the latest one's stamp (by the test, up to ~13 ms at a load
average of 25 on 2 cores); never later than they were read. Proxies
(HTTPS_PROXY and kin) and unix sockets keep grpclib's own transport.

On a server (``StampedServer``, the emulator's modal face) the same transport
keeps each request's arrival (the stamp of its END_STREAM, ``arrival``) and
tells when each answer's last frame was handed to the kernel
(``when_answered``).

Length: one transport (socket, TLS over memory BIOs, stamp-exact reads, writes
with their send times) and the per-stream bookkeeping it feeds; they share the
connection's state and are read together.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import ssl
import sys
import threading
import time
from typing import Callable, Optional

from grpclib import protocol as _grpc_protocol
from h2.events import StreamEnded, StreamReset

from loadgen.net import exchange, gcpauses, heldread, statelesshpack, streamcount, wirehttp
from loadgen.net.aio import _allocate_lock, _start_new_thread
from loadgen.net.exchange import Exchange, NotSent

try:  # the reader thread's epoll, not gevent's cooperative select
    from gevent.monkey import get_original

    _epoll = get_original("select", "epoll")
except (ImportError, AttributeError):  # pragma: no cover - gevent is a dependency; epoll is Linux's
    import select

    _epoll = getattr(select, "epoll", None)

log = logging.getLogger("loadgen.net.wiregrpc")
_PEEK_SIZE = 256 * 1024
_ANCILLARY = wirehttp._ANCILLARY_SIZE
_TIMESPEC = wirehttp._TIMESPEC
SO_TIMESTAMPNS = wirehttp.SO_TIMESTAMPNS
_COALESCE = 16 * 1024
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# HTTP/2 frame types and flags (RFC 9113 §6)
_DATA, _HEADERS, _RST_STREAM, _GOAWAY, _CONTINUATION = 0, 1, 3, 7, 9
_END_STREAM, _END_HEADERS = 0x1, 0x4


_loop_buffers: dict = {}


def _buffers_of(loop) -> tuple:
    buffers = _loop_buffers.get(loop)
    if buffers is None:
        buffers = _loop_buffers[loop] = (_read_buffer(), bytearray(wirehttp._READ_SIZE))
    return buffers


def _read_buffer():
    """What ``_read_socket`` reads into: a heldread.Reader (reads that keep the GIL), else a bytearray."""
    buffer = bytearray(_PEEK_SIZE)
    return heldread.Reader(buffer) if heldread.available else buffer


class _Track:
    """One stream sent inside a phase: what its Exchange will say, and its deadlines."""

    __slots__ = ("stream", "phase", "sent", "setup_s", "syn", "deadline", "give_up", "timer", "mark", "exchange")

    def __init__(self, stream, phase, setup_s, syn, mark):
        self.stream, self.phase, self.setup_s, self.syn, self.mark = stream, phase, setup_s, syn, mark
        self.sent = None
        self.deadline = self.give_up = None
        self.timer = None
        self.exchange: Optional[Exchange] = None  # recorded on the phase as it is sent, answered when it is


class _Cuts:
    """Where to cut a byte stream made of length-prefixed units (the scanner's state carries across calls)."""

    __slots__ = ("header", "size", "left", "ends")

    def __init__(self, size: int, skip: int = 0):
        self.header = bytearray()
        self.size = size  # the header's length
        self.left = skip  # payload bytes of the current unit still to come
        self.ends = False  # whether the current unit is one to cut after

    def __call__(self, data, n: int) -> list:
        """Offsets in ``data[:n]`` just past each unit to cut after."""
        cuts = []
        pos = 0
        header = self.header
        while pos < n:
            if self.left:
                take = min(self.left, n - pos)
                pos += take
                self.left -= take
                if not self.left and self.ends:
                    cuts.append(pos)
                continue
            take = min(self.size - len(header), n - pos)
            header += data[pos:pos + take]
            pos += take
            if len(header) < self.size:
                break
            length, ends = self.parse(header)
            header.clear()
            if length:
                self.left, self.ends = length, ends
            elif ends:
                cuts.append(pos)
        return cuts

    def parse(self, header) -> tuple:
        raise NotImplementedError


class _FrameCuts(_Cuts):
    """After each HTTP/2 frame that ends a stream: DATA or a header block with END_STREAM, RST_STREAM, GOAWAY."""

    __slots__ = ("block_ends",)

    def __init__(self, skip: int = 0):
        super().__init__(9, skip)
        self.block_ends = False  # a HEADERS with END_STREAM waits for its last CONTINUATION

    def parse(self, header) -> tuple:
        kind, flags = header[3], header[4]
        ends = False
        if kind == _DATA:
            ends = bool(flags & _END_STREAM)
        elif kind == _HEADERS:
            if flags & _END_HEADERS:
                ends = bool(flags & _END_STREAM)
            else:
                self.block_ends = bool(flags & _END_STREAM)
        elif kind == _CONTINUATION:
            if flags & _END_HEADERS:
                ends, self.block_ends = self.block_ends, False
        elif kind in (_RST_STREAM, _GOAWAY):
            ends = True
        return (header[0] << 16) | (header[1] << 8) | header[2], ends


class _RecordCuts(_Cuts):
    """After each TLS record (a record decrypts only whole)."""

    __slots__ = ()

    def __init__(self):
        super().__init__(5)

    def parse(self, header) -> tuple:
        return (header[3] << 8) | header[4], True


class _Reader:
    """One real OS thread per process that reads every StampedTransport's socket as data arrives.

    Why a thread: the kernel merges segments that wait unread in a receive queue
    into one buffer and stamps it with its newest segment's arrival (checked on
    Linux 6.18 loopback: 100 answers 2 ms apart, unread for 0.2 s, came back in
    groups of ~20 stamped alike). On a connection that many streams share, an
    answer that waited while the loop was busy would be dated by a later one's.
    A thread blocked in epoll reads each answer as it lands, so its stamp is its
    own; the loop gets the pieces, stamps attached, in one wake-up per batch.
    Under a busy process the thread waits for the GIL (sys.getswitchinterval(),
    which the reader's start shortens from 5 to 0.5 ms: ``SWITCH_INTERVAL_S``),
    which bounds how long answers can sit unread, provided
    nothing holds the GIL longer: its reads keep the GIL (``heldread``: a pass
    is one hold, not a wait for the GIL after every cut), and on a server
    (``StampedServer``) the process's garbage collections are kept short
    (``gcpauses``), the full ones run once the sockets are idle."""

    def __init__(self):
        self._epoll = _epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._epoll.register(self._wake_r, 1)  # EPOLLIN
        self._by_fd: dict = {}
        self._requests: collections.deque = collections.deque()
        self._outs: dict = {}  # loop -> [deque of (transport, data, stamp), drain scheduled, loop]
        _start_new_thread(self._run, ())

    def register(self, transport) -> None:
        self._by_fd[transport._fd] = transport
        self._epoll.register(transport._fd, 1)

    def unregister(self, transport) -> None:
        if self._by_fd.get(transport._fd) is transport:
            del self._by_fd[transport._fd]
            try:
                self._epoll.unregister(transport._fd)
            except (OSError, ValueError):
                pass

    def read_then(self, transport, callback: Callable[[], None]) -> None:
        """Read ``transport``'s socket now, then run ``callback`` on its loop after what was read."""
        self._requests.append((transport, callback))
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the thread is awake already

    def _out(self, loop) -> list:
        out = self._outs.get(loop)
        if out is None:
            out = self._outs[loop] = [collections.deque(), False, loop]
        return out

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.scheduling = _schedule_reader_first()
        buffer = _read_buffer()
        while True:
            try:
                self._pass(buffer)
            except Exception:  # noqa: BLE001 - the thread must outlive any one connection's trouble
                log.exception("wiregrpc: the reader thread's pass failed; reading on")

    def _pass(self, buffer) -> None:
        """One wait for readiness, and everything it found read and handed to the loops."""
        try:
            events = self._epoll.poll(gcpauses.IDLE_S if gcpauses.active else -1)
        except InterruptedError:
            return
        if gcpauses.due(idle=not events):
            self._collect_garbage()
        touched = []
        for fd, _mask in events:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            transport = self._by_fd.get(fd)
            if transport is None:
                continue
            out = self._out(transport._loop)
            try:
                alive = transport._thread_read(buffer, out[0])
            except Exception as exc:  # noqa: BLE001 - that connection is broken, not the others
                out[0].append((transport, None, exc))
                alive = False
            if not alive:
                self.unregister(transport)
            touched.append(out)
        while self._requests:
            transport, callback = self._requests.popleft()
            out = self._out(transport._loop)
            if self._by_fd.get(transport._fd) is transport:
                try:
                    alive = transport._thread_read(buffer, out[0])
                except Exception as exc:  # noqa: BLE001
                    out[0].append((transport, None, exc))
                    alive = False
                if not alive:
                    self.unregister(transport)
            out[0].append((transport, callback, None))
            touched.append(out)
        for out in touched:
            if out[0] and not out[1]:
                out[1] = True
                try:
                    out[2].call_soon_threadsafe(self._drain, out)
                except RuntimeError:  # the loop is closed: nobody is left to read for
                    out[0].clear()
                    out[1] = False

    def _collect_garbage(self) -> None:
        """A full collection on a loop this thread reads for (finalizers run there, as they would anyway)."""
        for out in list(self._outs.values()):
            loop = out[2]
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(gcpauses.collect)
                    return
                except RuntimeError:  # closed meanwhile
                    continue
        gcpauses.collect()

    @staticmethod
    def _drain(out: list) -> None:
        """On the loop: deliver what the thread read, in order."""
        out[1] = False  # (cleared first: an item appended during the drain is drained or schedules the next)
        queue = out[0]
        flush = set()
        while queue:
            transport, data, stamp = queue.popleft()
            try:
                transport._delivered(data, stamp)
            except Exception as exc:  # noqa: BLE001 - a broken connection, not a crash of the loop
                transport._finish(exc)
            if transport._tls is not None:
                flush.add(transport)
        for transport in flush:
            transport._flush_plain(transport.stamp)


_reader: Optional[_Reader] = None
_reader_pid: Optional[int] = None
_reader_lock = _allocate_lock()


# How long the reader thread can wait for the GIL, at most, once data is ready: CPython makes the
# thread that holds the GIL hand it over after sys.getswitchinterval() (5 ms by default). Answers that
# arrive 1-5 ms apart on a shared connection merge unread in that wait and take the newest one's
# stamp. Measured with bench/measurement_error.py, modal, 2,000 creates on one quiet machine: answer
# side p99 5.4-11.9 ms at 5 ms, 4.5 at 1 ms, 1.7-2.9 at 0.5 ms, with no change in the CPU per
# lifecycle (4.25 against 4.23 ms, bench/lifecycle_cost.py). BENCHMARKS.md §9.
SWITCH_INTERVAL_ENV = "LOADGEN_WIRE_SWITCH_INTERVAL_MS"  # milliseconds, or "default": Python's own
SWITCH_INTERVAL_S = 0.0005


def _shorten_gil_waits() -> None:
    """Set the process's GIL switch interval for the reader thread (never lengthening a shorter one)."""
    setting = os.environ.get(SWITCH_INTERVAL_ENV, "").strip()
    if setting == "default":
        return
    try:
        interval = float(setting) / 1000.0 if setting else SWITCH_INTERVAL_S
        if interval <= 0:
            raise ValueError(setting)
    except ValueError:
        log.warning("ignoring %s=%r (want milliseconds above 0, or 'default')", SWITCH_INTERVAL_ENV, setting)
        interval = SWITCH_INTERVAL_S
    if interval < sys.getswitchinterval():
        sys.setswitchinterval(interval)


# The reader thread's scheduling: SCHED_FIFO (real-time, the lowest priority, 1) where the process may
# ask for it (root, or CAP_SYS_NICE), so that a reader woken by an answer runs at once instead of
# waiting for its turn on a core the process's loop, its other threads and the machine's other
# processes keep busy (nice cannot do it: with autogroup, nice only orders the threads of one
# session). It reads, hands over and blocks again: a few per cent of a core at most, and the
# kernel's real-time throttling (sched_rt_runtime_us) bounds it regardless. Measured with
# bench/measurement_error.py, modal, 2,000 creates: BENCHMARKS.md §9.
READER_SCHEDULING_ENV = "LOADGEN_WIRE_READER_FIFO"  # "1" (the default): SCHED_FIFO where permitted; "0": the OS's
READER_FIFO_PRIORITY = 1


def _schedule_reader_first() -> str:
    """On the reader thread: make it real-time (see above); returns what it runs under (kept as the
    reader's ``scheduling``; a refusal is also logged)."""
    setting = os.environ.get(READER_SCHEDULING_ENV, "1").strip() or "1"
    if setting == "0":
        return "SCHED_OTHER (LOADGEN_WIRE_READER_FIFO=0)"
    if setting != "1":
        log.warning("ignoring %s=%r (want 1 or 0)", READER_SCHEDULING_ENV, setting)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(READER_FIFO_PRIORITY))  # (0: this thread)
    except (OSError, AttributeError) as exc:
        log.info("wiregrpc: the reader thread keeps the OS's scheduling (SCHED_FIFO refused: %s); answers that "
                 "land while every core is busy may wait for it", exc)
        return f"SCHED_OTHER (SCHED_FIFO refused: {exc})"
    return f"SCHED_FIFO {READER_FIFO_PRIORITY}"


def _the_reader() -> Optional[_Reader]:
    """The process's reader thread (started on first use, and again after a fork); None without epoll."""
    global _reader, _reader_pid
    if _epoll is None:
        return None
    with _reader_lock:
        if _reader is None or _reader_pid != os.getpid():
            _shorten_gil_waits()
            _reader, _reader_pid = _Reader(), os.getpid()
    return _reader


class StampedTransport(asyncio.Transport):
    """An asyncio transport over a connected socket (wirehttp's connection, TLS done) whose reads
    carry kernel stamps, for one grpclib H2Protocol."""

    def __init__(self, loop, conn, protocol, setup_phase, keep_ends: bool = False):
        super().__init__()
        self._loop = loop
        self._conn = conn  # a wirehttp connection: keeps the socket (and the TLS objects) alive
        self._sock = conn.sock
        self._fd = conn.fd
        self._tls, self._tls_in, self._tls_out = conn.tls, conn.tls_in, conn.tls_out
        # a server's transport keeps the stamp of each stream's end (its request's last byte) for the handler
        self.ends: Optional[dict] = {} if keep_ends else None
        self._protocol = protocol
        # one read buffer per loop, shared by its connections (a read never yields): 2,000 sandboxes'
        # command-router connections must not cost 2,000 of them
        self._peek, self._plain = _buffers_of(loop)
        self.stamp = 0.0  # the stamp of the bytes being delivered (read by _StampedConnection.feed)
        self._backlog = bytearray()
        self._written = 0  # bytes handed to write()
        self._sent = 0  # bytes handed to the kernel
        self._send_started = 0.0  # clock read just before the latest send
        self._waiting_send: list = []  # tracks whose request is still in the backlog
        self._writer_on = False
        self._flush_scheduled = False
        self._waiting_calls: list = []  # a server's (mark, callback): answers' ends still in the backlog
        self._writing_paused = False
        self._closing = False
        self._lost = False
        self._reading = False
        # where reads are cut: after each stream-ending frame (a server first skips the client's 24-byte
        # preface, PRI * HTTP/2.0...), and over TLS after each record (the frames are looked for once decrypted)
        self._frame_cuts = _FrameCuts(24 if keep_ends else 0)
        self._record_cuts = _RecordCuts() if self._tls is not None else None
        self._pending_plain: list = []
        self.tracks: dict = {}
        self._setup = (conn.setup_s, conn.syn_retransmits, setup_phase)
        self._lock = _allocate_lock()  # the reader thread reads under it; closing takes it
        self._on_end_written: dict = {}  # a server's: stream id -> what to tell when its answer's end goes out
        self._reader = _the_reader()

    # -- asyncio.Transport ----------------------------------------------------------
    def get_extra_info(self, name, default=None):
        if name == "socket":
            return self._sock
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "ssl_object":
            return self._tls if self._tls is not None else default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self.pause_reading_for_close()

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            if self._reader is not None:
                self._reader.register(self)
            else:
                self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return len(self._backlog)

    def can_write_eof(self) -> bool:
        return False

    def write(self, data) -> None:
        if self._closing or not data:
            return
        if self._tls is not None:
            self._tls.write(data)
            data = self._tls_out.read()
        self._hand_over(data)
        if not self._writing_paused and len(self._backlog) > _HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading_for_close()
        if not self._backlog:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        self._closing = True
        self._finish(None)

    def pause_reading_for_close(self) -> None:
        if self._reading:
            if self._reader is not None:
                self._reader.unregister(self)
            else:
                self._loop.remove_reader(self._fd)
            self._reading = False

    # -- writing ------------------------------------------------------------------
    def _hand_over(self, data) -> None:
        """Bytes for the wire, in order. What one step of the loop writes goes out in one send at its
        end (grpclib writes each frame apart: HEADERS, then DATA, per request), or at once past
        _COALESCE bytes; a request's time is that send's (see request_done)."""
        self._written += len(data)
        self._backlog += data
        if self._writer_on:
            return  # the socket's buffer is full: the writer callback sends when it can take more
        if len(self._backlog) >= _COALESCE:
            self._on_writable()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._backlog and not self._writer_on and not self._lost:
            self._on_writable()

    def _on_writable(self) -> None:
        if self._backlog:
            self._send_started = time.time()
            try:
                n = self._sock.send(self._backlog)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._finish(exc)
                return
            self._sent += n
            del self._backlog[:n]
            if self._waiting_send:
                still = []
                for track in self._waiting_send:
                    if self._sent >= track.mark:
                        self._sent_at(track, self._send_started)
                    else:
                        still.append(track)
                self._waiting_send = still
            if self._waiting_calls:
                calls = self._waiting_calls
                self._waiting_calls = [(mark, fn) for mark, fn in calls if mark > self._sent]
                for mark, fn in calls:
                    if mark <= self._sent:
                        fn(self._send_started)
        if self._backlog:
            if not self._writer_on:
                self._writer_on = True
                self._loop.add_writer(self._fd, self._on_writable)
        else:
            if self._writer_on:
                self._writer_on = False
                self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)
                return
        if self._writing_paused and len(self._backlog) <= _LOW_WATER:
            self._writing_paused = False
            self._protocol.resume_writing()

    # -- reading ------------------------------------------------------------------
    def start(self) -> None:
        """After connection_made: what TLS already decrypted, then the socket."""
        if self._tls is not None and self._tls_in.pending:
            self._decrypt(self._conn._stamp)
            self._flush_plain(self._conn._stamp)
        self.resume_reading()

    def _on_readable(self) -> None:
        try:
            self.read_waiting()
        except Exception as exc:  # noqa: BLE001 - a broken connection, not a crash of the loop
            self._finish(exc)

    def read_waiting(self) -> None:
        """Read everything waiting in the socket now (on the loop: a transport without a reader thread)."""
        if self._lost:
            return
        try:
            status = self._read_socket(self._peek, self._deliver)
        except OSError as exc:
            self._finish(exc)
            return
        if self._tls is not None:
            self._flush_plain(self.stamp)
        if status == "eof":
            self._eof()

    def _read_socket(self, buffer, emit) -> Optional[str]:
        """Read what is waiting, in pieces that end just past each stream-ending frame (over TLS, each
        record), so that each piece's stamp is that of its last byte's segment: ``emit(data, stamp)``
        per piece. Returns "eof" at the end of the stream, else None once drained; raises OSError.
        ``buffer`` is a heldread.Reader (the GIL kept throughout) or a bytearray (socket methods)."""
        if buffer.__class__ is not bytearray:
            return self._read_held(buffer, emit)
        sock = self._sock
        view = memoryview(buffer)
        size = len(buffer)
        while True:
            try:
                n = sock.recv_into(buffer, size, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return None
            if n == 0:
                return "eof"
            cuts = self._record_cuts(view, n) if self._tls is not None else self._frame_cuts(view, n)
            if not cuts or cuts[-1] != n:
                cuts.append(n)
            start = 0
            for cut in cuts:
                got, ancillary, _flags, _addr = sock.recvmsg_into((view[start:cut],), _ANCILLARY)
                stamp = None
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                        stamp = seconds + nanoseconds * 1e-9
                emit(bytes(view[start:start + got]), time.time() if stamp is None else stamp)
                start = cut
            if n < size:
                return None

    def _read_held(self, reader, emit) -> Optional[str]:
        """``_read_socket`` with heldread's calls: one hold of the GIL for the peek and every cut."""
        fd = self._fd
        view = reader.view
        size = len(view)
        cut_at = self._record_cuts if self._tls is not None else self._frame_cuts
        while True:
            n = reader.peek(fd, size)
            if n is None:
                return None
            if n == 0:
                return "eof"
            cuts = cut_at(view, n)
            if not cuts or cuts[-1] != n:
                cuts.append(n)
            start = 0
            for cut in cuts:
                got, stamp = reader.read(fd, start, cut - start)
                emit(bytes(view[start:start + got]), time.time() if stamp is None else stamp)
                start = cut
            if n < size:
                return None

    def _deliver(self, data: bytes, stamp: float) -> None:
        """Bytes read from the socket, to the protocol (decrypted first over TLS) with their stamp."""
        if self._lost:
            return
        if self._tls is None:
            self.stamp = stamp
            self._protocol.data_received(data)
        else:
            self._tls_in.write(data)
            if self._decrypt(stamp):
                self._flush_plain(stamp)

    # -- reading on the reader thread -------------------------------------------------
    def _thread_read(self, buffer: bytearray, out) -> bool:
        """On the reader thread: read what is waiting into ``out``; False once the socket is done."""
        with self._lock:
            if self._lost:
                return False
            try:
                status = self._read_socket(buffer, lambda data, stamp: out.append((self, data, stamp)))
            except OSError as exc:
                out.append((self, None, exc))
                return False
            if status == "eof":
                out.append((self, None, None))
                return False
        return True

    def _delivered(self, data, stamp) -> None:
        """On the loop: one item the reader thread read (bytes; None and an error or None at the end;
        or a callback to run once what was read before it is delivered)."""
        if data is None:
            if stamp is None:
                self._eof()
            else:
                self._finish(stamp)
        elif data.__class__ is bytes:
            self._deliver(data, stamp)
        else:
            data()

    def _decrypt(self, stamp: float) -> bool:
        """Decrypt what the TLS input holds; True when the plaintext so far ends a stream (deliver it now)."""
        ends = False
        while True:
            try:
                size = self._tls.read(len(self._plain), self._plain)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._flush_plain(stamp)
                self._eof()
                return False
            if not size:
                break
            chunk = bytes(self._plain[:size])
            self._pending_plain.append(chunk)
            if self._frame_cuts(chunk, size):
                ends = True
        if self._tls_out.pending:  # post-handshake messages the TLS layer must answer
            self._hand_over(self._tls_out.read())
        self.stamp = stamp
        return ends

    def _flush_plain(self, stamp: float) -> None:
        if self._pending_plain and not self._lost:
            data = b"".join(self._pending_plain) if len(self._pending_plain) > 1 else self._pending_plain[0]
            self._pending_plain.clear()
            self.stamp = stamp
            self._protocol.data_received(data)

    def _eof(self) -> None:
        keep_open = False
        try:
            keep_open = bool(self._protocol.eof_received())
        except Exception:  # noqa: BLE001
            pass
        if not keep_open:
            self._closing = True
            self._finish(None)

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._closing = True
        self.pause_reading_for_close()
        self._loop.remove_writer(self._fd)
        for track in self.tracks.values():
            if track.timer is not None:
                track.timer.cancel()
                track.timer = None
        with self._lock:  # not while the reader thread is inside a read of this socket
            self._lost = True
            try:
                self._sock.close()
            except OSError:
                pass
        self._loop.call_soon(self._protocol.connection_lost, exc)  # (as asyncio's transports: never inside a call)

    # -- the exchanges ---------------------------------------------------------------
    def track(self, stream, phase) -> Callable[[], None]:
        """A stream's request has just been written: time it, and return what its release must call."""
        setup_s, syn, setup_phase = self._setup
        if setup_s or syn:
            self._setup = (0.0, 0, None)  # the first stream on the connection takes its set-up...
            if setup_phase is None or setup_phase is not phase:
                setup_s, syn = 0.0, 0  # ...when the same phase opened it (not the process's setup)
        self.tracks[stream.id] = _Track(stream, phase, setup_s, syn, 0)
        return lambda: self._released(stream.id)

    def when_written(self, stream_id: int, callback: Callable[[float], None]) -> None:
        """A server's: ``callback(t)`` with the send time of the frame that will end the stream's answer."""
        self._on_end_written[stream_id] = callback

    def end_written(self, stream) -> None:
        """The frame with this side's END_STREAM on ``stream`` has just been written."""
        callback = self._on_end_written.pop(stream.id, None) if self._on_end_written else None
        if callback is not None:
            if self._sent >= self._written:
                callback(self._send_started)
            else:  # told when the send that takes it is made
                self._waiting_calls.append((self._written, callback))
            return
        self.request_done(stream)

    def request_done(self, stream) -> None:
        """The frame that ends the stream's request (END_STREAM) has just been written: the request is
        whole once that goes to the kernel (gRPC writes HEADERS and DATA apart, with the generator's own
        work, and at times its descheduling, between them), so that send is the request's time."""
        track = self.tracks.get(stream.id)
        if track is None or track.exchange is not None or track.mark:
            return
        track.mark = self._written
        if self._sent >= track.mark:
            self._sent_at(track, self._send_started)
        else:
            self._waiting_send.append(track)

    def _sent_at(self, track: _Track, at: float) -> None:
        track.sent = at
        phase = track.phase
        if phase is None:
            return
        # on the phase at once, unanswered until it is: whoever reads the phase meanwhile (the lifecycle,
        # after a verdict) sees an exchange in flight, not a phase whose exchanges all came back
        track.exchange = Exchange(at, None, track.setup_s, track.syn)
        phase.record(track.exchange)
        if phase.timeout_s is None:
            return
        wire_started = at - track.setup_s
        phase.began(wire_started)
        track.deadline = phase.verdict_deadline(wire_started, None)
        track.give_up = track.deadline + phase.linger_s
        track.timer = self._loop.call_later(max(0.0, track.deadline - time.time()), self._deadline_passed, track)

    def _read_then(self, callback: Callable[[], None]) -> None:
        """``callback`` once what is waiting in the socket now has been read and delivered."""
        if self._reader is not None and self._reading and not self._lost:
            self._reader.read_then(self, callback)
        else:
            self._on_readable()
            callback()

    def _deadline_passed(self, track: _Track) -> None:
        track.timer = None
        if track.stream.id in self.tracks:
            # an answer that arrived in time but was not read yet is the answer
            self._read_then(lambda: self._judge(track))

    def _judge(self, track: _Track) -> None:
        if track.stream.id not in self.tracks:
            return
        track.exchange.late = True
        track.phase.time_is_up()
        if track.give_up > track.deadline and time.time() < track.give_up:
            track.timer = self._loop.call_later(max(0.0, track.give_up - time.time()), self._give_up, track)
        else:
            self._abandon(track)

    def _give_up(self, track: _Track) -> None:
        track.timer = None
        if track.stream.id in self.tracks:
            self._read_then(lambda: self._abandon(track))

    def _abandon(self, track: _Track) -> None:
        if track.stream.id in self.tracks and track.stream.wrapper is not None:
            track.stream.wrapper.cancel(wirehttp.ReadTimeout("no complete answer on the stream within the deadline"))

    def answered(self, stream_id: int) -> None:
        """The stream's last frame (END_STREAM, or the server's RST_STREAM) came with ``self.stamp``."""
        track = self.tracks.pop(stream_id, None)
        if track is None:
            if self.ends is not None:
                self.ends[stream_id] = self.stamp
            return
        if track.timer is not None:
            track.timer.cancel()
            track.timer = None
        if track.exchange is None:
            return
        late = track.deadline is not None and self.stamp > track.deadline
        track.exchange.answered = self.stamp
        track.exchange.late = late
        if late:
            track.phase.time_is_up()

    def _released(self, stream_id: int) -> None:
        """grpclib let the stream go: one never answered stays so on the phase."""
        track = self.tracks.pop(stream_id, None)
        if track is None:
            return
        if track.timer is not None:
            track.timer.cancel()
            track.timer = None
        if track.exchange is not None and track.phase.timed_out:
            track.exchange.late = True


class _StampedStream(_grpc_protocol.Stream):
    """grpclib's stream, whose request is checked against the phase's send deadline and then timed."""

    async def send_request(self, headers, end_stream=False, *, _processor):
        phase = exchange.current()
        if phase is not None:
            send_by = phase.send_deadline()
            if send_by is not None and time.time() > send_by:
                raise NotSent(f"the generator held the request for {time.time() - phase.started:.1f} s, past the "
                              f"phase's {phase.timeout_s:g} s deadline, before it could send it")
        release = await super().send_request(headers, end_stream, _processor=_processor)
        released = self._transport.track(self, phase)
        if end_stream:
            self._transport.end_written(self)

        def release_stream():
            released()
            release()

        return release_stream

    async def send_headers(self, headers, end_stream: bool = False) -> None:
        await super().send_headers(headers, end_stream)
        if end_stream:  # (a server's trailers)
            self._transport.end_written(self)

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        await super().send_data(data, end_stream)
        if end_stream:  # (written in the same step as the call returns)
            self._transport.end_written(self)

    async def end(self) -> None:
        await super().end()
        self._transport.end_written(self)


class _StampedConnection(_grpc_protocol.Connection):
    """grpclib's connection, whose streams are _StampedStreams and whose fed bytes carry their stamp."""

    def create_stream(self, *, stream_id=None, wrapper=None):
        return _StampedStream(self, self._connection, self._transport, stream_id=stream_id, wrapper=wrapper)

    def feed(self, data):
        events = self._connection.receive_data(data)
        wire = self._transport
        for event in events:
            if event.__class__ is StreamEnded or event.__class__ is StreamReset:
                wire.answered(event.stream_id)
        return events


async def open_connection(protocol_factory, host: str, port: int, ssl_context: Optional[ssl.SSLContext] = None,
                          *, lean: bool = False):
    """``loop.create_connection`` for a grpclib channel (TLS checked for ``host``): the H2Protocol it
    returns runs on a StampedTransport.

    Connect errors are wirehttp's (ConnectError, ConnectTimeout, GeneratorError); inside a phase
    with a timeout the connect has the phase's budget from the phase's start. ``lean``: the
    connection's h2 encodes its headers with statelesshpack.StatelessEncoder and counts its open
    streams with streamcount's amortised count (h2's own encoder and count otherwise; either way the
    same bytes are sent)."""
    loop = asyncio.get_running_loop()
    gcpauses.keep_a_clients_pauses_short()  # (once: the reader stamps this process's answers, see gcpauses)
    phase = exchange.current()
    deadline = None
    if phase is not None and phase.timeout_s is not None:
        deadline = (phase.wire_started or phase.started) + phase.timeout_s
    scheme = "https" if ssl_context is not None else "http"
    origin = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    # wirehttp's connect: the set-up as the kernel saw it (SYNs, TLS flights), stamps on, TLS done
    conn = await wirehttp.WireClient(origin, ssl_context=ssl_context)._connect(deadline)
    return _run(loop, conn, protocol_factory(), phase, keep_ends=False, lean=lean)


def _run(loop, conn, protocol, setup_phase, keep_ends: bool, lean: bool = False):
    transport = StampedTransport(loop, conn, protocol, setup_phase, keep_ends=keep_ends)
    protocol.connection_made(transport)
    connection = getattr(protocol, "connection", None)
    if connection is not None:
        connection.__class__ = _StampedConnection
        if lean:  # before the first HEADERS frame: nothing was encoded or opened yet
            connection._connection.encoder = statelesshpack.StatelessEncoder()
            streamcount.install(connection._connection)
    transport.start()
    return protocol


def arrival(server_stream) -> Optional[float]:
    """For a grpclib server's stream on a StampedServer: the kernel's stamp of its request's last byte
    (once its message was received), else None."""
    stream = getattr(server_stream, "_stream", None)
    ends = getattr(getattr(stream, "_transport", None), "ends", None)
    return ends.pop(stream.id, None) if ends is not None else None


def when_answered(server_stream, callback: Callable[[float], None]) -> None:
    """For a grpclib server's stream: ``callback(t)`` once the frame that ends its answer (the trailers)
    has been handed to the kernel, ``t`` the time of that send; at once with now elsewhere."""
    stream = getattr(server_stream, "_stream", None)
    transport = getattr(stream, "_transport", None)
    if isinstance(transport, StampedTransport) and stream.id is not None:
        transport.when_written(stream.id, callback)
    else:
        callback(time.time())


class StampedServer:
    """Accepts connections on a listening socket and serves each with a grpclib server protocol on a
    StampedTransport, so that handlers can ask when their request reached the host (``arrival``).
    What ``grpclib.server.Server`` needs of an asyncio server: close() and wait_closed()."""

    _TLS_HANDSHAKE_S = 30.0

    def __init__(self, sock: socket.socket, protocol_factory, ssl_context: Optional[ssl.SSLContext] = None):
        self._loop = asyncio.get_running_loop()
        # the server's own stamps are the reference a client is judged by: no full collection during traffic
        gcpauses.keep_pauses_short()
        _the_reader()
        self._sock = sock
        self._factory = protocol_factory
        self._ssl = ssl_context
        self._buffer = memoryview(bytearray(wirehttp._READ_SIZE))
        self._closed = self._loop.create_future()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(512):
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors, for one: the backlog keeps the rest, try again shortly
                fd = self._sock.fileno()
                self._loop.remove_reader(fd)
                self._loop.call_later(0.1, self._resume_accepting)
                return
            conn.setblocking(False)
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                pass
            wired = wirehttp._Connection(wirehttp.ASYNCIO, conn, True, self._buffer, time.time())
            if self._ssl is None:
                _run(self._loop, wired, self._factory(), None, keep_ends=True)
            else:
                self._loop.create_task(self._tls(wired))

    def _resume_accepting(self) -> None:
        if not self._closed.done():
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _tls(self, wired) -> None:
        wired.tls_in, wired.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        wired.tls = self._ssl.wrap_bio(wired.tls_in, wired.tls_out, server_side=True)
        try:
            async with asyncio.timeout(self._TLS_HANDSHAKE_S):
                while True:
                    try:
                        wired.tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        flight = wired.tls_out.read()
                        if flight:
                            await wired.send_raw(flight)
                        data = await wired.recv_raw()
                        if not data:
                            raise ConnectionError("the client closed the connection during the TLS handshake")
                        wired.tls_in.write(data)
                pending = wired.tls_out.read()
                if pending:
                    await wired.send_raw(pending)
        except Exception:  # noqa: BLE001 - a client that could not finish its handshake: drop it
            wired.close()
            return
        _run(self._loop, wired, self._factory(), None, keep_ends=True)

    def close(self) -> None:
        if not self._closed.done():
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await self._closed
