"""The storage benchmark (locustfiles/storage.py) against a real S3-compatible server (moto, server mode).

The bucket is versioned, so the server keeps every object uploaded after its
delete: the test reads back what really arrived (its size and bytes) and that
a delete marker is now its latest version. That is the ground truth the
records are checked against; the leaderboard's figures are then recomputed
from the records by hand.
"""

from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ET

import gevent
import orjson
import pytest

from loadgen.providers.base import ProviderSettings
from loadgen.providers.storage import ObjectMismatch, StorageProvider, size_for
from loadgen.report import leaderboard, scoring
from tests.locust_harness import run_locust
from tests.s3_fixtures import TEST_ACCESS_KEY, TEST_SECRET_KEY, moto_server, new_bucket, s3_client

MIB = 1024 * 1024
RUN_ID = "storage-moto-2"  # its eight draws hold every size: 4, 1, 10, 4, 10, 1, 16, 4 MiB
N = 8
CONCURRENCY = 3
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint):
    client = s3_client(endpoint)
    name = new_bucket(endpoint, client)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def storage_env(endpoint, bucket, **extra) -> dict:
    env = {"LOADGEN_STORAGE_ENDPOINT": endpoint, "LOADGEN_STORAGE_BUCKET": bucket,
           "LOADGEN_STORAGE_ACCESS_KEY_ID": TEST_ACCESS_KEY, "LOADGEN_STORAGE_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
           "LOADGEN_STORAGE_NAME": "moto"}
    env.update(extra)
    return env


def nearest_rank(values, p):
    xs = sorted(values)
    return xs[max(1, math.ceil(p / 100 * len(xs))) - 1]


