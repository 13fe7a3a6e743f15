"""The protocols an adapter's fault tests run over, and how a test points the SDK at each.

- ``h1``: HTTP/1.1 in cleartext (the adapters' default against the emulator);
- ``h2``: HTTP/2 with prior knowledge in cleartext (``LOADGEN_HTTP2=1``, and for
  loadgen's timed client's control-plane pools ``LOADGEN_WIRE_HTTP2=1``);
- ``tls``: HTTP/1.1 over TLS, the emulator's CA trusted through ``SSL_CERT_FILE``
  (``LOADGEN_WIRE_HTTP2=0``: the timed client does not offer h2 either);
- ``h2+tls``: HTTP/2 chosen by ALPN over TLS.

Modal is gRPC, HTTP/2 always: its ``h1`` is cleartext gRPC and its ``tls`` gRPC over TLS.
Whether the SDK really spoke the protocol is in the emulator's stats
(``server.scheme``, ``server.connections_by_protocol``): see `spoke`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

from loadgen.net.wirehttp import HTTP2_ENV as WIRE_HTTP2_ENV
from loadgen.providers.base import HTTP2_ENV

PROTOCOLS = {"h1": (False, False), "h2": (False, True), "tls": (True, False), "h2+tls": (True, True)}


def uses_tls(protocol: str) -> bool:
    return PROTOCOLS[protocol][0]


def uses_http2(protocol: str) -> bool:
    return PROTOCOLS[protocol][1]


def client_env(protocol: str, ca_file: Optional[str]) -> dict:
    """The variables an adapter reads to speak `protocol` to an emulator whose CA is `ca_file`."""
    env = {HTTP2_ENV: "1" if uses_http2(protocol) else "", WIRE_HTTP2_ENV: "1" if uses_http2(protocol) else "0"}
    env["SSL_CERT_FILE"] = ca_file if uses_tls(protocol) and ca_file else ""
    return env


@contextlib.contextmanager
def speaking(protocol: str, emu):
    """os.environ set for `protocol` against `emu` while the block runs (adapters read it in setup)."""
    saved = {name: os.environ.get(name) for name in (HTTP2_ENV, WIRE_HTTP2_ENV, "SSL_CERT_FILE")}
    for name, value in client_env(protocol, getattr(emu, "ca_file", None)).items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def spoke(stats: dict, protocol: str, http2: Optional[bool] = None) -> bool:
    """Whether the emulator's stats show `protocol`: its scheme, and HTTP/2 connections exactly when expected."""
    server = stats["server"]
    http2 = uses_http2(protocol) if http2 is None else http2
    h2_connections = server["connections_by_protocol"]["h2"]
    return server["scheme"] == ("https" if uses_tls(protocol) else "http") and (h2_connections > 0) == http2
