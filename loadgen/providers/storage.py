"""The storage benchmark's adapter: one iteration is one object in an S3-compatible bucket.

The daily benchmark's storage table times an upload, a download and a delete
of a random 1, 4, 10 or 16 MiB object per iteration. Mapping them onto the
sandbox lifecycle gives the benchmark everything a sandbox run has (one
record per iteration exactly once, the journal, the sinks, the schedules,
the exit codes, ``loadgen reap`` for what a crash left behind) without a
second engine:

- create = the upload (``latency_ms``): a PUT of random bytes, unique to the
  object (see ``RandomBlock``);
- readiness = the download (``first_command_ms``): a GET of the whole object,
  then its size and SHA-256 checked against what was uploaded (a mismatch
  fails the iteration: ``size_mismatch`` or ``checksum_mismatch``);
- no liveness probe (the benchmark has none);
- destroy = the delete (``destroy_ms``).

Each phase's time is the SDK call alone (``wire_times``): making the object
and hashing the download happen outside it, the hashing in gevent's thread
pool so that it never holds the hub while other iterations' transfers are
being timed.
The record's ``provider_metadata`` holds the object's ``size_bytes`` and
``sha256`` (of the upload), and ``readiness_output`` what the download gave
(``<bytes> bytes sha256:<hex>``), so every figure and check can be redone
from the records.

Where it goes is never a default: ``LOADGEN_STORAGE_ENDPOINT`` and
``LOADGEN_STORAGE_BUCKET`` must be set (an AWS run names AWS's endpoint,
e.g. ``https://s3.us-east-1.amazonaws.com``). Credentials come from
``LOADGEN_STORAGE_ACCESS_KEY_ID`` / ``LOADGEN_STORAGE_SECRET_ACCESS_KEY``,
else boto3's own chain (``AWS_ACCESS_KEY_ID`` ..., profiles, roles); they
appear in no record, log line or message (``loadgen.sinks.s3_config``'s
Redactor masks them in error messages). botocore's retries are off (one
attempt) and so are its optional CRC checksums, which not every
S3-compatible store takes; the SHA-256 check is loadgen's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

import gevent

from loadgen.providers.base import CommandResult, Provider, ProviderSettings
from loadgen.report.scoring import MIB, STORAGE_SIZES_MIB as SIZES_MIB
from loadgen.result import ErrorInfo, FailureClass, classify_exception, truncate

log = logging.getLogger("loadgen.providers.storage")

NAME = "storage"

ENDPOINT_ENV = "LOADGEN_STORAGE_ENDPOINT"
BUCKET_ENV = "LOADGEN_STORAGE_BUCKET"
KEY_ID_ENV = "LOADGEN_STORAGE_ACCESS_KEY_ID"
SECRET_ENV = "LOADGEN_STORAGE_SECRET_ACCESS_KEY"
REGION_ENV = "LOADGEN_STORAGE_REGION"
PREFIX_ENV = "LOADGEN_STORAGE_PREFIX"
NAME_ENV = "LOADGEN_STORAGE_NAME"
SIZES_ENV = "LOADGEN_STORAGE_SIZES_MIB"
DEFAULT_PREFIX = "loadgen-storage/"
# What boto3's own chain reads, passed on to it; anything else (TIGRIS_STORAGE_* for one) is not.
_PASSED_ON = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
              "AWS_PROFILE", "LOADGEN_S3_ADDRESSING_STYLE")


class ObjectMismatch(Exception):
    """The download is not what was uploaded (its size or its SHA-256)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass
class StoredObject:
    """One iteration's object: where it is, what it holds, and the SDK calls' own times."""

    key: str
    size_bytes: int
    sha256: str
    times: dict = field(default_factory=dict)  # operation -> (sent, answered), epoch seconds


def sizes_from_env(environ=None) -> tuple:
    """The object sizes (MiB) to draw from: 1, 4, 10 and 16, or LOADGEN_STORAGE_SIZES_MIB ("1,4")."""
    text = ((os.environ if environ is None else environ).get(SIZES_ENV) or "").strip()
    if not text:
        return SIZES_MIB
    try:
        sizes = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(not 0 < s <= 5 * 1024 for s in sizes):
        raise ValueError(f"{SIZES_ENV}={text!r}: want sizes in MiB, comma-separated, each above 0 and at most "
                         "5,120 (one PUT)")
    return sizes


def size_for(run_id: str, idx: int, sizes=SIZES_MIB) -> int:
    """The size of iteration ``idx``'s object in bytes: drawn at random from ``sizes``, seeded by the run
    and the iteration, so a run's mix is known before it starts and the same for every process."""
    return int(random.Random(f"{run_id}/{idx}").choice(sizes) * MIB)


def object_name(endpoint: str) -> str:
    """The store as the table names it: tigris, r2 or aws by the endpoint's host, else the host itself."""
    from loadgen.sinks.s3_config import provider_of

    kind = provider_of(endpoint)
    return kind if kind != "custom" else (urlsplit(endpoint).hostname or endpoint)


