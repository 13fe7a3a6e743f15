"""Object-store sink: configuration, chunking rules, and full runs against a real S3 server (moto)."""

from __future__ import annotations

import hashlib
import logging

import orjson
import pytest

from loadgen import rundir
from loadgen.sinks import s3_streams
from loadgen.sinks.objectstore import ObjectStoreSink, key_root
from loadgen.sinks.s3_command import main
from loadgen.sinks.s3_assemble import plan_copy
from loadgen.sinks.s3_config import ConfigError, Redactor, settings_from_env
from tests.s3_fixtures import (
    TEST_ACCESS_KEY,
    TEST_SECRET_KEY,
    RunDirWriter,
    assert_store_matches,
    get_bytes,
    list_keys,
    moto_server,
    new_bucket,
    s3_client,
)

MIN_PART = 32 * 1024  # moto runs with this multipart minimum so kilobyte chunks exercise the 5 MiB rule


@pytest.fixture(scope="module")
def endpoint():
    with moto_server(min_part_size=MIN_PART) as url:
        yield url


@pytest.fixture
def client(endpoint):
    return s3_client(endpoint)


def fast_sink(bucket, prefix="runs", **kwargs) -> ObjectStoreSink:
    """A sink that cuts a chunk on every sync, so a test sees many chunks in little time."""
    options = dict(chunk_bytes=64 * 1024, flush_seconds=0, aux_flush_seconds=0, min_part_bytes=MIN_PART,
                   max_attempts=2, connect_timeout=2, read_timeout=10, finish_timeout=10)
    options.update(kwargs)
    return ObjectStoreSink(bucket, prefix, **options)


def write_run(writer: RunDirWriter, sink: ObjectStoreSink, total=1000, batches=20):
    """Append records progressively, syncing in between, like the master's sync greenlet."""
    per = total // batches
    for b in range(batches):
        writer.append_records(range(b * per, (b + 1) * per))
        writer.append_metric(3)
        writer.append_log(f"progress {b + 1}/{batches}")
        writer.heartbeat()
        sink.sync()
    return writer.write_meta()


# ---------------------------------------------------------------------------
# configuration


def test_tigris_variables_default_endpoint_region_and_virtual_addressing():
    s = settings_from_env({"TIGRIS_STORAGE_ACCESS_KEY_ID": "tid_abc", "TIGRIS_STORAGE_SECRET_ACCESS_KEY": "tsec_xyz",
                           "AWS_ACCESS_KEY_ID": "AKIAOTHER", "AWS_SECRET_ACCESS_KEY": "other"})
    assert (s.provider, s.endpoint_url, s.region, s.addressing_style, s.assemble) == (
        "tigris", "https://t3.storage.dev", "auto", "virtual", "copy")
    assert s.access_key_id == "tid_abc"  # Tigris variables win over unrelated AWS ones
    assert "tsec_xyz" not in repr(s) and "tid_abc" not in repr(s) and "tsec_xyz" not in s.describe()


def test_aws_variables_r2_and_overrides():
    base = {"AWS_ACCESS_KEY_ID": "a" * 20, "AWS_SECRET_ACCESS_KEY": "b" * 40}
    r2 = settings_from_env(dict(base, AWS_ENDPOINT_URL_S3="https://acct.r2.cloudflarestorage.com"))
    assert (r2.provider, r2.region, r2.addressing_style, r2.assemble) == ("r2", "auto", "auto", "stream")
    minio = settings_from_env(dict(base, AWS_ENDPOINT_URL="http://127.0.0.1:9000", AWS_DEFAULT_REGION="eu-west-1",
                                   LOADGEN_S3_ADDRESSING_STYLE="path", LOADGEN_S3_ASSEMBLE="stream"))
    assert (minio.provider, minio.region, minio.addressing_style, minio.assemble) == ("custom", "eu-west-1", "path", "stream")
    aws = settings_from_env(dict(base, AWS_REGION="us-west-2"))
    assert (aws.provider, aws.endpoint_url, aws.region) == ("aws", None, "us-west-2")
    with pytest.raises(ConfigError, match="LOADGEN_S3_ADDRESSING_STYLE"):
        settings_from_env(dict(base, LOADGEN_S3_ADDRESSING_STYLE="sideways"))
    with pytest.raises(ConfigError, match="TIGRIS_STORAGE_SECRET_ACCESS_KEY"):
        settings_from_env({"TIGRIS_STORAGE_ACCESS_KEY_ID": "tid_abc"})
    tigris_url = settings_from_env({"TIGRIS_STORAGE_ACCESS_KEY_ID": "t", "TIGRIS_STORAGE_SECRET_ACCESS_KEY": "s",
                                    "TIGRIS_STORAGE_ENDPOINT": "https://fly.storage.tigris.dev"})
    assert tigris_url.endpoint_url == "https://fly.storage.tigris.dev" and tigris_url.addressing_style == "virtual"


