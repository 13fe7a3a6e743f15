"""Object-store sink under failure: outages, crashes between steps, SIGKILL, a dead endpoint.

The outage is a TCP proxy in front of moto that is killed and restarted:
the endpoint refuses connections and in-flight requests are reset, while the
server keeps its objects, as a real store does during a network outage.
(Restarting moto itself would wipe its in-memory bucket; that is data loss on
the server, covered by the repair test in test_objectstore.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import orjson
import pytest

from loadgen.sinks import s3_streams
from loadgen.sinks.objectstore import ObjectStoreError, ObjectStoreSink
from loadgen.sinks.s3_command import main
from loadgen.sinks.s3_config import settings_from_env
from tests.s3_fixtures import (
    REPO,
    RunDirWriter,
    assert_manifest_consistent,
    assert_store_matches,
    get_bytes,
    moto_server,
    new_bucket,
    s3_client,
    tcp_proxy,
)

MIN_PART = 32 * 1024


@pytest.fixture(scope="module")
def endpoint():
    with moto_server(min_part_size=MIN_PART) as url:
        yield url


@pytest.fixture
def client(endpoint):
    return s3_client(endpoint)


def sink_at(bucket, endpoint_url=None, prefix="faults", **kwargs):
    settings = settings_from_env(dict(os.environ, AWS_ENDPOINT_URL_S3=endpoint_url)) if endpoint_url else None
    options = dict(chunk_bytes=16 * 1024, flush_seconds=0, aux_flush_seconds=0, min_part_bytes=MIN_PART,
                   max_attempts=1, connect_timeout=1, read_timeout=5, finish_timeout=20)
    options.update(kwargs)
    return ObjectStoreSink(bucket, prefix, settings=settings, **options)


def test_outage_loses_and_duplicates_nothing(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    port = urlsplit(endpoint).port
    with tcp_proxy(port) as proxy:
        writer = RunDirWriter(tmp_path)
        sink = sink_at(bucket, proxy.url)
        sink.start(writer.context())
        failures, backlog_during_outage = 0, []
        for step in range(25):
            writer.append_records(range(step * 40, (step + 1) * 40))
            writer.append_metric(2)
            writer.append_log(f"step {step}")
            writer.heartbeat()
            if step == 8:
                proxy.stop()  # endpoint down between syncs
            if step == 14:
                proxy.start()
            killer = None
            if step == 18:  # and once more in the middle of the uploads of this sync
                killer = threading.Timer(0.01, proxy.stop)
                killer.start()
            try:
                sink.sync()
            except ObjectStoreError as exc:
                failures += 1
                assert "Could not connect" in str(exc) or "Connection" in str(exc) or "Error" in str(exc)
                if 8 <= step < 14:
                    backlog_during_outage.append(sink.backlog_bytes)
            if killer:
                killer.join()
                if not proxy.running:
                    proxy.start()
        assert failures >= 5
        assert len(backlog_during_outage) == 6  # every sync failed while the endpoint was down...
        assert backlog_during_outage == sorted(backlog_during_outage)  # ...and the backlog only grew
        report = sink.finish(writer.write_meta(), "done")
        assert report.complete, report.detail
    assert_store_matches(client, bucket, sink.root, writer.path, expect_records=1000)


def test_put_succeeded_but_manifest_or_state_write_failed(endpoint, client, tmp_path, monkeypatch):
    """The crash windows between a chunk PUT and its bookkeeping: the retry re-sends the
    same key with the same bytes, and part numbers do not move."""
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = sink_at(bucket)
    sink.start(writer.context())
    writer.append_records(range(0, 30))
    sink.sync()

    # 1. chunk PUT ok, manifest PUT fails
    writer.append_records(range(30, 60))
    real_manifest = sink._put_manifest
    monkeypatch.setattr(sink, "_put_manifest", lambda: (_ for _ in ()).throw(ConnectionError("reset")))
    with pytest.raises(ObjectStoreError):
        sink.sync()
    pending = orjson.loads((writer.path / s3_streams.STATE_FILE).read_bytes())
    pending = next(iter(pending["targets"].values()))["streams"]["raw"]["pending"]
    assert pending and get_bytes(client, bucket, sink.root + pending["key"])  # the orphan is there
    assert_manifest_consistent(client, bucket, sink.root, allow_pending={"raw": pending})
    monkeypatch.setattr(sink, "_put_manifest", real_manifest)
    writer.append_records(range(60, 90))  # more lines arrive meanwhile; they must not join the pending chunk
    sink.sync()
    state = next(iter(orjson.loads((writer.path / s3_streams.STATE_FILE).read_bytes())["targets"].values()))
    assert state["streams"]["raw"]["chunks"][pending["part"] - 1] == pending

    # 2. chunk and manifest PUT ok, the process dies before the state commit
    writer.append_records(range(90, 120))
    real_save = sink._state.save
    calls = []

    def save_then_die():
        calls.append(1)
        if len(calls) == 2:  # 1st save records the pending intent, 2nd would commit
            raise KeyboardInterrupt("killed")
        real_save()

    monkeypatch.setattr(sink._state, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        sink.sync()
    restarted = sink_at(bucket)  # a new process: reads the state file left behind
    restarted.start(writer.context())
    restarted.sync()
    report = restarted.finish(writer.write_meta(), "done")
    assert report.complete, report.detail
    assert_store_matches(client, bucket, restarted.root, writer.path, expect_records=120)


def test_unreachable_bucket_finish_reports_incomplete_and_never_raises(tmp_path):
    writer = RunDirWriter(tmp_path)
    writer.append_records(range(100))
    sink = sink_at("lg-anything", "http://127.0.0.1:9", finish_timeout=2.5, connect_timeout=0.3)
    sink.start(writer.context())  # logged, not raised: the run goes on
    with pytest.raises(ObjectStoreError):
        sink.sync()
    assert sink.backlog_bytes == (writer.path / "raw.jsonl").stat().st_size
    t0 = time.monotonic()
    report = sink.finish(writer.write_meta(), "done")
    assert time.monotonic() - t0 < 10
    assert report.name == "objectstore" and report.complete is False
    assert "INCOMPLETE" in report.detail and "loadgen store upload" in report.detail
    assert report.extra["backlog_bytes"] > 0


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.s3_fixtures import RunDirWriter
from loadgen.sinks.objectstore import ObjectStoreSink

writer = RunDirWriter(Path(sys.argv[2]).parent, Path(sys.argv[2]).name)
sink = ObjectStoreSink(sys.argv[3], "crash", chunk_bytes=8 * 1024, flush_seconds=0, aux_flush_seconds=0)
sink.start(writer.context())
for step in range(100):
    writer.append_records(range(step * 10, step * 10 + 10))
    writer.append_metric(1)
    writer.append_log(f"step {step}")
    writer.heartbeat()
    sink.sync()
time.sleep(600)  # never finishes: the test kills it
"""