TAIL_BYTES = 32


class RandomBlock:
    """Objects of random bytes at the cost of a copy: one random block per process, made once.

    An object of ``size`` bytes is the block's first ``size - 32`` bytes and
    32 fresh random bytes, so no two objects are alike (nothing a store
    could compress or recognise) and its SHA-256 is the block prefix's,
    computed once per size, carried on over the tail. Making a 16 MiB object
    from scratch (os.urandom and a hash) costs tens of milliseconds of CPU
    in the create phase, before the upload starts: at 16 at once on a busy
    machine, hundreds, which would show as the creates starting late."""

    def __init__(self, sizes_bytes):
        biggest = max(sizes_bytes)
        self.block = os.urandom(max(0, biggest - TAIL_BYTES))
        self.prefix_hash = {size: hashlib.sha256(memoryview(self.block)[:max(0, size - TAIL_BYTES)])
                            for size in sizes_bytes}

    def make(self, size: int) -> tuple[bytes, str]:
        tail = os.urandom(min(size, TAIL_BYTES))
        head = memoryview(self.block)[:size - len(tail)]
        digest = self.prefix_hash[size].copy()
        digest.update(tail)
        return b"".join((head, tail)), digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def off_hub(fn, *args):
    """``fn(*args)`` in gevent's thread pool (hashlib lets go of the GIL on big buffers), so a 16 MiB
    download is hashed without stopping the other iterations' clocks."""
    return gevent.get_hub().threadpool.apply(fn, args)


