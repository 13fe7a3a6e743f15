"""The result record: one per sandbox, and the taxonomy every figure is built on.

Everything downstream (raw.jsonl, Postgres, object storage, statistics,
reports) reads records of exactly this shape, so the field list lives here and
nowhere else. Classification is a pure function of an exception so that it can
be tested without a network, and so that an error we do not recognise is
counted as `other` instead of being guessed into a class.
"""

from __future__ import annotations

import enum
import errno
import math
import re
import socket
import ssl
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Optional

import orjson


class Status(str, enum.Enum):
    SUCCESS = "success"  # every phase passed
    PARTIAL = "partial"  # ready, but the liveness probe failed
    READINESS_FAILED = "readiness_failed"  # created, but the first `node -v` failed
    FAILED = "failed"  # create failed or timed out


class FailureClass(str, enum.Enum):
    TIMEOUT = "timeout"  # the provider did not answer within the timeout (judged on the wire where timed there)
    HTTP_ERROR = "http_error"
    NETWORK_ERROR = "network_error"
    OTHER = "other"
    # The generator's own making, never the provider's: it ran out of descriptors, ports or
    # buffers, or could not put the request on the wire before the phase's deadline. Such
    # sandboxes are left out of the provider's success rate, and the run says its
    # measurement was compromised.
    GENERATOR_ERROR = "generator_error"


PHASES = ("create", "readiness", "liveness", "destroy")

STATUSES = tuple(s.value for s in Status)
FAILURE_CLASSES = tuple(c.value for c in FailureClass)

# error_code of an iteration whose identity/reuse probe found a marker an earlier
# sandbox left (loadgen.engine.reuse_probe): the container was used before.
CONTAINER_REUSED = "container_reused"

# The identity signals the reuse probe reads: the keys of a record's
# sandbox_fingerprint besides "earlier_markers" (loadgen.report.reuse compares them).
FINGERPRINT_SIGNALS = ("mnt_ns", "pid_ns", "uts_ns", "cgroup_hash", "boot_id", "pid1")

# Failures a provider cannot cause: the generator's host ran out of something.
GENERATOR_ERRNOS = frozenset(
    code for code in (errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.ENOMEM,
                      getattr(errno, "EADDRINUSE", None)) if code is not None
)

ERROR_MESSAGE_LIMIT = 500
OUTPUT_LIMIT = 200


_iso_second: list = [None, ""]


def iso(ts: Optional[float]) -> Optional[str]:
    """Epoch seconds to ISO 8601 UTC with microseconds, e.g. 2026-11-28T16:21:18.123456Z.

    Called ten times per lifecycle, so it avoids datetime: the same round-half-even
    microseconds as datetime.fromtimestamp, with the date part cached per second."""
    if ts is None:
        return None
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    elif us < 0:
        whole -= 1.0
        us += 1_000_000
    second = int(whole)
    if _iso_second[0] != second:
        _iso_second[0], _iso_second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_iso_second[1]}.{us:06d}Z"


def parse_iso(value: Optional[str]) -> Optional[float]:
    """ISO 8601 (as written by `iso`) back to epoch seconds."""
    if not value:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value).timestamp()


def ms_between(start: Optional[float], end: Optional[float]) -> Optional[float]:
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 3)