def test_sigkill_mid_run_then_store_upload_completes(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(writer.path), bucket], cwd=REPO)
    root = f"crash/{writer.run_id}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                manifest = orjson.loads(get_bytes(client, bucket, root + "manifest.json"))
                if manifest["streams"]["raw"]["parts"] >= 8:
                    break
            except Exception:  # noqa: BLE001 - not there yet
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the child never uploaded 8 chunks")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # what the crash left: every listed chunk readable and exact; nothing else but the pending one
    state = orjson.loads((writer.path / s3_streams.STATE_FILE).read_bytes())
    target = next(iter(state["targets"].values()))
    pending = {name: s["pending"] for name, s in target["streams"].items()}
    manifest = assert_manifest_consistent(client, bucket, root, allow_pending=pending)
    uploaded = b"".join(get_bytes(client, bucket, root + c["key"]) for c in manifest["streams"]["raw"]["chunks"])
    assert (writer.path / "raw.jsonl").read_bytes().startswith(uploaded)
    assert manifest["finished"] is False

    # the master (restarted) completes the run directory, then the upload is finished later
    have = len((writer.path / "raw.jsonl").read_bytes().splitlines())
    writer.append_records(range(have, 1000))
    writer.write_meta()
    assert main(["store", "upload", str(writer.path), "--bucket", bucket, "--prefix", "crash"]) == 0
    assert_store_matches(client, bucket, root, writer.path, expect_records=1000)


GEVENT_CHILD = r"""
from gevent import monkey
monkey.patch_all()
import json, sys, gevent
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.s3_fixtures import RunDirWriter
from loadgen.sinks.objectstore import ObjectStoreSink

ticks = [0]
def ticker():
    while True:
        gevent.sleep(0.001)
        ticks[0] += 1
gevent.spawn(ticker)
writer = RunDirWriter(Path(sys.argv[2]))
sink = ObjectStoreSink(sys.argv[3], "gevent", chunk_bytes=1024 * 1024, flush_seconds=0, min_part_bytes=32 * 1024)
sink.start(writer.context())
during_sync = 0
for step in range(5):
    writer.append_records(range(step * 500, (step + 1) * 500))  # ~550 KB: hashed in the hub's thread pool
    before = ticks[0]
    sink.sync()
    during_sync += ticks[0] - before
before = ticks[0]
report = sink.finish(writer.write_meta(), "done")
print(json.dumps({"complete": report.complete, "detail": report.detail, "sync": during_sync,
                  "finish": ticks[0] - before, "root": sink.root, "run_path": str(writer.path)}))
"""


def test_under_gevent_uploads_yield_to_other_greenlets(endpoint, client, tmp_path):
    """In a monkey-patched process (the Locust master), another greenlet keeps running while
    the sink uploads: with blocking sockets it could not run at all during sync() or finish()."""
    bucket = new_bucket(endpoint, client)
    out = subprocess.run([sys.executable, "-c", GEVENT_CHILD, str(REPO), str(tmp_path), bucket],
                         cwd=REPO, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    result = orjson.loads(out.stdout.splitlines()[-1])
    assert result["complete"], result["detail"]
    assert result["sync"] > 0 and result["finish"] > 0
    assert_store_matches(client, bucket, result["root"], result["run_path"], expect_records=2500)
