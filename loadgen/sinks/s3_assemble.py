"""raw.jsonl as one object, built at the end from the chunks already in the bucket.

Readers want one file; crash safety wants many small ones. The end of a run
joins them with a multipart upload:

- ``copy`` (default): every chunk of at least `min_part` bytes (S3's 5 MiB
  minimum for all parts but the last) becomes a server-side UploadPartCopy
  and costs no upload bandwidth; consecutive smaller chunks are grouped and
  sent as one UploadPart of their bytes, read from the local file, until the
  group reaches `min_part`. Any part plan is therefore valid on S3, Tigris,
  MinIO and moto. If the store rejects the copy (a 4xx: copy unsupported, a
  write-only key without read permission, unequal part sizes) we fall back to
  ``stream`` once.
- ``stream``: the concatenation is uploaded in equal `part_bytes` parts (R2
  requires equal parts, so it is the default there).

Bytes that are sent (not copied) are the local chunks re-read and checked
against the sha256 recorded when each chunk was uploaded, so the object is
exactly the chunks' concatenation; its sha256 goes into the manifest. Up to
`workers` parts are in flight at once (greenlets under gevent, else threads):
against a real store each part is a round trip of tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from typing import Iterator, Optional

from botocore.exceptions import ClientError

from loadgen.sinks.s3_streams import _gevent_patched, hash_update, read_range, sha256_hex

MIN_PART = 5 * 1024 * 1024
STREAM_PART = 8 * 1024 * 1024
MAX_PARTS = 10_000


def plan_copy(chunks: list[dict], min_part: int = MIN_PART) -> list[tuple[str, list[dict]]]:
    """Parts for the copy strategy: ("copy", [chunk]) or ("upload", [chunk, ...]).

    Every part but the last is >= min_part: a copy part by choice, an upload
    group because it is only closed once it reaches min_part."""
    parts: list[tuple[str, list[dict]]] = []
    group: list[dict] = []
    group_bytes = 0
    for chunk in chunks:
        if not group and chunk["bytes"] >= min_part:
            parts.append(("copy", [chunk]))
            continue
        group.append(chunk)
        group_bytes += chunk["bytes"]
        if group_bytes >= min_part:
            parts.append(("upload", group))
            group, group_bytes = [], 0
    if group:
        parts.append(("upload", group))
    return parts


def stream_part_size(total: int, min_part: int = MIN_PART, part_bytes: int = STREAM_PART) -> int:
    return max(min_part, part_bytes, -(-total // MAX_PARTS))


def chunk_payloads(path: Path, chunks: list[dict], redactor) -> Iterator[tuple[dict, bytes]]:
    """Each chunk's bytes as uploaded (masked), re-read from the local file and verified."""
    for chunk in chunks:
        data = redactor.data(read_range(path, chunk["offset"], chunk["bytes"]))
        if sha256_hex(data) != chunk["sha256"]:
            raise ValueError(
                f"{path.name} bytes {chunk['offset']}..{chunk['offset'] + chunk['bytes']} no longer match "
                f"uploaded chunk {chunk['key']}; the local file was modified after upload"
            )
        time.sleep(0)  # under gevent: let other greenlets run between MiB-sized hashes
        yield chunk, data


