"""The object-store sink: a crash-safe copy of the run directory in S3-compatible storage.

The seed system streamed raw results into one multipart upload (a crash left
no object at all) and re-uploaded its whole log every 30 s. This sink instead
follows the run directory (see loadgen.sinks.base) and writes, under
``<prefix>/<run_id>/``:

- ``raw/part-NNNNNN.jsonl``, ``metrics/part-NNNNNN.jsonl``, ``log/part-NNNNNN.log``:
  numbered chunks of whole lines, each written once, every few seconds or
  every few MiB, so a crash loses at most what was not yet due;
- ``manifest.json``: every chunk with its size, line count and sha256,
  rewritten after each chunk (see loadgen.sinks.s3_manifest);
- ``run.json`` at start, ``heartbeat.json`` overwritten when it changes;
- at the end ``raw.jsonl`` assembled from the chunks (loadgen.sinks.s3_assemble)
  and ``meta.json``.

Progress lives in ``<run_path>/.objectstore-state.json`` (loadgen.sinks.s3_streams),
which is why ``loadgen store upload`` (the same code, run over a directory
later) neither duplicates nor skips a line.

Blocking: all network I/O is boto3 over sockets that gevent has monkey-patched
in the Locust master, so an upload waits cooperatively; the only CPU work is
sha256 over chunk-sized buffers, with a yield between chunks.

Length: one sink whose crash-safety argument (pending chunk, manifest,
assembly) runs through the whole class; its helpers live in the s3_* modules
and the command in s3_command.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from pathlib import Path
from typing import Optional

import orjson
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from loadgen import rundir
from loadgen.sinks.base import RunContext, Sink, SinkReport
from loadgen.sinks import s3_manifest
from loadgen.sinks.s3_assemble import MIN_PART, STREAM_PART, Assembler
from loadgen.sinks.s3_config import ConfigError, Redactor, make_client, safe_url, settings_from_env
from loadgen.sinks.s3_streams import (
    RAW,
    STATE_FILE,
    STREAMS,
    StateFile,
    cut,
    describe_chunk,
    file_size,
    hash_update,
    read_range,
    sha256_hex,
)

LOG = logging.getLogger("loadgen.objectstore")

CHUNK_BYTES = 8 * 1024 * 1024
FLUSH_SECONDS = 5.0
AUX_FLUSH_SECONDS = 30.0
FINISH_TIMEOUT = 120.0

# Errors that waiting will not fix: stop retrying and say what to change.
_HINTS = {
    "NoSuchBucket": "create the bucket or fix --bucket",
    "InvalidBucketName": "fix --bucket",
    "AccessDenied": "the credentials lack permission on this bucket/prefix (needs Get/Put/List/DeleteObject and multipart)",
    "AllAccessDisabled": "access to this bucket is disabled",
    "InvalidAccessKeyId": "check TIGRIS_STORAGE_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID (value not shown)",
    "SignatureDoesNotMatch": "check the secret key and region (values not shown)",
    "AuthorizationHeaderMalformed": "check AWS_REGION / AWS_DEFAULT_REGION",
    "InvalidToken": "refresh AWS_SESSION_TOKEN",
    "ExpiredToken": "refresh the session credentials",
}
_PART_KEY = re.compile(r"^(raw|metrics|log)/part-\d{6}\.(jsonl|log)$")


class ObjectStoreError(Exception):
    """A failure with a message already stripped of secrets. `permanent`: retrying will not help."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def describe_error(exc: BaseException, redactor: Redactor) -> tuple[str, bool]:
    """(message without secrets, permanent?) for any exception an upload can raise."""
    if isinstance(exc, ObjectStoreError):
        return str(exc), exc.permanent
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "?")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        message = f"{exc.operation_name} failed: {code} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")
        hint = _HINTS.get(code)
        if hint:
            message += f"; {hint}"
        return redactor.text(message), hint is not None
    if isinstance(exc, BotoCoreError):
        return redactor.text(f"{type(exc).__name__}: {exc}"), False
    if isinstance(exc, ValueError):  # the local file disagrees with what was uploaded
        return redactor.text(str(exc)), True
    return redactor.text(f"{type(exc).__name__}: {exc}"), False


