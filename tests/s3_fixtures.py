"""A real S3-compatible HTTP server for tests, and the tools to break it on purpose.

- `moto_server()`: moto's server mode in a subprocess on 127.0.0.1 and a free
  port, with dummy credentials and AWS_ENDPOINT_URL_S3 pointing at it in
  os.environ for the duration (so child processes inherit them).
- `tcp_proxy(port)`: a TCP proxy in its own process in front of it. Stopping
  the proxy makes the endpoint refuse connections and resets requests in
  flight, which is what an outage looks like to a client, while moto keeps
  its in-memory objects (restarting moto itself would wipe the bucket, which
  is a different failure: data loss on the server).
- `RunDirWriter`: a run directory written the way the master writes one.
- `assert_store_matches()`: every invariant a stored run must satisfy.

Run as a script, ``python tests/s3_fixtures.py proxy LISTEN_PORT TARGET_PORT``
is the proxy process itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator, Optional

# Secret-looking on purpose: tests assert these never show up in logs or objects.
TEST_ACCESS_KEY = "AKIALOADGENTESTKEY01"
TEST_SECRET_KEY = "lgTestSecret/9f8e7d6c5b4a3928170615243342516071829304"

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def moto_server(min_part_size: Optional[int] = None, access_key: str = TEST_ACCESS_KEY, secret_key: str = TEST_SECRET_KEY) -> Iterator[str]:
    """Start `python -m moto.server` on 127.0.0.1; yield its endpoint URL.

    `min_part_size` lowers moto's multipart minimum (S3's is 5 MiB) so tests
    can exercise the part-size rule with kilobytes instead of megabytes.
    """
    port = free_port()
    env = dict(os.environ)
    if min_part_size:
        env["S3_UPLOAD_PART_MIN_SIZE"] = str(min_part_size)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    try:
        _wait_http(endpoint + "/moto-api/", proc, timeout=60)
        for key in _ENV_KEYS:
            os.environ.pop(key, None)
        os.environ.update(
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=endpoint,
        )
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _stop(proc)


_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "TIGRIS_STORAGE_ACCESS_KEY_ID",
    "TIGRIS_STORAGE_SECRET_ACCESS_KEY", "TIGRIS_STORAGE_ENDPOINT", "LOADGEN_S3_ADDRESSING_STYLE", "LOADGEN_S3_ASSEMBLE",
)


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=TEST_ACCESS_KEY, aws_secret_access_key=TEST_SECRET_KEY,
    )


def new_bucket(endpoint: str, client=None) -> str:
    name = "lg-" + uuid.uuid4().hex[:16]
    (client or s3_client(endpoint)).create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------------------
# TCP proxy


class Proxy:
    """A TCP proxy process that can be stopped (endpoint down) and started again on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "proxy", str(self.port), str(self.target_port)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            _stop(self.proc)
            raise RuntimeError("proxy did not start")

    def stop(self) -> None:
        """SIGKILL: the port refuses connections and open ones are reset, as in a real outage."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            self.proc.stdout.close()

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


@contextlib.contextmanager
def tcp_proxy(target_port: int) -> Iterator[Proxy]:
    proxy = Proxy(target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def pipe(src: socket.socket, dst: socket.socket, tap=None) -> None:
    """Copy bytes from src to dst until either side closes (one direction of a TCP proxy);
    ``tap(data)`` sees every chunk before it is passed on."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if tap is not None:
                tap(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve_proxy(listen_port: int, target_port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 10
    while True:  # the previous proxy's port may linger for a moment after a kill
        try:
            server.bind(("127.0.0.1", listen_port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    server.listen(256)
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def pair(client):
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    while True:
        conn, _ = server.accept()
        threading.Thread(target=pair, args=(conn,), daemon=True).start()


# ---------------------------------------------------------------------------
# Run directories


def make_record(run_id: str, idx: int, rng: Optional[random.Random] = None) -> dict:
    """A realistic result record (every phase timed, provider metadata), about 1 KB as JSON."""
    from loadgen.result import SandboxResult, iso

    rng = rng or random.Random(idx)
    t0 = 1_795_000_000.0 + idx * 0.01
    create = rng.uniform(0.3, 4.0)
    ready = rng.uniform(0.05, 0.8)
    hold = rng.uniform(5, 60)
    live = rng.uniform(0.02, 0.3)
    destroy = rng.uniform(0.1, 1.0)
    roll = rng.random()
    status = "success" if roll < 0.9 else ("partial" if roll < 0.93 else ("readiness_failed" if roll < 0.96 else "failed"))
    failed = status != "success"
    result = SandboxResult(
        run_id=run_id,
        sandbox_idx=idx,
        provider="e2b",
        worker_id=f"worker-{idx % 16:02d}",
        sandbox_id=None if status == "failed" else f"sbx-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
        status=status,
        failure_class="timeout" if failed else None,
        failed_phase={"partial": "liveness", "readiness_failed": "readiness", "failed": "create"}.get(status),
        http_status=504 if failed else None,
        error_code="504" if failed else None,
        error_type="ReadTimeout" if failed else None,
        error_message="upstream request timeout while waiting for sandbox" if failed else None,
        started_at=iso(t0),
        completed_at=iso(t0 + create + ready + hold + live + destroy),
        create_started_at=iso(t0),
        create_ended_at=iso(t0 + create),
        readiness_started_at=iso(t0 + create),
        readiness_ended_at=iso(t0 + create + ready),
        liveness_started_at=iso(t0 + create + ready + hold),
        liveness_ended_at=iso(t0 + create + ready + hold + live),
        destroy_started_at=iso(t0 + create + ready + hold + live),
        destroy_ended_at=iso(t0 + create + ready + hold + live + destroy),
        latency_ms=round(create * 1000, 3),
        first_command_ms=round(ready * 1000, 3),
        liveness_ms=round(live * 1000, 3),
        destroy_ms=round(destroy * 1000, 3),
        destroy_ok=True,
        hold_ms=round(hold * 1000, 3),
        readiness_output="v22.11.0",
        provider_metadata={"template_id": "base", "client_id": "c-" + str(idx % 97), "cpu_count": 2, "memory_mb": 512},
    )
    return result


class RunDirWriter:
    """Writes a run directory as the master does: run.json first, then appends and rewrites."""

    def __init__(self, parent: Path, run_id: Optional[str] = None, identity_extra: Optional[dict] = None):
        from loadgen import rundir

        self.run_id = run_id or "run-" + uuid.uuid4().hex[:12]
        self.path = Path(parent) / self.run_id
        self.path.mkdir(parents=True, exist_ok=True)
        self.identity = {
            "run_id": self.run_id, "provider": "e2b", "commit_sha": "0" * 40, "host": "test",
            "started_at": "2026-11-28T16:00:00.000000Z", "group_id": None, "shard_index": None, "shard_count": None,
            "options": dict(identity_extra or {}),
        }
        if not (self.path / rundir.RUN).exists():
            rundir.atomic_write_json(self.path / rundir.RUN, self.identity)
        self.written = 0
        self._metric_t = 0

    def context(self, log=None):
        from loadgen.sinks.base import RunContext

        return RunContext(run_id=self.run_id, run_path=self.path, identity=self.identity, log=log)

    def _append(self, name: str, data: bytes) -> None:
        fd = os.open(self.path / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)  # one write: a killed writer leaves whole batches
        finally:
            os.close(fd)

    def append_records(self, indices, mutate=None) -> None:
        lines = []
        for idx in indices:
            record = make_record(self.run_id, idx)
            if mutate:
                mutate(record)
            lines.append(record.to_json() + b"\n")
        self._append("raw.jsonl", b"".join(lines))
        self.written += len(lines)

    def append_metric(self, n: int = 1) -> None:
        """Health samples shaped like loadgen.engine.health' (one per second of the master)."""
        import orjson

        from loadgen.result import iso

        lines = []
        for i in range(n):
            t = 1_795_000_000.0 + self._metric_t
            self._metric_t += 1
            lines.append(orjson.dumps({
                "t": t, "ts": iso(t), "process": "master", "pid": 4242, "cpu_percent": 12.5 + i % 7,
                "rss_bytes": 210_000_000, "hub_lag_ms": {"p50": 0.4, "p99": 2.5, "max": 4.0},
                "open_fds": 64, "sockstat": {"tcp_inuse": 12}, "loadavg": [0.5, 0.4, 0.3],
            }) + b"\n")
        self._append("metrics.jsonl", b"".join(lines))

    def append_log(self, text: str) -> None:
        self._append("coordinator.log", f"2026-11-28T16:00:00.000Z INFO {text}\n".encode())

    def heartbeat(self) -> None:
        from loadgen import rundir

        rundir.atomic_write_json(self.path / rundir.HEARTBEAT, {"done": self.written, "in_flight": 0, "ts": time.time()})

    def write_meta(self, status: str = "done") -> dict:
        from loadgen import rundir

        meta = dict(self.identity, status=status, total=self.written, ended_at="2026-11-28T17:00:00.000000Z")
        rundir.atomic_write_json(self.path / rundir.META, meta)
        return meta


# ---------------------------------------------------------------------------
# Invariants


def list_keys(client, bucket: str, root: str) -> dict[str, int]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(root):]] = obj["Size"]
    return out


def get_bytes(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_manifest_consistent(client, bucket: str, root: str, allow_pending: Optional[dict] = None) -> dict:
    """Every chunk the manifest lists exists with its size, sha256 and line count, chunks are
    contiguous, and no other part object exists except those in `allow_pending`
    (stream name -> pending entry, from the local state after a crash). Returns the manifest."""
    import orjson

    from loadgen.sinks import s3_manifest

    manifest = orjson.loads(get_bytes(client, bucket, root + "manifest.json"))
    assert s3_manifest.contiguity_errors(manifest) == []
    present = list_keys(client, bucket, root)
    listed = set()
    for name, stream in manifest["streams"].items():
        for chunk in stream["chunks"]:
            listed.add(chunk["key"])
            data = get_bytes(client, bucket, root + chunk["key"])
            assert len(data) == chunk["bytes"], chunk["key"]
            assert hashlib.sha256(data).hexdigest() == chunk["sha256"], chunk["key"]
            torn = 0 if data.endswith(b"\n") else 1  # only a log's final chunk may end without a newline
            assert data.count(b"\n") + torn == chunk["lines"], chunk["key"]
            assert not torn or name == "log", chunk["key"]
    parts = {k for k in present if k.startswith(("raw/", "metrics/", "log/"))}
    extra = parts - listed
    allowed = {entry["key"]: entry for entry in (allow_pending or {}).values() if entry}
    for key in extra:
        assert key in allowed, f"part object {key} is in the bucket but neither in the manifest nor pending"
        data = get_bytes(client, bucket, root + key)
        assert hashlib.sha256(data).hexdigest() == allowed[key]["sha256"]
    return manifest


def assert_store_matches(client, bucket: str, root: str, run_path: Path, expect_records: Optional[int] = None) -> dict:
    """A finished stored run equals the run directory: raw.jsonl object == local raw.jsonl ==
    the chunks' concatenation, one line per sandbox_idx, manifest exact, meta.json present."""
    import orjson

    manifest = assert_manifest_consistent(client, bucket, root)
    local = (Path(run_path) / "raw.jsonl").read_bytes()
    chunks = b"".join(get_bytes(client, bucket, root + c["key"]) for c in manifest["streams"]["raw"]["chunks"])
    assert chunks == local
    assembled = get_bytes(client, bucket, root + "raw.jsonl")
    assert assembled == local
    info = manifest["objects"]["raw.jsonl"]
    assert info["bytes"] == len(local) and info["sha256"] == hashlib.sha256(local).hexdigest()
    idx = [orjson.loads(line)["sandbox_idx"] for line in local.splitlines()]
    assert len(idx) == len(set(idx)), "duplicate sandbox_idx"
    if expect_records is not None:
        assert sorted(idx) == list(range(expect_records))
        assert manifest["streams"]["raw"]["lines"] == expect_records
    assert manifest["finished"] is True
    assert "meta.json" in list_keys(client, bucket, root)
    for name, source in (("metrics", "metrics.jsonl"), ("log", "coordinator.log")):
        path = Path(run_path) / source
        if path.exists():
            got = b"".join(get_bytes(client, bucket, root + c["key"]) for c in manifest["streams"][name]["chunks"])
            assert got == path.read_bytes(), name
    return manifest


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "proxy":
        _serve_proxy(int(sys.argv[2]), int(sys.argv[3]))
    else:
        print("usage: s3_fixtures.py proxy LISTEN_PORT TARGET_PORT", file=sys.stderr)
        sys.exit(2)
