"""A TCP relay to a server that keeps every byte its clients sent: what an adapter really put on the wire."""

from __future__ import annotations

import functools
import socket
import threading
import time

from tests.s3_fixtures import pipe


class Tap:
    """A TCP relay to the emulator that keeps every byte its clients sent, connection by connection."""

    def __init__(self, port: int):
        self._port = port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.streams: list = []  # (first byte's arrival, bytearray) per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._port))
            stream = [None, bytearray()]
            self.streams.append(stream)
            threading.Thread(target=pipe, args=(client, upstream, functools.partial(self._record, stream)),
                             daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _record(stream, data: bytes) -> None:
        stream[0] = stream[0] or time.monotonic()
        stream[1] += data

    def requests(self) -> list:
        """Every request sent so far, in order: (head lines, body)."""
        out = []
        for first, data in sorted((s for s in self.streams if s[0] is not None), key=lambda s: s[0]):
            data = bytes(data)
            while data:
                head, _, rest = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                out.append((lines, rest[:length]))
                data = rest[length:]
        return out

    def close(self) -> None:
        self._listener.close()


def sent_lean_and_plain(face: str, plain_env: str, lifecycle, monkeypatch) -> tuple:
    """What ``lifecycle(tap)`` sent to an emulator of ``face``, through a tap, with an adapter's lean path on
    and then with ``plain_env=1`` (its escape hatch): (lean requests, plain requests)."""
    from loadgen.emulator import start_emulator

    sent = []
    with start_emulator("fast", faces=face) as emu:
        tap = Tap(int(emu.url.rsplit(":", 1)[1]))
        try:
            for plain in (False, True):
                if plain:
                    monkeypatch.setenv(plain_env, "1")
                else:
                    monkeypatch.delenv(plain_env, raising=False)
                tap.streams.clear()
                sent.append(lifecycle(tap, plain))
        finally:
            tap.close()
    return tuple(sent)