@dataclass
class SandboxResult:
    """One sandbox's whole life. Serialised as one line of raw.jsonl.

    Field order is the column order of raw.jsonl, of the Postgres table and of
    the README's field reference.
    """

    run_id: str
    sandbox_idx: int
    provider: str
    worker_id: str = ""
    sandbox_id: Optional[str] = None
    status: str = Status.FAILED.value
    failure_class: Optional[str] = None
    failed_phase: Optional[str] = None
    http_status: Optional[Any] = None  # int for HTTP, gRPC status name (str) for gRPC providers
    error_code: Optional[str] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    create_started_at: Optional[str] = None
    create_ended_at: Optional[str] = None
    readiness_started_at: Optional[str] = None
    readiness_ended_at: Optional[str] = None
    liveness_started_at: Optional[str] = None
    liveness_ended_at: Optional[str] = None
    destroy_started_at: Optional[str] = None
    destroy_ended_at: Optional[str] = None
    latency_ms: Optional[float] = None
    first_command_ms: Optional[float] = None
    liveness_ms: Optional[float] = None
    destroy_ms: Optional[float] = None
    destroy_ok: Optional[bool] = None
    destroy_failure_class: Optional[str] = None
    destroy_error_message: Optional[str] = None
    hold_ms: Optional[float] = None
    late_create: bool = False
    readiness_output: Optional[str] = None
    provider_metadata: dict = field(default_factory=dict)
    reuse_probe_ms: Optional[float] = None  # the identity/reuse probe's own time, inside first_command_ms
    sandbox_fingerprint: Optional[dict] = None  # what the reuse probe read: FINGERPRINT_SIGNALS, earlier_markers
    scheduled_start_at: Optional[str] = None  # when the run's schedule said this sandbox was due
    start_lateness_ms: Optional[float] = None  # create_started_at minus scheduled_start_at
    # How the figures above were taken. wire_timed: every phase's times are the wire's (the
    # request's first byte, the kernel's stamp of the answer) and its timeouts were judged there.
    wire_timed: bool = False
    syn_retransmits: Optional[int] = None  # SYNs this sandbox's connections needed again (kernel's count)
    readiness_setup_ms: Optional[float] = None  # connection set-up inside first_command_ms (retransmits included)
    liveness_setup_ms: Optional[float] = None  # likewise inside liveness_ms (0 on a kept connection)
    # The generator's share of each phase: how long this process held the phase before its
    # request went out, and after its answer arrived (wire-timed adapters; null where unknown).
    create_gen_before_ms: Optional[float] = None
    create_gen_after_ms: Optional[float] = None
    readiness_gen_before_ms: Optional[float] = None
    readiness_gen_after_ms: Optional[float] = None
    liveness_gen_before_ms: Optional[float] = None
    liveness_gen_after_ms: Optional[float] = None
    destroy_gen_before_ms: Optional[float] = None
    destroy_gen_after_ms: Optional[float] = None
    destroy_retries: list = field(default_factory=list)  # after a failed destroy: each retry's times and verdict

    def to_json(self) -> bytes:
        return orjson.dumps(self)


RECORD_FIELDS = tuple(f.name for f in fields(SandboxResult))


def destroyed_at(record: dict) -> Optional[str]:
    """When the destroy that removed the sandbox ended: the first attempt, or the retry that
    succeeded (``destroy_retries``); None when no destroy removed it (a leak, or nothing created)."""
    if record.get("destroy_ok") is True:
        return record.get("destroy_ended_at")
    for attempt in record.get("destroy_retries") or ():
        if attempt.get("ok") is True:
            return attempt.get("ended_at")
    return None


def was_destroyed(record: dict) -> bool:
    """True when a destroy (the first attempt or a retry) removed the sandbox, or it was already gone."""
    return record.get("destroy_ok") is True or any(a.get("ok") is True for a in record.get("destroy_retries") or ())


def dumps_record(record: dict | SandboxResult) -> bytes:
    """One raw.jsonl line (without the newline)."""
    return orjson.dumps(record)


def loads_record(line: bytes | str) -> dict:
    return orjson.loads(line)


# ---------------------------------------------------------------------------
# Classification


class GeneratorFailure(Exception):
    """Raised by loadgen's own code when a request failed for the generator's reasons, not the provider's.

    SDKs wrap what their transport raises, so classification looks for this
    (or an OSError with one of GENERATOR_ERRNOS) anywhere in the chain of causes."""


@dataclass(frozen=True)
class ErrorInfo:
    failure_class: str
    http_status: Optional[Any] = None
    error_code: Optional[str] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None


def truncate(text: Optional[str], limit: int = ERROR_MESSAGE_LIMIT) -> Optional[str]:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_STATUS_PREFIX = re.compile(r"^\s*(\d{3})\s*:")

_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.ENOTCONN,
}

