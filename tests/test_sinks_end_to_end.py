"""Whole Locust runs (a master and two workers) with the Postgres and object-store sinks on."""

import math
import signal
import threading
import time

import orjson

from loadgen.sinks.pg_redact import redact_url  # noqa: F401  (imported so a missing module fails loudly)
from tests.locust_harness import finish, kill_all, run_locust, start_locust, wait_for
from tests.pg_fixtures import fresh_database, query
from tests.s3_fixtures import (assert_manifest_consistent, assert_store_matches, get_bytes, list_keys,
                               TEST_SECRET_KEY, moto_server, new_bucket, s3_client, tcp_proxy)


def nearest_rank(values, p):
    values = sorted(values)
    return values[max(1, math.ceil(p / 100 * len(values))) - 1]


def test_postgres_1000_sandboxes_survive_killed_connections(tmp_path, emulator):
    with fresh_database() as url:
        killed = []
        stop = threading.Event()

        def kill_sink_connections():
            # three rounds while the run is under way, as a restarting or flaky database would;
            # a round waits for the sink to be connected (a busy machine starts Locust slowly)
            rounds = 0
            while rounds < 3 and not stop.wait(0.5):
                rows = query(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = 'loadgen' AND datname = current_database() "
                                  "AND pid <> pg_backend_pid()")
                if any(r[0] for r in rows):
                    killed.extend(r[0] for r in rows)
                    rounds += 1
                    stop.wait(1.0)

        killer = threading.Thread(target=kill_sink_connections)
        killer.start()
        try:
            run = run_locust("local.py", 1000, tmp_path, ["--emulator-url", emulator.url, "--hold", "4"],
                             env={"DATABASE_URL": url}, workers=2, timeout=300)
        finally:
            stop.set()
            killer.join()
        assert run.returncode == 0, run.output[-4000:]
        assert any(killed), "no sink connection was killed during the run"
        records = run.records
        assert len(records) == 1000
        count, distinct = query(url, "SELECT count(*), count(DISTINCT sandbox_idx) FROM sandbox_results")[0]
        assert (count, distinct) == (1000, 1000)
        row = query(url, "SELECT status, sandboxes_attempted, sandboxes_succeeded, partials, readiness_failures, "
                         "timeouts, http_errors, network_errors, other_errors, p50_latency_ms, p99_latency_ms "
                         "FROM runs")[0]
        latencies = [r["latency_ms"] for r in records if r["latency_ms"] is not None]
        by = lambda key, value: sum(1 for r in records if r[key] == value)  # noqa: E731
        assert row[0] == "done"
        assert row[1:9] == (1000, by("status", "success"), by("status", "partial"), by("status", "readiness_failed"),
                            by("failure_class", "timeout"), by("failure_class", "http_error"),
                            by("failure_class", "network_error"), by("failure_class", "other"))
        assert float(row[9]) == nearest_rank(latencies, 50)
        assert float(row[10]) == nearest_rank(latencies, 99)
        assert run.meta["sinks"]["postgres"]["complete"] is True


def test_object_store_1000_sandboxes_with_an_outage(tmp_path, emulator):
    with moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        port = int(endpoint.rsplit(":", 1)[1])
        with tcp_proxy(port) as proxy:
            env = {"AWS_ENDPOINT_URL_S3": proxy.url}
            master, workers, _ = start_locust("local.py", 1000, tmp_path,
                                              ["--emulator-url", emulator.url, "--hold", "8",
                                               "--bucket", bucket, "--prefix", "bursts"], env=env, workers=2)
            try:
                wait_for(lambda: emulator.stats()["live"] >= 500, 60, what="the burst under way")
                proxy.stop()  # the store is unreachable for a while, mid-run
                time.sleep(4)
                proxy.start()
                run = finish(master, workers, tmp_path, timeout=300)
            finally:
                kill_all([master, *workers])
        assert run.returncode == 0, run.output[-4000:]
        assert "[sink] objectstore failed" in (run.run_path / "coordinator.log").read_text()
        client = s3_client(endpoint)
        root = f"bursts/{run.run_path.name}/"
        manifest = assert_store_matches(client, bucket, root, run.run_path, expect_records=1000)
        assert sum(c["lines"] for c in manifest["streams"]["raw"]["chunks"]) == 1000
        meta = orjson.loads(get_bytes(client, bucket, root + "meta.json"))
        assert meta["run_id"] == run.run_path.name
        assert run.meta["sinks"]["objectstore"]["complete"] is True
        # the credentials never reached the logs
        assert TEST_SECRET_KEY not in run.output
        assert TEST_SECRET_KEY not in (run.run_path / "coordinator.log").read_text()


def test_object_store_after_master_sigkill_holds_exactly_what_was_uploaded(tmp_path, emulator):
    with moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        master, workers, _ = start_locust("local.py", 600, tmp_path,
                                          ["--emulator-url", emulator.url, "--hold", "60", "--bucket", bucket],
                                          workers=1)
        try:
            wait_for(lambda: emulator.stats()["live"] == 600, 60, what="600 sandboxes held")
            client = s3_client(endpoint)
            wait_for(lambda: any(k.endswith("manifest.json") for k in list_keys(client, bucket, "")), 30,
                     what="a first manifest")
            master.send_signal(signal.SIGKILL)
            master.wait(10)
        finally:
            kill_all([master, *workers])
        run_path = next(p for p in tmp_path.iterdir() if p.is_dir())
        root = f"{run_path.name}/"
        state = orjson.loads((run_path / ".objectstore-state.json").read_bytes())
        target = next(iter(state["targets"].values()))
        pending = {name: s["pending"] for name, s in target["streams"].items()}
        manifest = assert_manifest_consistent(client, bucket, root, allow_pending=pending)
        assert "run.json" in list_keys(client, bucket, root)
        for chunk in manifest["streams"].get("metrics", {}).get("chunks", []):
            assert get_bytes(client, bucket, root + chunk["key"])
