"""urllib3's PoolManager seam on loadgen's timed client: a urllib3 SDK, timed on the wire.

OpenAPI-generated Python clients (Daytona's API and toolbox clients) send
every request through ``rest_client.pool_manager.request(method, url,
body=, headers=, timeout=, preload_content=False)`` and read the answer's
``status``, ``reason``, ``headers`` and ``data``. ``WirePoolManager`` takes
that call: the exchange runs on ``loadgen.net.wirehttp`` (on the hub, in the
calling greenlet: ``loadgen.net.greenwire``), which takes
its times from the kernel's stamps and judges the lifecycle phase's deadline
by them (``loadgen.net.exchange``), and the answer comes back as a
``urllib3.HTTPResponse`` built from the bytes received. The SDK's request
building, answer parsing and exception mapping are unchanged.

Errors are urllib3's (what its pool raises with retries off):
``NewConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError`` and
``ProtocolError``; a failure that is the generator's own (``GeneratorError``,
``NotSent``) is raised as it is. Anything the timed client does not do
(form fields, multipart, proxies, a ``PoolManager`` method other than
``request``) goes to the PoolManager it wraps, exactly as before.
"""

from __future__ import annotations

import http
import io
from typing import Any, Optional

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

from loadgen.net import greenwire
from loadgen.net.wirehttp import ConnectError, ConnectTimeout, GeneratorError, ReadTimeout, WireError, WirePool


def _timeout_s(timeout: Any) -> Optional[float]:
    """One bound for the connect and the answer: urllib3's read (else total, else connect) timeout."""
    if timeout is None:
        return None
    if isinstance(timeout, urllib3.Timeout):  # (its read_timeout property wants a started connect timer)
        for value in (getattr(timeout, "_read", None), timeout.total, timeout.connect_timeout):
            if isinstance(value, (int, float)):
                return float(value)
        return None
    if isinstance(timeout, (int, float)):
        return float(timeout)
    return None


def _as_urllib3(error: WireError, url: str) -> Exception:
    if isinstance(error, ConnectError):
        return NewConnectionError(None, f"{url}: {error}")
    if isinstance(error, ConnectTimeout):
        return ConnectTimeoutError(f"{url}: {error}")
    if isinstance(error, ReadTimeout):
        return ReadTimeoutError(None, url, str(error))
    if isinstance(error, GeneratorError):
        return error  # the generator's own failure: it stays ours
    return ProtocolError(f"{url}: {error}", error)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class WirePoolManager:
    """Stands in for a ``urllib3.PoolManager`` (``fallback``): its ``request`` on a ``WirePool`` on the hub
    (``greenwire.pool()``)."""

    def __init__(self, fallback: urllib3.PoolManager, pool: Optional[WirePool] = None):
        self._fallback = fallback
        self._pool = pool if pool is not None else greenwire.pool()
        if self._pool.io is not greenwire.HUB:
            raise ValueError("WirePoolManager needs a pool on the hub: loadgen.net.greenwire.pool()")

    def __getattr__(self, name: str) -> Any:  # connection_pool_kw, clear(), urlopen()...: the real one
        return getattr(self._fallback, name)

    def request(self, method: str, url: str, body: Any = None, fields: Any = None, headers: Any = None,
                timeout: Any = None, preload_content: bool = True, **kwargs: Any) -> urllib3.HTTPResponse:
        if fields or kwargs.get("encode_multipart") or set(kwargs) - {"encode_multipart", "decode_content"} \
                or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return self._fallback.request(method, url, body=body, fields=fields, headers=headers, timeout=timeout,
                                          preload_content=preload_content, **kwargs)
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            answer = greenwire.run(self._pool.request(method.upper(), url, dict(headers or {}), body or None,
                                                       _timeout_s(timeout)))
        except WireError as error:
            mapped = _as_urllib3(error, url)
            if mapped is error:
                raise
            raise mapped from error
        response_headers = urllib3.HTTPHeaderDict()
        encoded = False
        for name, value in answer.headers:
            response_headers.add(name, value)
            encoded = encoded or name.lower() == "content-encoding"
        # bytes are the body as is; a content-encoded one is read through urllib3's decoders
        return urllib3.HTTPResponse(body=io.BytesIO(answer.content) if encoded else answer.content,
                                    headers=response_headers, status=answer.status, version=11,
                                    version_string="HTTP/1.1", reason=_reason(answer.status),
                                    preload_content=preload_content, decode_content=kwargs.get("decode_content", True),
                                    request_method=method, request_url=url)

    def clear(self) -> None:
        self._fallback.clear()
        self._pool.close()