class Assembler:
    def __init__(self, client, bucket: str, root: str, redactor, log, min_part: int = MIN_PART,
                 part_bytes: int = STREAM_PART, workers: int = 4):
        self.client = client
        self.bucket = bucket
        self.root = root
        self.redactor = redactor
        self.log = log
        self.min_part = min_part
        self.part_bytes = part_bytes
        self.workers = workers
        self.stats = {"put_bytes": 0, "copied_bytes": 0, "requests": 0}

    def assemble(self, name: str, path: Path, chunks: list[dict], mode: str, known_sha256: Optional[str] = None) -> dict:
        """Write root+name from the chunks; return its manifest entry. `known_sha256`: the digest of
        the chunks' concatenation if the caller kept a running one, so copied chunks need not be re-read."""
        key = self.root + name
        total = sum(c["bytes"] for c in chunks)
        info = {"key": name, "bytes": total, "lines": sum(c["lines"] for c in chunks), "chunks": len(chunks)}
        if total <= self.min_part:
            data = b"".join(d for _, d in chunk_payloads(path, chunks, self.redactor))
            self._request(self.client.put_object, Bucket=self.bucket, Key=key, Body=data)
            self.stats["put_bytes"] += len(data)
            return dict(info, sha256=sha256_hex(data), method="put")
        self._abort_stale(key)
        if mode == "copy":
            plan = plan_copy(chunks, self.min_part)
            if len(plan) <= MAX_PARTS:
                try:
                    digest = self._multipart(key, self._copy_parts(key, path, plan, known_sha256))
                    return dict(info, sha256=digest, method="multipart-copy")
                except ClientError as exc:
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
                    if not 400 <= status < 500:
                        raise
                    self.log.warning(
                        "objectstore: server-side copy refused (%s); assembling %s by streaming its bytes instead",
                        self.redactor.text(exc.response.get("Error", {}).get("Code", "")),
                        name,
                    )
        digest = self._multipart(key, self._stream_parts(key, path, chunks, stream_part_size(total, self.min_part, self.part_bytes), known_sha256))
        return dict(info, sha256=digest, method="multipart-stream")

    # -- multipart plumbing

    def _request(self, method, **kwargs):
        self.stats["requests"] += 1
        return method(**kwargs)

    def _abort_stale(self, key: str) -> None:
        """Uploads left open by a crash cost storage until aborted; none of them will be completed."""
        try:
            listing = self._request(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=key)
        except ClientError:
            return  # not every store lists uploads; their lifecycle rules clean up instead
        for upload in listing.get("Uploads", []):
            if upload.get("Key") == key:
                try:
                    self._request(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                except ClientError:
                    pass

    def _multipart(self, key: str, parts) -> str:
        """Run a multipart upload. `parts(upload_id)` is a generator that yields one zero-argument
        callable per part, in part order (reading and hashing happen there, in order), and at the
        end sets `parts.digest` to the sha256 of the whole object; the callables send the parts,
        up to `workers` at a time."""
        upload_id = self._request(self.client.create_multipart_upload, Bucket=self.bucket, Key=key)["UploadId"]
        try:
            done = list(bounded_map(parts(upload_id), self.workers))
            digest = parts.digest
            self._request(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )
            return digest
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:
                pass
            raise

    def _copy_parts(self, key: str, path: Path, plan, known_sha256):
        def parts(upload_id):
            whole = hashlib.sha256()
            for number, (kind, group) in enumerate(plan, start=1):
                if kind == "copy":
                    chunk = group[0]
                    if known_sha256 is None:
                        for _, data in chunk_payloads(path, group, self.redactor):
                            hash_update(whole, data)
                    yield lambda n=number, c=chunk: self._copy_part(key, upload_id, n, c)
                else:
                    body = b"".join(d for _, d in chunk_payloads(path, group, self.redactor))
                    if known_sha256 is None:
                        hash_update(whole, body)
                    yield lambda n=number, b=body: self._upload_part(key, upload_id, n, b)
            parts.digest = known_sha256 or whole.hexdigest()

        return parts

    def _stream_parts(self, key: str, path: Path, chunks: list[dict], part_size: int, known_sha256):
        def parts(upload_id):
            whole = hashlib.sha256()
            buffer = bytearray()
            number = 0
            for _, data in chunk_payloads(path, chunks, self.redactor):
                if known_sha256 is None:
                    hash_update(whole, data)
                buffer += data
                while len(buffer) >= part_size:
                    number += 1
                    body = bytes(buffer[:part_size])
                    del buffer[:part_size]
                    yield lambda n=number, b=body: self._upload_part(key, upload_id, n, b)
            if buffer or number == 0:
                number += 1
                yield lambda n=number, b=bytes(buffer): self._upload_part(key, upload_id, n, b)
            parts.digest = known_sha256 or whole.hexdigest()

        return parts

    def _copy_part(self, key: str, upload_id: str, number: int, chunk: dict) -> dict:
        result = self._request(
            self.client.upload_part_copy,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": self.root + chunk["key"]},
        )
        self.stats["copied_bytes"] += chunk["bytes"]
        return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict:
        result = self._request(
            self.client.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        self.stats["put_bytes"] += len(body)
        return {"PartNumber": number, "ETag": result["ETag"]}


def bounded_map(calls: Iterator, workers: int) -> Iterator:
    """Results of zero-argument callables, in order, at most `workers` running at once.

    The window bounds memory (each pending part holds its bytes) and keeps the
    producer (reading and hashing, in order) just ahead of the senders. Under
    gevent the workers are greenlets, otherwise threads; botocore clients are
    safe to share between either."""
    if workers <= 1:
        for call in calls:
            yield call()
        return
    if _gevent_patched():
        import gevent.pool

        pool = gevent.pool.Pool(workers)
        submit, result, close = pool.spawn, (lambda g: g.get()), pool.kill
    else:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(workers, thread_name_prefix="objectstore-part")
        submit = executor.submit
        result = lambda f: f.result()  # noqa: E731
        close = lambda: executor.shutdown(wait=True, cancel_futures=True)  # noqa: E731
    window: deque = deque()
    try:
        for call in calls:
            window.append(submit(call))
            if len(window) >= workers:
                yield result(window.popleft())
        while window:
            yield result(window.popleft())
    finally:
        close()
