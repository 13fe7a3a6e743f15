"""Fixtures and helpers for the emulator tests (conftest.py belongs to the lead).

Import the fixtures by name into a test module:
    from tests.emulator_fixtures import emulator, fresh_emulator  # noqa: F401
"""

from __future__ import annotations

import heapq
import http.client
import json
from typing import Any, Dict, Optional, Tuple

import pytest

from loadgen.emulator import start_emulator

API_KEY = "e2b_test"


@pytest.fixture(scope="module")
def emulator():
    """One `fast` emulator subprocess per test module."""
    with start_emulator("fast") as emu:
        yield emu


@pytest.fixture
def fresh_emulator(emulator):
    emulator.reset()
    return emulator


@pytest.fixture(autouse=False)
def no_e2b_debug(monkeypatch):
    monkeypatch.delenv("E2B_DEBUG", raising=False)


def sdk_opts(url: str, **extra: Any) -> Dict[str, Any]:
    """Connection options for the e2b SDK pointed at an emulator, retries off."""
    opts = dict(api_url=url, sandbox_url=url, api_key=API_KEY, retries=0, request_timeout=30)
    opts.update(extra)
    return opts


def request(url: str, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[Dict[str, str]] = None, api_key: Optional[str] = API_KEY,
            timeout: float = 30) -> Tuple[int, Dict[str, str], bytes]:
    """One plain HTTP request; returns (status, lower-cased headers, body)."""
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = dict(headers or {})
        if api_key is not None:
            h.setdefault("X-API-KEY", api_key)
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def create(url: str, idx: Optional[int] = None, timeout: int = 300, run_id: str = "run-test", **kw):
    body: Dict[str, Any] = {"templateID": "base", "timeout": timeout}
    if idx is not None:
        body["metadata"] = {"run_id": run_id, "sandbox_idx": str(idx)}
    return request(url, "POST", "/v2/sandboxes", json.dumps(body).encode(),
                   {"Content-Type": "application/json"}, **kw)


def connect_frame(command: str) -> bytes:
    msg = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", command]}, "stdin": False}).encode()
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def parse_frames(body: bytes):
    """Connect stream body -> list of (flags, decoded JSON)."""
    frames, i = [], 0
    while i + 5 <= len(body):
        flags, n = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        frames.append((flags, json.loads(body[i + 5:i + 5 + n])))
        i += 5 + n
    return frames


class FakeLoop:
    """A deterministic scheduler and clock for driving the core in unit tests."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._heap = []
        self._n = 0

    class Handle:
        def __init__(self):
            self.cancelled = False

        def cancel(self):
            self.cancelled = True

    def call_later(self, delay, fn, *args):
        h = FakeLoop.Handle()
        self._n += 1
        heapq.heappush(self._heap, (self.now + delay, self._n, h, fn, args))
        return h

    def time(self):
        return self.now

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, h, fn, args = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not h.cancelled:
                fn(*args)
        self.now = end