def test_redactor_masks_text_and_keeps_byte_length():
    r = Redactor([TEST_SECRET_KEY, "short"])
    assert TEST_SECRET_KEY not in r.text(f"boom {TEST_SECRET_KEY}")
    data = f'{{"msg":"{TEST_SECRET_KEY}","x":"short"}}\n'.encode()
    masked = r.data(data)
    assert len(masked) == len(data) and TEST_SECRET_KEY.encode() not in masked and b"short" in masked
    orjson.loads(masked)


def test_key_root():
    assert key_root("", "r1") == "r1/"
    assert key_root("/a/b/", "r1") == "a/b/r1/"


# ---------------------------------------------------------------------------
# chunking rules


def test_cut_takes_whole_lines_only(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"aa\nbbbb\ncc")
    assert s3_streams.cut(path, 0, 100, final=False, keep_torn_tail=False) == b"aa\nbbbb\n"
    assert s3_streams.cut(path, 0, 5, final=False, keep_torn_tail=False) == b"aa\n"
    assert s3_streams.cut(path, 3, 2, final=False, keep_torn_tail=False) == b"bbbb\n"  # a line longer than a chunk
    assert s3_streams.cut(path, 8, 100, final=True, keep_torn_tail=False) == b""
    assert s3_streams.cut(path, 8, 100, final=True, keep_torn_tail=True) == b"cc"


@pytest.mark.parametrize("sizes", [[1] * 7, [10, 1, 10, 2, 2, 2, 9, 1], [3, 3, 3, 12, 1], [20], [4, 20, 4]])
def test_copy_plan_keeps_every_part_but_the_last_at_least_min(sizes):
    chunks = [{"key": f"k{i}", "bytes": s} for i, s in enumerate(sizes)]
    plan = plan_copy(chunks, min_part=8)
    assert [c for _, group in plan for c in group] == chunks
    assert all(sum(c["bytes"] for c in group) >= 8 for _, group in plan[:-1])
    assert all(group[0]["bytes"] >= 8 for kind, group in plan if kind == "copy")


# ---------------------------------------------------------------------------
# full runs


@pytest.mark.parametrize("assemble,min_part", [("copy", MIN_PART), ("copy", 200 * 1024), ("stream", MIN_PART)])
def test_thousand_record_run(endpoint, client, tmp_path, monkeypatch, assemble, min_part):
    monkeypatch.setenv("LOADGEN_S3_ASSEMBLE", assemble)
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket, min_part_bytes=min_part, part_bytes=min_part)
    sink.start(writer.context())
    meta = write_run(writer, sink)
    report = sink.finish(meta, "done")
    assert report.complete, report.detail
    manifest = assert_store_matches(client, bucket, sink.root, writer.path, expect_records=1000)
    raw = manifest["streams"]["raw"]
    assert raw["parts"] >= 10 and raw["lines"] == 1000
    assert sum(c["lines"] for c in raw["chunks"]) == 1000
    assert raw["chunks"][0]["first_sandbox_idx"] == 0 and raw["chunks"][-1]["last_sandbox_idx"] == 999
    expected_method = {"copy": "multipart-copy", "stream": "multipart-stream"}[assemble]
    assert manifest["objects"]["raw.jsonl"]["method"] == expected_method
    if min_part == MIN_PART and assemble == "copy":
        assert sink.stats["assembly"]["copied_bytes"] > 0  # server-side copies happened
    assert orjson.loads(get_bytes(client, bucket, sink.root + "meta.json"))["total"] == 1000
    assert get_bytes(client, bucket, sink.root + "run.json") == (writer.path / "run.json").read_bytes()
    assert orjson.loads(get_bytes(client, bucket, sink.root + "heartbeat.json"))["done"] == 1000
    assert report.extra["raw_lines"] == 1000 and report.extra["backlog_bytes"] == 0