def key_root(prefix: str, run_id: str) -> str:
    prefix = (prefix or "").strip("/")
    return f"{prefix}/{run_id}/" if prefix else f"{run_id}/"


def _dumps_doc(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


class ObjectStoreSink(Sink):
    """Copies a run directory to ``s3://<bucket>/<prefix>/<run_id>/`` as it grows.

    Use `from_options(bucket, prefix)` from the Locust option wiring; the
    keyword arguments exist for tests and the benchmark.
    """

    name = "objectstore"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        settings=None,
        client=None,
        chunk_bytes: int = CHUNK_BYTES,
        flush_seconds: float = FLUSH_SECONDS,
        aux_flush_seconds: float = AUX_FLUSH_SECONDS,
        min_part_bytes: int = MIN_PART,
        part_bytes: int = STREAM_PART,
        finish_timeout: float = FINISH_TIMEOUT,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        log=None,
    ):
        if not bucket:
            raise ConfigError("--bucket is empty")
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.settings = settings or settings_from_env()
        self.redactor = Redactor(self.settings.secrets())
        if client is None:
            client, secrets = make_client(
                self.settings, max_attempts=max_attempts, connect_timeout=connect_timeout, read_timeout=read_timeout
            )
            self.redactor.add(secrets)
        self.client = client
        self.chunk_bytes = chunk_bytes
        self.flush_seconds = flush_seconds
        self.aux_flush_seconds = aux_flush_seconds
        self.min_part_bytes = min_part_bytes
        self.part_bytes = part_bytes
        self.finish_timeout = finish_timeout
        self.log = log or LOG
        self.ctx: Optional[RunContext] = None
        self.root = ""
        self.last_error: Optional[str] = None
        self.stats = {"chunks": 0, "chunk_bytes": 0, "requests": 0}
        self._lock = threading.RLock()  # sync greenlet vs finish; gevent-aware once monkey-patched
        self._state: Optional[StateFile] = None
        self._target: Optional[dict] = None
        self._prepared = False
        self._heartbeat_sha: Optional[str] = None
        self._last_flush: dict[str, float] = {}
        # sha256 of raw.jsonl's uploaded prefix, kept while this process saw every raw chunk,
        # so the end of the run need not re-read chunks it only copies server-side
        self._raw_digest = None
        self._raw_digest_end = 0

    @classmethod
    def from_options(cls, bucket: Optional[str], prefix: Optional[str] = "", **kwargs) -> Optional["ObjectStoreSink"]:
        """The sink for ``--bucket``/``--prefix``, configured from the environment; None without a bucket."""
        if not bucket:
            return None
        return cls(bucket, prefix or "", **kwargs)

    def __repr__(self) -> str:
        return f"ObjectStoreSink(s3://{self.bucket}/{self.root or key_root(self.prefix, '<run_id>')})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.root}"

    # -- Sink contract

    def check(self) -> Optional[str]:
        """Before the run: a bucket that does not exist, refused credentials or an endpoint that
        cannot be reached, as one line naming the fix; else None."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            code = {"404": "NoSuchBucket", "403": "AccessDenied"}.get(code, code)
            if code in _HINTS:
                return self.redactor.text(f"s3://{self.bucket} at {self.settings.describe()}: {code}: {_HINTS[code]}")
            self.log.warning("objectstore: %s; the run starts anyway and the sink retries",
                             describe_error(exc, self.redactor)[0])
        except (EndpointConnectionError, ValueError) as exc:
            return self.redactor.text(f"cannot reach the object store at {self.settings.describe()} ({exc}): "
                                      "fix the endpoint URL")
        except Exception as exc:  # noqa: BLE001 - anything else: the run's retries deal with it
            self.log.warning("objectstore: %s; the run starts anyway and the sink retries",
                             describe_error(exc, self.redactor)[0])
        return None

    def start(self, ctx: RunContext) -> None:
        """Open the state and upload run.json. A misconfiguration (no bucket, bad key) raises here,
        before any sandbox exists; an unreachable store is only logged, and sync() catches up."""
        self.ctx = ctx
        if ctx.log is not None:
            self.log = ctx.log
        self.root = key_root(self.prefix, ctx.run_id)
        try:
            self._state = StateFile(Path(ctx.run_path))
        except (ValueError, OSError) as exc:
            raise ObjectStoreError(
                f"cannot read {Path(ctx.run_path) / STATE_FILE} ({exc}); move it away and the upload "
                "resumes from the bucket's manifest", permanent=True,
            ) from None
        self._target = self._state.target(self.settings.endpoint_url, self.bucket, self.root)
        now = time.monotonic()
        self._last_flush = {spec.name: now for spec in STREAMS}
        self.log.info("objectstore: copying the run to %s at %s", self.url, self.settings.describe())
        try:
            self._guarded(self._prepare_and_identity)
        except ObjectStoreError as exc:
            if exc.permanent:
                raise
            self.log.warning("objectstore: %s; will retry while the run goes on", exc)

    def sync(self) -> None:
        """Upload whatever chunks are due, and the heartbeat. Raises ObjectStoreError (secret-free)."""
        self._require_started()

        def work():
            self._prepare_and_identity()
            self._sync_streams(final=False)
            self._put_heartbeat()

        self._guarded(work)

    def finish(self, meta: Optional[dict], status: str) -> SinkReport:
        """Drain, assemble raw.jsonl, upload meta.json and the final manifest; retry with backoff
        until `finish_timeout`. Never raises: an incomplete copy is reported, with the command
        that completes it."""
        if self._target is None:
            return SinkReport(self.name, False, "object store sink was never started")
        deadline = time.monotonic() + self.finish_timeout
        delay, attempt = 1.0, 0
        while True:
            attempt += 1
            try:
                self._guarded(lambda: self._finish_once(meta, status))
                return SinkReport(self.name, True, self._summary(), self._extra())
            except ObjectStoreError as exc:
                if exc.permanent or time.monotonic() + delay > deadline:
                    break
                self.log.warning(
                    "objectstore: finishing %s failed (attempt %d): %s; retrying in %.0f s, %d bytes not yet uploaded",
                    self.url, attempt, exc, delay, self.backlog_bytes,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception as exc:  # noqa: BLE001 - finish must return, whatever happened
                self.last_error, _ = describe_error(exc, self.redactor)
                break
        missing = [f"{self.backlog_bytes} bytes of raw/metrics/log not uploaded"] if self.backlog_bytes else []
        if rundir.RAW not in self._target["objects"]:
            missing.append("raw.jsonl not assembled")
        if meta is not None and rundir.META not in self._target["objects"]:
            missing.append("meta.json not uploaded")
        detail = (
            f"object store copy at {self.url} is INCOMPLETE after {attempt} attempt(s): "
            f"{', '.join(missing) or 'final manifest not written'}; last error: {self.last_error}. "
            f"The run directory is intact; complete the copy with: "
            f"loadgen store upload {self.ctx.run_path} --bucket {self.bucket}"
            + (f" --prefix {self.prefix}" if self.prefix else "")
        )
        self.log.error("objectstore: %s", detail)
        return SinkReport(self.name, False, detail, self._extra())

    @property
    def backlog_bytes(self) -> int:
        """Bytes of raw.jsonl, metrics.jsonl and coordinator.log not yet in the bucket."""
        if self._target is None:
            return 0
        run_path = Path(self.ctx.run_path)
        return sum(
            max(0, file_size(run_path / spec.source) - self._target["streams"][spec.name]["offset"]) for spec in STREAMS
        )

    # -- steps

    def _require_started(self):
        if self._target is None:
            raise ObjectStoreError("object store sink used before start()", permanent=True)

    def _guarded(self, work):
        """Run `work` under the lock; re-raise any failure as a secret-free ObjectStoreError."""
        with self._lock:
            try:
                return work()
            except Exception as exc:  # noqa: BLE001
                message, permanent = describe_error(exc, self.redactor)
                self.last_error = message
                raise ObjectStoreError(message, permanent) from None

    def _request(self, method, **kwargs):
        self.stats["requests"] += 1
        return method(**kwargs)

    def _put(self, name: str, data: bytes) -> None:
        self._request(self.client.put_object, Bucket=self.bucket, Key=self.root + name, Body=data)

    def _save(self) -> None:
        self._state.save()

    def _prepare_and_identity(self) -> None:
        if not self._prepared:
            self._adopt_remote()
            if self._target["streams"][RAW.name]["offset"] == 0:
                self._raw_digest, self._raw_digest_end = hashlib.sha256(), 0
            self._prepared = True
        run_json = Path(self.ctx.run_path) / rundir.RUN
        if run_json.exists():
            self._put_doc(rundir.RUN, run_json.read_bytes())
        elif self.ctx.identity:
            self._put_doc(rundir.RUN, _dumps_doc(self.ctx.identity))

    def _adopt_remote(self) -> None:
        """Without local progress for this target (state file lost, or a copy of the run directory
        uploaded from elsewhere), take over the chunks the bucket's manifest lists, as far as they
        match the local files byte for byte, so nothing is uploaded twice."""
        target = self._target
        if any(s["chunks"] or s["pending"] for s in target["streams"].values()):
            return
        try:
            body = self._request(self.client.get_object, Bucket=self.bucket, Key=self.root + s3_manifest.MANIFEST)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return
            if code in ("AccessDenied", "403"):  # a write-only key: S3 answers 403 for a missing key too
                self.log.warning("objectstore: cannot read %s%s (no read permission); not resuming from the bucket",
                                 self.url, s3_manifest.MANIFEST)
                return
            raise
        manifest = s3_manifest.parse(body)
        run_path = Path(self.ctx.run_path)
        adopted = 0
        for spec in STREAMS:
            stream = target["streams"][spec.name]
            for chunk in manifest["streams"].get(spec.name, {}).get("chunks", []):
                path = run_path / spec.source
                if chunk["part"] != len(stream["chunks"]) + 1 or chunk["offset"] != stream["offset"]:
                    break
                if file_size(path) < chunk["offset"] + chunk["bytes"]:
                    break
                data = self.redactor.data(read_range(path, chunk["offset"], chunk["bytes"]))
                if sha256_hex(data) != chunk["sha256"]:
                    self.log.warning("objectstore: %s in the bucket differs from the local file; it will be replaced", chunk["key"])
                    break
                stream["chunks"].append(chunk)
                stream["offset"] = chunk["offset"] + chunk["bytes"]
                adopted += 1
        raw_info = manifest.get("objects", {}).get(rundir.RAW)
        raw_chunks = target["streams"][RAW.name]["chunks"]
        if raw_info and raw_info.get("chunks") == len(raw_chunks) and raw_info.get("bytes") == sum(c["bytes"] for c in raw_chunks):
            target["objects"][rundir.RAW] = raw_info
        for name in (rundir.RUN, rundir.META):
            info = manifest.get("objects", {}).get(name)
            local = run_path / name
            if info and local.exists() and sha256_hex(self.redactor.data(local.read_bytes())) == info.get("sha256"):
                target["objects"][name] = info
        if adopted:
            self.log.info("objectstore: resuming from the bucket's manifest: %d chunks already there", adopted)
        self._save()

    def _put_doc(self, name: str, data: bytes) -> None:
        """A small whole-file object (run.json, meta.json), uploaded only when its content changed."""
        data = self.redactor.data(data)
        digest = sha256_hex(data)
        if self._target["objects"].get(name, {}).get("sha256") == digest:
            return
        self._put(name, data)
        self._target["objects"][name] = {"key": name, "bytes": len(data), "sha256": digest}
        self._save()

    def _put_heartbeat(self) -> None:
        path = Path(self.ctx.run_path) / rundir.HEARTBEAT
        try:
            data = self.redactor.data(path.read_bytes())
        except FileNotFoundError:
            return
        digest = sha256_hex(data)
        if digest != self._heartbeat_sha:
            self._put(rundir.HEARTBEAT, data)
            self._heartbeat_sha = digest

    def _put_manifest(self) -> None:
        self._put(s3_manifest.MANIFEST, s3_manifest.dumps(s3_manifest.build(self.ctx.run_id, self._target)))

    def _sync_streams(self, final: bool) -> None:
        run_path = Path(self.ctx.run_path)
        now = time.monotonic()
        for spec in STREAMS:
            stream = self._target["streams"][spec.name]
            path = run_path / spec.source
            if stream["pending"]:
                self._upload_chunk(stream, stream["pending"], None, path)
            size = file_size(path)
            if size < stream["offset"]:
                raise ObjectStoreError(
                    f"{spec.source} shrank below the {stream['offset']} bytes already uploaded; "
                    "it must only be appended to", permanent=True,
                )
            available = size - stream["offset"]
            interval = self.flush_seconds if spec is RAW else self.aux_flush_seconds
            due = final or available >= self.chunk_bytes or now - self._last_flush.get(spec.name, 0.0) >= interval
            if not available or not due:
                continue
            while stream["offset"] < size:  # the backlog as of now; later lines wait for the next sync
                data = cut(path, stream["offset"], self.chunk_bytes, final, spec.keep_torn_tail)
                if not data:
                    break
                data = self.redactor.data(data)
                entry = describe_chunk(spec, len(stream["chunks"]) + 1, stream["offset"], data)
                stream["pending"] = entry
                self._save()  # intent first: a retry after a crash re-sends exactly these bytes
                self._upload_chunk(stream, entry, data, path)
            self._last_flush[spec.name] = time.monotonic()

    def _upload_chunk(self, stream: dict, entry: dict, data: Optional[bytes], path: Path) -> None:
        if data is None:
            data = self.redactor.data(read_range(path, entry["offset"], entry["bytes"]))
            if sha256_hex(data) != entry["sha256"]:
                raise ObjectStoreError(
                    f"{path.name} changed under chunk {entry['key']} (bytes {entry['offset']}.."
                    f"{entry['offset'] + entry['bytes']}); it must only be appended to", permanent=True,
                )
        self._put(entry["key"], data)
        stream["chunks"].append(entry)
        try:
            self._put_manifest()
        except Exception:
            stream["chunks"].pop()  # still pending: the next attempt re-sends the same bytes
            raise
        stream["offset"] = entry["offset"] + entry["bytes"]
        stream["pending"] = None
        self._save()
        if stream is self._target["streams"][RAW.name] and self._raw_digest is not None:
            if entry["offset"] == self._raw_digest_end:
                hash_update(self._raw_digest, data)
                self._raw_digest_end = stream["offset"]
            else:
                self._raw_digest = None
        self.stats["chunks"] += 1
        self.stats["chunk_bytes"] += len(data)
        time.sleep(0)

    def _list_root(self) -> dict[str, int]:
        sizes = {}
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.root}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                sizes[obj["Key"][len(self.root):]] = obj["Size"]
            if not page.get("IsTruncated"):
                return sizes
            token = page["NextContinuationToken"]

    def _reconcile(self) -> None:
        """Make the bucket hold exactly the chunks the state lists: re-send any that are missing or
        the wrong size (a bucket wiped or a store that lost a write), delete stray part objects."""
        try:
            present = self._list_root()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "403"):
                raise
            self.log.warning("objectstore: cannot list %s (no list permission); skipping the final check", self.url)
            return
        run_path = Path(self.ctx.run_path)
        wanted = set()
        repaired = 0
        for spec in STREAMS:
            for chunk in self._target["streams"][spec.name]["chunks"]:
                wanted.add(chunk["key"])
                if present.get(chunk["key"]) != chunk["bytes"]:
                    data = self.redactor.data(read_range(run_path / spec.source, chunk["offset"], chunk["bytes"]))
                    if sha256_hex(data) != chunk["sha256"]:
                        raise ObjectStoreError(f"{spec.source} changed under chunk {chunk['key']}", permanent=True)
                    self._put(chunk["key"], data)
                    repaired += 1
        stray = sorted(k for k in present if _PART_KEY.match(k) and k not in wanted)
        for start in range(0, len(stray), 1000):
            batch = [{"Key": self.root + k} for k in stray[start : start + 1000]]
            self._request(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        if rundir.RAW in self._target["objects"] and present.get(rundir.RAW) != self._target["objects"][rundir.RAW]["bytes"]:
            del self._target["objects"][rundir.RAW]  # re-assemble
        if repaired or stray:
            self.log.warning("objectstore: repaired %d missing chunk(s), removed %d stray part object(s) under %s", repaired, len(stray), self.url)

    def _finish_once(self, meta: Optional[dict], status: str) -> None:
        self._prepare_and_identity()
        self._sync_streams(final=True)
        self._put_heartbeat()
        self._reconcile()
        chunks = self._target["streams"][RAW.name]["chunks"]
        assembled = self._target["objects"].get(rundir.RAW)
        if not (assembled and assembled["chunks"] == len(chunks) and assembled["bytes"] == sum(c["bytes"] for c in chunks)):
            assembler = Assembler(
                self.client, self.bucket, self.root, self.redactor, self.log, self.min_part_bytes, self.part_bytes
            )
            total = sum(c["bytes"] for c in chunks)
            known = self._raw_digest.hexdigest() if self._raw_digest is not None and self._raw_digest_end == total else None
            try:
                self._target["objects"][rundir.RAW] = assembler.assemble(
                    rundir.RAW, Path(self.ctx.run_path) / RAW.source, chunks, self.settings.assemble, known
                )
            finally:
                self.stats["requests"] += assembler.stats["requests"]
                self.stats["assembly"] = assembler.stats
            self._save()
        if meta is not None:
            self._put_doc(rundir.META, _dumps_doc(meta))
        self._target["finished"] = meta is not None
        self._target["status"] = status
        self._put_manifest()
        self._save()

    def _summary(self) -> str:
        raw = self._target["streams"][RAW.name]
        lines = sum(c["lines"] for c in raw["chunks"])
        method = self._target["objects"].get(rundir.RAW, {}).get("method", "not assembled")
        text = f"{self.url}: {lines} results in {len(raw['chunks'])} chunks, raw.jsonl {method}"
        if not self._target["finished"]:
            text += "; no meta.json (the run did not finish)"
        torn = self.backlog_bytes
        if torn:
            text += f"; {torn} bytes of an unterminated last line not uploaded"
        return text

    def _extra(self) -> dict:
        raw = self._target["streams"][RAW.name]
        return {
            "url": self.url,
            "endpoint": safe_url(self.settings.endpoint_url) if self.settings.endpoint_url else None,
            "raw_lines": sum(c["lines"] for c in raw["chunks"]),
            "raw_parts": len(raw["chunks"]),
            "raw_assembled": self._target["objects"].get(rundir.RAW, {}).get("method"),
            "backlog_bytes": self.backlog_bytes,
        }