def test_every_object_is_uploaded_whole_checked_and_deleted_and_the_figures_follow_from_the_records(
        tmp_path, endpoint, bucket):
    run = run_locust("storage.py", N, tmp_path / "runs",
                     ["--run-id", RUN_ID, "--mode", "sequential", "--concurrency", str(CONCURRENCY)],
                     env=storage_env(endpoint, bucket), timeout=300)
    assert run.returncode == 0, run.output[-4000:]
    records = sorted(run.records, key=lambda r: r["sandbox_idx"])
    assert [r["sandbox_idx"] for r in records] == list(range(N))  # exactly once
    assert all(r["status"] == "success" and r["destroy_ok"] is True for r in records), \
        [(r["status"], r["error_code"], r["error_message"]) for r in records]

    # the server's ground truth: every key uploaded once, with the recorded size and bytes, then deleted
    client = s3_client(endpoint)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0, "an object was left behind"
    listing = client.list_object_versions(Bucket=bucket)
    versions = {v["Key"]: v for v in listing.get("Versions", [])}
    markers = {m["Key"]: m for m in listing.get("DeleteMarkers", [])}
    assert len(listing.get("Versions", [])) == N and set(versions) == {r["sandbox_id"] for r in records}
    assert set(markers) == set(versions) and all(m["IsLatest"] for m in markers.values())
    sizes = set()
    for r in records:
        meta, key = r["provider_metadata"], r["sandbox_id"]
        assert meta["size_bytes"] == size_for(RUN_ID, r["sandbox_idx"]) == versions[key]["Size"]
        sizes.add(meta["size_bytes"] // MIB)
        stored = client.get_object(Bucket=bucket, Key=key, VersionId=versions[key]["VersionId"])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == meta["sha256"]
        assert r["readiness_output"] == f"{meta['size_bytes']} bytes sha256:{meta['sha256']}"  # the download's
        assert meta["target"] == "moto" and meta["bucket"] == bucket and meta["object"] == key
        assert r["latency_ms"] > 0 and r["first_command_ms"] > 0 and r["destroy_ms"] > 0
        assert r["liveness_ms"] is None  # upload, download, delete: no liveness probe
    assert sizes == {1, 4, 10, 16}
    assert len({r["provider_metadata"]["sha256"] for r in records}) == N  # no two objects alike

    # never more than --concurrency iterations at once (from upload start to delete end)
    meta = run.meta
    assert meta["schedule"]["mode"] == "sequential" and meta["schedule"]["concurrency"] == CONCURRENCY
    edges = sorted([(r["create_started_at"], 1) for r in records] + [(r["destroy_ended_at"], -1) for r in records])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    assert 1 < peak <= CONCURRENCY

    # the storage table, its figures recomputed here from the records alone
    out = tmp_path / "results"
    assert leaderboard.main([str(run.run_path), "--out", str(out)]) == 0
    [entry] = orjson.loads((out / "storage" / "latest.json").read_bytes())["entries"]
    assert entry["provider"] == "moto" and entry["mode"] == "storage" and entry["ok"] == N == entry["iterations"]
    upload = [r["latency_ms"] for r in records]
    download = [r["first_command_ms"] for r in records]
    mbps = [r["provider_metadata"]["size_bytes"] * 8 / (r["first_command_ms"] / 1000) / 1e6 for r in records]
    s = lambda ms: max(0.0, 100 * (1 - ms / 30_000))  # noqa: E731
    expected = (0.35 * s(nearest_rank(download, 50)) + 0.15 * s(nearest_rank(download, 95))
                + 0.05 * s(nearest_rank(download, 99)) + 0.25 * s(nearest_rank(upload, 50))
                + 0.10 * s(nearest_rank(upload, 95)) + 0.05 * s(nearest_rank(upload, 99))
                + 0.05 * min(100.0, max(0.0, 100 * (nearest_rank(mbps, 50) - 1) / 999)))
    assert entry["download_median_ms"] == nearest_rank(download, 50)
    assert entry["upload_p95_ms"] == nearest_rank(upload, 95)
    assert entry["throughput_median_mbps"] == pytest.approx(nearest_rank(mbps, 50), rel=1e-9)
    assert entry["score"] == pytest.approx(expected, rel=1e-9)
    root = ET.fromstring((out / "storage" / "leaderboard.svg").read_text())
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert root.get("width") == "1200" and "moto" in texts and f"{N}/{N}" in texts
    assert any("1, 4, 10 and 16 MiB objects" in (t or "") for t in texts)
    assert "| 1 | moto |" in (out / "storage" / "leaderboard.md").read_text()

    # the credentials are in no file of the run, the results or the output
    for path in [p for p in (run.run_path, out) for p in p.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert TEST_SECRET_KEY.encode() not in data and TEST_ACCESS_KEY.encode() not in data, path
    assert TEST_SECRET_KEY not in run.output and TEST_ACCESS_KEY not in run.output
    # its times are the boto3 calls', and the summary does not call them the wire's
    assert "latencies are on the wire and leave it out" not in run.output
    assert "latencies time the SDK's calls and include it" in run.output


def test_a_download_that_is_not_the_upload_fails_with_its_reason(endpoint, bucket, monkeypatch):
    for name, value in storage_env(endpoint, bucket, LOADGEN_STORAGE_SIZES_MIB="0.25").items():
        monkeypatch.setenv(name, value)
    provider = StorageProvider(ProviderSettings(users_in_process=1))
    provider.prepare()

    def call(method, *args):  # a greenlet, as the lifecycle runs a gevent adapter's operations
        return provider.start_call(method, *args).wait(60)

    handle = call(provider.create, {"run_id": "mismatch", "sandbox_idx": "0"})
    assert handle.size_bytes == MIB // 4
    assert call(provider.run, handle, "node -v", 30).stdout == f"{MIB // 4} bytes sha256:{handle.sha256}"
    good = handle.sha256
    handle.sha256 = "0" * 64
    with pytest.raises(ObjectMismatch) as wrong_sum:
        call(provider.run, handle, "node -v", 30)
    handle.sha256, handle.size_bytes = good, handle.size_bytes + 1
    with pytest.raises(ObjectMismatch) as wrong_size:
        call(provider.run, handle, "node -v", 30)
    assert provider.classify(wrong_sum.value).error_code == "checksum_mismatch"
    assert provider.classify(wrong_size.value).error_code == "size_mismatch"
    assert call(provider.destroy, handle, 30) is True
    assert call(provider.destroy_id, handle.key, 30) is False  # gone: `loadgen reap` is told so
    gevent.sleep(0)


def test_without_an_endpoint_nothing_runs_even_with_an_s3_endpoint_in_the_environment(tmp_path, endpoint, bucket):
    # moto_server() sets AWS_ENDPOINT_URL_S3 and AWS_* keys: they must not stand in for the benchmark's endpoint
    env = storage_env(endpoint, bucket)
    env.pop("LOADGEN_STORAGE_ENDPOINT")
    run = run_locust("storage.py", 2, tmp_path / "runs", [], env={**env, "LOADGEN_STORAGE_ENDPOINT": ""})
    assert run.returncode == 2, run.output[-3000:]
    assert "LOADGEN_STORAGE_ENDPOINT" in run.output
    assert not any((tmp_path / "runs").glob("*/raw.jsonl"))
    assert s3_client(endpoint).list_object_versions(Bucket=bucket).get("Versions") is None


def test_the_storage_score_of_hand_built_iterations_equals_the_hand_computed_answer():
    # 10 successful iterations of 10 MiB (83.886 Mb): downloads 100..1,000 ms by 100, uploads 1,000..10,000 by
    # 1,000; 12 iterations in all. Nearest rank over 10: p50 = 5th, p95 = p99 = 10th.
    # download: S(500) = 98.333, S(1,000) = 96.667; upload: S(5,000) = 83.333, S(10,000) = 66.667.
    # throughput median: the 5th slowest of 83.886 Mb / (0.1..1.0 s), i.e. over 0.6 s = 139.81 Mbps -> 13.895.
    # (0.35 x 98.333 + 0.15 x 96.667 + 0.05 x 96.667) + (0.25 x 83.333 + 0.10 x 66.667 + 0.05 x 66.667)
    # + 0.05 x 13.895 = 53.75 + 30.833 + 0.695 = 85.278; x 10/12 = 71.07.
    its = [{"size_bytes": 10 * MIB, "download_ms": 100.0 * i, "upload_ms": 1000.0 * i} for i in range(1, 11)]
    out = scoring.storage_score(its, 12)
    assert (out["download_median_ms"], out["download_p95_ms"], out["download_p99_ms"]) == (500.0, 1000.0, 1000.0)
    assert (out["upload_median_ms"], out["upload_p95_ms"], out["upload_p99_ms"]) == (5000.0, 10000.0, 10000.0)
    mbps = 10 * MIB * 8 / 0.6 / 1e6
    assert out["throughput_median_mbps"] == pytest.approx(mbps)
    weighted = (0.35 * (100 - 500 / 300) + 0.15 * (100 - 1000 / 300) + 0.05 * (100 - 1000 / 300)
                + 0.25 * (100 - 5000 / 300) + 0.10 * (100 - 10000 / 300) + 0.05 * (100 - 10000 / 300)
                + 0.05 * 100 * (mbps - 1) / 999)
    assert out["weighted_score"] == pytest.approx(weighted)
    assert out["score"] == pytest.approx(weighted * 10 / 12)
    assert round(out["score"], 2) == 71.07