def test_chunks_follow_size_and_time_rules(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket, flush_seconds=3600, aux_flush_seconds=3600, chunk_bytes=20 * 1024)
    sink.start(writer.context())
    writer.append_records(range(10))  # ~11 KB: below chunk size, interval not due
    sink.sync()
    assert not [k for k in list_keys(client, bucket, sink.root) if k.startswith("raw/")]
    assert sink.backlog_bytes > 0
    writer.append_records(range(10, 50))  # now over 20 KB: cut by size, whole lines, <= 20 KB each
    sink.sync()
    raw = [k for k in list_keys(client, bucket, sink.root) if k.startswith("raw/")]
    assert raw and all(list_keys(client, bucket, sink.root)[k] <= 20 * 1024 for k in raw)
    assert sink.finish(writer.write_meta(), "done").complete
    assert_store_matches(client, bucket, sink.root, writer.path, expect_records=50)


def test_rerun_and_lost_state_upload_nothing_twice(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket)
    sink.start(writer.context())
    meta = write_run(writer, sink, total=300, batches=6)
    assert sink.finish(meta, "done").complete
    before = {k: get_bytes(client, bucket, sink.root + k) for k in list_keys(client, bucket, sink.root) if "/part-" in k}

    again = fast_sink(bucket)  # same state file: nothing left to do
    again.start(writer.context())
    assert again.finish(meta, "done").complete
    assert again.stats["chunks"] == 0 and "assembly" not in again.stats

    (writer.path / s3_streams.STATE_FILE).unlink()  # state lost: adopt the bucket's manifest after checking bytes
    adopted = fast_sink(bucket)
    adopted.start(writer.context())
    assert adopted.finish(meta, "done").complete
    assert adopted.stats["chunks"] == 0 and "assembly" not in adopted.stats
    after = {k: get_bytes(client, bucket, adopted.root + k) for k in list_keys(client, bucket, adopted.root) if "/part-" in k}
    assert after == before
    assert_store_matches(client, bucket, adopted.root, writer.path, expect_records=300)


def test_missing_chunk_is_repaired_and_stray_part_removed(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket)
    sink.start(writer.context())
    meta = write_run(writer, sink, total=200, batches=4)
    client.delete_object(Bucket=bucket, Key=sink.root + "raw/part-000002.jsonl")
    client.put_object(Bucket=bucket, Key=sink.root + "raw/part-000099.jsonl", Body=b"stray\n")
    assert sink.finish(meta, "done").complete
    assert_store_matches(client, bucket, sink.root, writer.path, expect_records=200)


