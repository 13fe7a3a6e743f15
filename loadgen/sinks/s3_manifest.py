"""manifest.json: what a reader needs to know whether a stored run is whole.

The manifest is derived from the local state and rewritten after every chunk,
so at any moment it lists chunks that are all already in the bucket. A chunk
object that is in the bucket but not (yet) in the manifest is the one being
uploaded when the writer stopped; readers ignore it and the next upload
overwrites it with the same bytes.

Checks a reader can make, all without the local run directory:

- each stream's chunks are contiguous: ``offset[k+1] == offset[k] + bytes[k]``,
  starting at 0, numbered 1..n without a gap;
- each chunk object has the listed size and sha256;
- ``finished`` is true: the writer drained every file and uploaded meta.json;
- ``objects["raw.jsonl"]`` (when present) has the listed size and sha256, which
  is the sha256 of the chunks' concatenation.
"""

from __future__ import annotations

import time
from typing import Optional

import orjson

from loadgen.result import iso

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "loadgen.objectstore.manifest/1"


def build(run_id: str, target: dict) -> dict:
    streams = {}
    for name, stream in target["streams"].items():
        chunks = stream["chunks"]
        streams[name] = {
            "parts": len(chunks),
            "lines": sum(c["lines"] for c in chunks),
            "bytes": sum(c["bytes"] for c in chunks),
            "chunks": chunks,
        }
    objects = {name: info for name, info in target["objects"].items() if name != "heartbeat.json"}
    return {
        "format": MANIFEST_FORMAT,
        "run_id": run_id,
        "root": target["root"],
        "updated_at": iso(time.time()),
        "finished": bool(target["finished"]),
        "status": target["status"],
        "streams": streams,
        "objects": objects,
    }


def dumps(manifest: dict) -> bytes:
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2)


def contiguity_errors(manifest: dict) -> list[str]:
    """Problems with the chunk lists themselves (gaps, overlaps, misnumbering)."""
    errors = []
    for name, stream in manifest.get("streams", {}).items():
        expected_offset = 0
        for n, chunk in enumerate(stream.get("chunks", []), start=1):
            if chunk["part"] != n:
                errors.append(f"{name}: part {chunk['part']} found where part {n} was expected")
            if chunk["offset"] != expected_offset:
                errors.append(f"{name}: part {chunk['part']} starts at {chunk['offset']}, expected {expected_offset}")
            expected_offset = chunk["offset"] + chunk["bytes"]
    return errors


def parse(data: bytes) -> Optional[dict]:
    manifest = orjson.loads(data)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"unknown manifest format {manifest.get('format')!r}")
    return manifest