class StorageProvider(Provider):
    name = NAME
    required_env = (ENDPOINT_ENV, BUCKET_ENV)
    optional_env = (KEY_ID_ENV, SECRET_ENV, REGION_ENV, PREFIX_ENV, NAME_ENV, SIZES_ENV)
    asynchronous = False
    liveness_probe = False  # upload, download, delete: nothing between the download and the delete
    checks_version = False  # the download checks itself (size and SHA-256)
    fds_per_sandbox = 1  # one request at a time per iteration

    def __init__(self, settings: ProviderSettings):
        super().__init__(settings)
        self.client = None
        self.secrets: list = []

    # -- setup -------------------------------------------------------------------
    @staticmethod
    def s3_environ(environ=None) -> dict:
        """The environment loadgen.sinks.s3_config resolves this benchmark's store from: the explicit
        endpoint, this benchmark's own keys when given, and nothing of the object-store sink's."""
        env = os.environ if environ is None else environ
        out = {k: env[k] for k in _PASSED_ON if env.get(k)}
        out["AWS_ENDPOINT_URL_S3"] = (env.get(ENDPOINT_ENV) or "").strip()
        if env.get(KEY_ID_ENV) or env.get(SECRET_ENV):
            out.pop("AWS_SESSION_TOKEN", None)
            out["AWS_ACCESS_KEY_ID"] = env.get(KEY_ID_ENV) or ""
            out["AWS_SECRET_ACCESS_KEY"] = env.get(SECRET_ENV) or ""
        if env.get(REGION_ENV):
            out["AWS_REGION"] = env[REGION_ENV]
        return out

    def setup(self) -> None:
        from loadgen.sinks.s3_config import ConfigError, Redactor, make_client, safe_url, settings_from_env

        endpoint = (os.environ.get(ENDPOINT_ENV) or "").strip()
        if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname:
            raise ValueError(f"{ENDPOINT_ENV} must be an http:// or https:// URL (got {safe_url(endpoint)!r})")
        self.bucket = os.environ[BUCKET_ENV].strip()
        self.prefix = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
        self.target = (os.environ.get(NAME_ENV) or "").strip() or object_name(endpoint)
        self.endpoint = safe_url(endpoint)
        self.sizes = sizes_from_env()
        self.objects = RandomBlock([int(x * MIB) for x in self.sizes])
        s = self.settings
        try:
            settings = settings_from_env(self.s3_environ())
            self.client, self.secrets = make_client(
                settings, max_attempts=1, connect_timeout=min(10.0, s.create_timeout_s),
                read_timeout=max(s.create_timeout_s, s.command_timeout_s, s.destroy_timeout_s),
                max_pool_connections=max(16, int(s.users_in_process) + 4), user_agent="loadgen-storage",
                checksums="when_required")
        except ConfigError as exc:
            if str(exc).startswith("no object-store credentials"):
                raise ValueError(f"storage: no credentials: set {KEY_ID_ENV} and {SECRET_ENV} (or AWS_ACCESS_KEY_ID "
                                 "and AWS_SECRET_ACCESS_KEY, a profile or a role)") from None
            raise ValueError(f"storage: {exc}") from None
        self.redactor = Redactor(self.secrets)
        self._check_bucket()
        log.info("storage: %s, bucket %s, objects of %s MiB", settings.describe(), self.bucket,
                 ", ".join(f"{x:g}" for x in self.sizes))

    def _check_bucket(self) -> None:
        """Refuse a bucket that is not there (or not ours) before the first upload, in one clear line."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = _status(exc)
            why = {404: "does not exist", 403: "is not readable with these credentials"}.get(status, f"answered {status}")
            raise ValueError(f"storage: bucket {self.bucket!r} at {self.endpoint} {why}") from None
        except BotoCoreError as exc:
            raise ValueError(f"storage: {self.endpoint} cannot be reached: {self.redactor.text(exc)}") from None

    # -- the operations ---------------------------------------------------------------
    def create(self, tags: dict[str, str]) -> StoredObject:
        """Upload an object of the iteration's size (made before the clock starts)."""
        s = self.settings
        idx = int(tags["sandbox_idx"])
        size = size_for(tags["run_id"], idx, self.sizes)
        data, digest = self.objects.make(size)
        obj = StoredObject(f"{self.prefix}{tags['run_id']}/{idx:06d}-{size // 1024}k", size, digest)
        with gevent.Timeout(s.create_timeout_s + s.late_create_window_s):
            sent = time.time()
            self.client.put_object(Bucket=self.bucket, Key=obj.key, Body=data, ContentLength=size,
                                   Metadata={"loadgen-run-id": tags["run_id"], "loadgen-sandbox-idx": str(idx)})
            obj.times["create"] = (sent, time.time())
        return obj

    def run(self, handle: StoredObject, command: str, timeout: float) -> CommandResult:
        """Download the whole object, then check its size and SHA-256 (the command is not used)."""
        with gevent.Timeout(timeout):
            sent = time.time()
            response = self.client.get_object(Bucket=self.bucket, Key=handle.key)
            data = response["Body"].read()
            handle.times["run"] = (sent, time.time())
        if len(data) != handle.size_bytes:
            raise ObjectMismatch("size_mismatch", f"downloaded {len(data)} bytes of {handle.key}, "
                                                  f"uploaded {handle.size_bytes}")
        digest = off_hub(_sha256, data)
        if digest != handle.sha256:
            raise ObjectMismatch("checksum_mismatch", f"the download of {handle.key} has sha256 {digest}, "
                                                      f"the upload had {handle.sha256}")
        return CommandResult(0, f"{len(data)} bytes sha256:{digest}", "")

    def destroy(self, handle: StoredObject, timeout: float) -> bool:
        with gevent.Timeout(timeout):
            sent = time.time()
            self.client.delete_object(Bucket=self.bucket, Key=handle.key)
            handle.times["destroy"] = (sent, time.time())
        return True

    def destroy_id(self, sandbox_id: str, timeout: float) -> bool:
        """Delete a leftover object by its key (``loadgen reap``): S3 answers a delete of a missing key
        with success too, so a HEAD first tells "already gone" apart."""
        from botocore.exceptions import ClientError

        with gevent.Timeout(timeout):
            try:
                self.client.head_object(Bucket=self.bucket, Key=sandbox_id)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
            self.client.delete_object(Bucket=self.bucket, Key=sandbox_id)
        return True

    # -- describing results -----------------------------------------------------------
    def sandbox_id(self, handle: StoredObject) -> Optional[str]:
        return handle.key

    def metadata(self, handle: StoredObject) -> Any:
        return {"target": self.target, "endpoint": self.endpoint, "bucket": self.bucket, "object": handle.key,
                "size_bytes": handle.size_bytes, "size_mib": round(handle.size_bytes / MIB, 6),
                "sha256": handle.sha256}

    def wire_times(self, handle: Any, operation: str = "create") -> Optional[tuple[float, float]]:
        times = getattr(handle, "times", None) or {}
        return times.get(operation)

    def classify(self, exc: BaseException) -> ErrorInfo:
        info = self._classify(exc)
        redact = getattr(self, "redactor", None)
        if redact is not None and info.error_message:
            info = ErrorInfo(info.failure_class, info.http_status, info.error_code, info.error_type,
                             redact.text(info.error_message))
        return info

    def _classify(self, exc: BaseException) -> ErrorInfo:
        from botocore.exceptions import ClientError

        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, ObjectMismatch):
            return ErrorInfo(FailureClass.OTHER.value, None, exc.code, error_type, message)
        if isinstance(exc, gevent.Timeout):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        if isinstance(exc, ClientError):
            status = _status(exc)
            code = (exc.response.get("Error") or {}).get("Code") or (str(status) if status else None)
            if status is not None:
                return ErrorInfo(FailureClass.HTTP_ERROR.value, status, code, error_type, message)
            return ErrorInfo(FailureClass.OTHER.value, None, code, error_type, message)
        return classify_exception(exc)


def _status(exc) -> Optional[int]:
    status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None