def test_cli_upload_then_fetch_round_trip(endpoint, client, tmp_path, capsys):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path / "runs")
    writer.append_records(range(500))
    writer.append_metric(20)
    writer.append_log("run finished")
    writer.heartbeat()
    writer.write_meta()
    assert main(["store", "upload", str(writer.path), "--bucket", bucket, "--prefix", "nightly"]) == 0
    root = key_root("nightly", writer.run_id)
    assert_store_matches(client, bucket, root, writer.path, expect_records=500)

    dest = tmp_path / "fetched"
    assert main(["store", "fetch", writer.run_id, "--bucket", bucket, "--prefix", "nightly", str(dest)]) == 0
    for name in ("raw.jsonl", "run.json", "meta.json", "metrics.jsonl", "coordinator.log", "heartbeat.json"):
        assert (dest / name).read_bytes() == (writer.path / name).read_bytes(), name
    assert rundir.read_records(dest) == rundir.read_records(writer.path)
    assert not (dest / s3_streams.STATE_FILE).exists()
    try:  # the report command reads the fetched copy as it reads the original
        from loadgen.report.command import main as report_main
    except ImportError:  # pragma: no cover - report lives in another issue
        report_main = None
    if report_main is not None:
        assert report_main(["report", str(writer.path), "--out", str(tmp_path / "r1")]) == 0
        assert report_main(["report", str(dest), "--out", str(tmp_path / "r2")]) == 0
        assert (tmp_path / "r1" / "stats.json").read_bytes() == (tmp_path / "r2" / "stats.json").read_bytes()

    # without the assembled object, raw.jsonl is rebuilt from the verified chunks
    client.delete_object(Bucket=bucket, Key=root + "raw.jsonl")
    dest2 = tmp_path / "fetched2"
    assert main(["store", "fetch", writer.run_id, str(dest2), "--bucket", bucket, "--prefix", "nightly"]) == 0
    assert (dest2 / "raw.jsonl").read_bytes() == (writer.path / "raw.jsonl").read_bytes()

    # a corrupted chunk is refused, and no raw.jsonl is left behind
    manifest = orjson.loads(get_bytes(client, bucket, root + "manifest.json"))
    key = root + manifest["streams"]["raw"]["chunks"][0]["key"]
    client.put_object(Bucket=bucket, Key=key, Body=get_bytes(client, bucket, key).replace(b"success", b"failure", 1))
    dest3 = tmp_path / "fetched3"
    assert main(["store", "fetch", writer.run_id, str(dest3), "--bucket", bucket, "--prefix", "nightly"]) == 1
    assert not (dest3 / "raw.jsonl").exists()
    assert "manifest says" in capsys.readouterr().err

    assert main(["store", "fetch", "no-such-run", str(tmp_path / "x"), "--bucket", bucket]) == 1


def test_fetch_of_unfinished_run_says_so(endpoint, client, tmp_path):
    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket)
    sink.start(writer.context())
    writer.append_records(range(120))
    sink.sync()
    assert main(["store", "fetch", writer.run_id, str(tmp_path / "f"), "--bucket", bucket, "--prefix", "runs"]) == 3
    assert (tmp_path / "f" / "raw.jsonl").read_bytes() == (writer.path / "raw.jsonl").read_bytes()


def test_no_bucket_is_a_clear_error_at_start(endpoint, tmp_path):
    from loadgen.sinks.objectstore import ObjectStoreError

    writer = RunDirWriter(tmp_path)
    sink = fast_sink("lg-does-not-exist")
    with pytest.raises(ObjectStoreError, match="NoSuchBucket.*create the bucket"):
        sink.start(writer.context())
    report = sink.finish(writer.write_meta(), "done")
    assert not report.complete and "loadgen store upload" in report.detail