# Exception class names (anywhere in the MRO) that mean "the deadline passed".
_TIMEOUT_NAMES = {
    "TimeoutError",
    "Timeout",
    "TimeoutException",
    "ReadTimeout",
    "WriteTimeout",
    "ConnectTimeout",
    "PoolTimeout",
    "APITimeoutError",
    "DeadlineExceeded",
    "CancelledError",
}
# Exception class names that mean "the transport broke" (no HTTP answer).
_NETWORK_NAMES = {
    "ConnectError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "NetworkError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "ConnectionAbortedError",
    "BrokenPipeError",
    "APIConnectionError",
    "ProtocolError",
    "IncompleteRead",
}


def _mro_names(exc: BaseException) -> set[str]:
    return {klass.__name__ for klass in type(exc).__mro__}


def status_code_of(exc: BaseException) -> Optional[int]:
    """The HTTP status an exception carries, whichever SDK raised it."""
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    match = _STATUS_PREFIX.match(str(exc))
    if match:
        return int(match.group(1))
    return None


def generator_cause(exc: BaseException) -> Optional[BaseException]:
    """The generator's own failure behind ``exc`` (itself, or any exception in its chain of causes), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, GeneratorFailure) or (isinstance(exc, OSError) and exc.errno in GENERATOR_ERRNOS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def generator_error_info(exc: BaseException, cause: BaseException) -> ErrorInfo:
    """The record of a generator failure; its error code is the errno's name (EMFILE) where there is one."""
    code = type(cause).__name__
    inner = cause
    while inner is not None:
        if isinstance(inner, OSError) and inner.errno:
            code = errno.errorcode.get(inner.errno, code)
            break
        inner = inner.__cause__
    return ErrorInfo(FailureClass.GENERATOR_ERROR.value, None, code, type(exc).__name__,
                     truncate(str(cause) or type(cause).__name__))


def classify_exception(exc: BaseException) -> ErrorInfo:
    """Generic classification. Adapters call this after their own SDK-specific rules.

    Order matters: the generator's own failure is never the provider's, whatever
    the SDK wrapped it in; a timeout is a timeout even when it wraps a socket
    error; an HTTP status beats a transport guess. Anything unrecognised is
    `other`, never `network_error`.
    """
    cause = generator_cause(exc)
    if cause is not None:
        return generator_error_info(exc, cause)
    names = _mro_names(exc)
    error_type = type(exc).__name__
    message = truncate(str(exc) or error_type)
    if names & _TIMEOUT_NAMES or isinstance(exc, (TimeoutError, socket.timeout)):
        return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
    status = status_code_of(exc)
    if status is not None:
        return ErrorInfo(FailureClass.HTTP_ERROR.value, status, str(status), error_type, message)
    if names & _NETWORK_NAMES or isinstance(exc, (ConnectionError, ssl.SSLError, socket.gaierror)):
        return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, None, error_type, message)
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return ErrorInfo(FailureClass.NETWORK_ERROR.value, None, errno.errorcode.get(exc.errno), error_type, message)
    return ErrorInfo(FailureClass.OTHER.value, None, None, error_type, message)


# ---------------------------------------------------------------------------
# Provider metadata

_SECRET_KEY = re.compile(r"(key|token|secret|passw|credential|auth|cookie|session|signature|private)", re.I)
_PRIMITIVES = (str, int, float, bool, type(None))


def scrub_metadata(source: Any) -> dict:
    """The primitive fields of a provider's sandbox object, minus anything credential-shaped.

    Providers return tokens beside ids (e2b's envdAccessToken, for one), and a
    result record travels to logs, Postgres and object storage; so the rule is
    an allow-list of primitive values under a deny-list of key names.
    """
    if source is None:
        return {}
    if isinstance(source, dict):
        items = source.items()
    else:
        items = ((k, getattr(source, k, None)) for k in _public_attrs(source))
    out = {}
    for key, value in items:
        key = str(key)
        if key.startswith("_") or _SECRET_KEY.search(key):
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, datetime):
            value = value.isoformat()
        if isinstance(value, _PRIMITIVES):
            out[key] = truncate(value, OUTPUT_LIMIT) if isinstance(value, str) else value
    return out


def _public_attrs(obj: Any) -> list[str]:
    names = set()
    if hasattr(obj, "__dict__"):
        names.update(vars(obj))
    for klass in type(obj).__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, property):
                names.add(name)
    return sorted(n for n in names if not n.startswith("_"))
