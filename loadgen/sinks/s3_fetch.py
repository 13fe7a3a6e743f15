"""A stored run back into a run directory, checked against its manifest.

Everything downstream (report, aggregate, db replay) reads run directories,
so fetching rebuilds one rather than teaching each command about buckets.
Nothing is trusted unverified: raw.jsonl comes from the assembled object when
its size and sha256 match the manifest, otherwise from the chunks, each of
which must match its own size and sha256. Files are written to a temporary
name and renamed, so an interrupted fetch never leaves a plausible-looking
but truncated raw.jsonl.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from loadgen import rundir
from loadgen.sinks import s3_manifest
from loadgen.sinks.s3_streams import LOG as LOG_STREAM
from loadgen.sinks.s3_streams import METRICS, RAW

READ_SIZE = 1024 * 1024


class FetchError(ValueError):
    pass


@dataclass
class FetchResult:
    dest: Path
    finished: bool
    status: str | None
    raw_lines: int
    raw_source: str  # "assembled raw.jsonl" or "N chunks"
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"fetched {self.raw_lines} results ({self.raw_source}) and {', '.join(self.files)} into {self.dest}"
        if not self.finished:
            text += "; the stored run has no meta.json: it did not finish (or its upload did not)"
        for warning in self.warnings:
            text += f"\nwarning: {warning}"
        return text


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


class _Fetcher:
    def __init__(self, client, bucket: str, root: str, dest: Path, log):
        self.client, self.bucket, self.root, self.dest, self.log = client, bucket, root, dest, log

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.root + name)["Body"].read()

    def write_verified_object(self, name: str, out, expect_bytes: int, expect_sha: str) -> None:
        """Stream one object into `out`, failing unless size and sha256 match."""
        body = self.client.get_object(Bucket=self.bucket, Key=self.root + name)["Body"]
        digest, size = hashlib.sha256(), 0
        for block in body.iter_chunks(READ_SIZE):
            digest.update(block)
            size += len(block)
            out.write(block)
        if size != expect_bytes or digest.hexdigest() != expect_sha:
            raise FetchError(f"{self.root}{name}: {size} bytes, sha256 {digest.hexdigest()[:12]}..., "
                             f"but the manifest says {expect_bytes} bytes, sha256 {expect_sha[:12]}...")

    def write_file(self, filename: str, fill) -> None:
        final = self.dest / filename
        tmp = final.with_name(final.name + ".fetching")
        try:
            with open(tmp, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def chunks_into(self, chunks: list[dict]):
        def fill(out):
            for chunk in chunks:
                self.write_verified_object(chunk["key"], out, chunk["bytes"], chunk["sha256"])

        return fill


def fetch_run(client, bucket: str, root: str, dest: Path, log) -> FetchResult:
    dest = Path(dest)
    fetcher = _Fetcher(client, bucket, root, dest, log)
    try:
        manifest = s3_manifest.parse(fetcher.get(s3_manifest.MANIFEST))
    except ClientError as exc:
        if _missing(exc):
            raise FetchError(f"no run at s3://{bucket}/{root}: it has no {s3_manifest.MANIFEST}") from None
        raise
    errors = s3_manifest.contiguity_errors(manifest)
    if errors:
        raise FetchError(f"s3://{bucket}/{root}{s3_manifest.MANIFEST} is inconsistent: " + "; ".join(errors))
    dest.mkdir(parents=True, exist_ok=True)
    streams, objects = manifest["streams"], manifest.get("objects", {})
    result = FetchResult(dest, bool(manifest.get("finished")), manifest.get("status"), 0, "")

    raw_chunks = streams.get(RAW.name, {}).get("chunks", [])
    result.raw_lines = sum(c["lines"] for c in raw_chunks)
    assembled = objects.get(rundir.RAW)
    if assembled and assembled.get("chunks") == len(raw_chunks) and assembled["bytes"] == sum(c["bytes"] for c in raw_chunks):
        try:
            fetcher.write_file(rundir.RAW, lambda out: fetcher.write_verified_object(rundir.RAW, out, assembled["bytes"], assembled["sha256"]))
            result.raw_source = "assembled raw.jsonl"
        except (FetchError, ClientError) as exc:
            result.warnings.append(f"assembled raw.jsonl unusable ({exc}); rebuilt it from the chunks")
    if not result.raw_source:
        fetcher.write_file(rundir.RAW, fetcher.chunks_into(raw_chunks))
        result.raw_source = f"{len(raw_chunks)} chunks"
    result.files.append(rundir.RAW)

    for spec in (METRICS, LOG_STREAM):
        chunks = streams.get(spec.name, {}).get("chunks", [])
        if chunks:
            fetcher.write_file(spec.source, fetcher.chunks_into(chunks))
            result.files.append(spec.source)

    for name in (rundir.RUN, rundir.META):
        info = objects.get(name)
        if info:
            fetcher.write_file(name, lambda out, n=name, i=info: fetcher.write_verified_object(n, out, i["bytes"], i["sha256"]))
            result.files.append(name)
    try:
        heartbeat = fetcher.get(rundir.HEARTBEAT)
        fetcher.write_file(rundir.HEARTBEAT, lambda out: out.write(heartbeat))
        result.files.append(rundir.HEARTBEAT)
    except ClientError as exc:
        if not _missing(exc):
            raise
    if result.finished and rundir.META not in result.files:
        result.warnings.append("manifest says finished but lists no meta.json")
        result.finished = False
    return result