def test_credentials_never_leak(endpoint, client, tmp_path, caplog, capsys):
    """Secrets must not reach logs (ours, at DEBUG, with botocore's too), errors, reports,
    the state file, the manifest, or any object, even when a record itself contains one."""
    caplog.set_level(logging.DEBUG)
    bucket = new_bucket(endpoint, client)
    leak = lambda record: setattr(record, "error_message", f"token was {TEST_SECRET_KEY}")  # noqa: E731
    writer = RunDirWriter(tmp_path, identity_extra={"note": f"key {TEST_ACCESS_KEY}"})
    sink = fast_sink(bucket)
    sink.start(writer.context())
    writer.append_records(range(50), mutate=leak)
    writer.append_log(f"oops {TEST_SECRET_KEY}")
    writer.heartbeat()
    sink.sync()
    report = sink.finish(writer.write_meta(), "done")
    assert report.complete

    # failure paths: missing bucket, unreachable endpoint
    bad = fast_sink("lg-missing-bucket")
    with pytest.raises(Exception) as missing:
        bad.start(writer.context())
    from loadgen.sinks.s3_config import settings_from_env as env_settings

    import os
    down = dict(os.environ, AWS_ENDPOINT_URL_S3="http://127.0.0.1:9")
    dead = fast_sink(bucket, settings=env_settings(down), max_attempts=1, connect_timeout=0.5, finish_timeout=0.5)
    dead.start(writer.context())
    dead_report = dead.finish(None, "interrupted")
    assert not dead_report.complete
    main(["store", "upload", str(writer.path), "--bucket", "lg-missing-bucket"])

    ours = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if r.name.startswith("loadgen"))
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    texts = [ours, str(missing.value), report.detail, dead_report.detail, str(report.extra), repr(sink), repr(sink.settings),
             out.out, out.err, (writer.path / s3_streams.STATE_FILE).read_text()]
    for secret in (TEST_SECRET_KEY, TEST_ACCESS_KEY):
        for text in texts:
            assert secret not in text
    assert TEST_SECRET_KEY not in everything  # not even botocore's own DEBUG output
    for key in list_keys(client, bucket, sink.root):
        data = get_bytes(client, bucket, sink.root + key)
        assert TEST_SECRET_KEY.encode() not in data and TEST_ACCESS_KEY.encode() not in data, key
    # masked bytes keep their length, so the copy still lines up with the run directory
    raw = get_bytes(client, bucket, sink.root + "raw.jsonl")
    assert len(raw) == (writer.path / "raw.jsonl").stat().st_size
    assert hashlib.sha256(raw).hexdigest() == orjson.loads(get_bytes(client, bucket, sink.root + "manifest.json"))["objects"]["raw.jsonl"]["sha256"]


def test_empty_run_and_torn_last_line(endpoint, client, tmp_path):
    """No sandbox at all still gives a complete copy; a torn last raw line (master crash mid-write)
    is not uploaded, and the report says so."""
    bucket = new_bucket(endpoint, client)
    empty = RunDirWriter(tmp_path / "a")
    sink = fast_sink(bucket)
    sink.start(empty.context())
    assert sink.finish(empty.write_meta(), "done").complete
    assert get_bytes(client, bucket, sink.root + "raw.jsonl") == b""
    assert main(["store", "fetch", empty.run_id, str(tmp_path / "f"), "--bucket", bucket, "--prefix", "runs"]) == 0
    assert (tmp_path / "f" / "raw.jsonl").read_bytes() == b""

    torn = RunDirWriter(tmp_path / "b")
    torn.append_records(range(10))
    with open(torn.path / "raw.jsonl", "ab") as fh:
        fh.write(b'{"run_id":"x","sandbox_idx":10,"sta')
    sink = fast_sink(bucket)
    sink.start(torn.context())
    report = sink.finish(torn.write_meta(status="failed"), "failed")
    assert report.complete and "unterminated" in report.detail
    assert get_bytes(client, bucket, sink.root + "raw.jsonl").count(b"\n") == 10


def test_copy_refused_falls_back_to_streaming(endpoint, client, tmp_path, caplog):
    from botocore.exceptions import ClientError

    bucket = new_bucket(endpoint, client)
    writer = RunDirWriter(tmp_path)
    sink = fast_sink(bucket)
    sink.start(writer.context())
    meta = write_run(writer, sink, total=400, batches=8)

    def refuse(**kwargs):
        raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no copy here"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "UploadPartCopy")

    sink.client.upload_part_copy = refuse
    report = sink.finish(meta, "done")
    assert report.complete and report.extra["raw_assembled"] == "multipart-stream"
    assert "server-side copy refused" in caplog.text
    assert_store_matches(client, bucket, sink.root, writer.path, expect_records=400)
