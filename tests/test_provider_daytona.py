"""The daytona adapter: the real `daytona` SDK against the emulator's daytona face.

- a 200-sandbox chaos run through Locust, checked sandbox by sandbox against
  the emulator's ground truth (joined by the run_id/sandbox_idx labels);
- every fault at 100%, driven through the adapter in a gevent-patched
  subprocess, gives the right failure class and status;
- a missing key stops the run before any create;
- the SDK cooperates with gevent (concurrent creates overlap);
- the face's bad-input answers, and one emulator serving e2b, daytona and runloop.

Hub lag at 1,000 concurrent sandboxes (not part of the normal run):
    LOADGEN_HUB_LAG_USERS=1000 python -m pytest -s tests/test_provider_daytona.py -k hub_lag
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import subprocess
import sys

import pytest

from loadgen.emulator import start_emulator
from tests.adapter_matrix import run_matrix
from tests.protocol_fixtures import spoke

PROTOCOLS = ["h1", "tls"]
from tests.locust_harness import REPO, run_locust

KEY = {"DAYTONA_API_KEY": "daytona_test_key"}
FAST = ["--create-timeout", "3", "--command-timeout", "3", "--destroy-timeout", "3", "--late-create-window", "1"]

# the emulator's first fault -> the record's status. (The chaos run holds each sandbox
# 2 s, so a sandbox that dies 1 s after its readiness is dead by its liveness probe.)
EXPECTED_STATUS = {
    None: "success", "kill_fail": "success",
    "create_5xx": "failed", "create_hang": "failed", "reset": "failed", "rate_limited": "failed", "capacity": "failed",
    "readiness_fail": "readiness_failed", "died": "partial",
}


def _request(url, method, path, body=None, headers=None, auth=True):
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        h = {"Content-Type": "application/json", **(headers or {})}
        if auth:
            h["Authorization"] = "Bearer daytona_test_key"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# the chaos run


def test_chaos_run_matches_the_emulators_ground_truth(tmp_path):
    with start_emulator("chaos", faces="e2b,daytona,runloop", seed=7) as emu:
        run = run_locust("daytona.py", 200, tmp_path, ["--emulator-url", emu.url, *FAST, "--hold", "2"],
                         env=KEY)
        truth = emu.sandboxes()
        stats = emu.stats()
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 200 and sorted(r["sandbox_idx"] for r in records) == list(range(200))
    run_id = records[0]["run_id"]
    by_idx = {}
    for sb in truth:
        assert sb["provider"] == "daytona"
        labels = sb["metadata"]
        assert labels["run_id"] == run_id  # the labels reached the server
        by_idx[int(labels["sandbox_idx"])] = sb
    assert sorted(by_idx) == list(range(200)), "one create per sandbox, none retried"
    mismatches = [(r["sandbox_idx"], by_idx[r["sandbox_idx"]]["fault"], r["status"], r["error_message"])
                  for r in records if r["status"] != EXPECTED_STATUS[by_idx[r["sandbox_idx"]]["fault"]]]
    assert not mismatches, mismatches[:10]
    expected = collections.Counter(EXPECTED_STATUS[sb["fault"]] for sb in truth)
    assert collections.Counter(r["status"] for r in records) == expected
    assert len({sb["fault"] for sb in truth}) >= 5, "the chaos profile should have hit most faults"
    # the failure classes each fault shows as
    for r in records:
        fault = by_idx[r["sandbox_idx"]]["fault"]
        if fault == "create_5xx":
            assert (r["failure_class"], r["http_status"]) == ("http_error", 500), r
        elif fault == "create_hang":
            assert r["failure_class"] == "timeout", r
        elif fault == "reset":
            assert r["failure_class"] == "network_error", r
        elif fault == "died":
            assert (r["failed_phase"], r["failure_class"], r["http_status"]) == ("liveness", "http_error", 404), r
        elif fault == "kill_fail":
            assert r["destroy_ok"] is False and r["destroy_failure_class"] == "http_error", r
        if r["sandbox_id"] is not None:
            assert r["sandbox_id"] == by_idx[r["sandbox_idx"]]["sandbox_id"]
    # every sandbox made was deleted, except the kill faults (a leak, as in production)
    kill_faults = sum(1 for sb in truth if "kill_fail" in sb["faults"] and sb["state"] == "running")
    assert stats["live"] == kill_faults
    assert stats["errors"]["unauthorized"] == 0 and stats["errors"]["bad_request"] == 0


# ---------------------------------------------------------------------------
# every fault at 100%, through the adapter (in a gevent-patched subprocess)

@pytest.fixture(scope="module", params=PROTOCOLS)
def matrix(request):
    """The same matrix in cleartext and over TLS (urllib3 speaks HTTP/1.1 only)."""
    results = run_matrix("daytona", {"sandbox_lifetime_s": 600}, protocol=request.param)
    results["protocol"] = request.param
    return results


def test_matrix_spoke_its_protocol(matrix):
    protocol = matrix["protocol"]
    assert all(spoke(case["stats"], protocol) for name, case in matrix.items() if name != "protocol"), protocol


def _ops(matrix, name):
    return matrix[name]["ops"]


@pytest.mark.parametrize("name, status", [("create_5xx", 500), ("rate_limited", 429), ("capacity", 429)])
def test_create_http_faults(matrix, name, status):
    ops = _ops(matrix, name)
    failed = ops[-1]
    assert not failed["ok"] and failed["failure_class"] == "http_error" and failed["http_status"] == status, ops
    if status == 429:
        assert ops[0]["ok"], ops
        assert failed["error_type"] == "DaytonaRateLimitError" and failed["error_code"] == "rate_limited"
    assert matrix[name]["stats"]["ops"]["create"]["requests"] == len(ops), "no retry reached the server"


def test_create_hang_is_a_timeout_bounded_by_the_late_create_window(matrix):
    (op,) = _ops(matrix, "create_hang")
    assert not op["ok"] and op["failure_class"] == "timeout", op
    assert op["s"] < 10, "the adapter's own bound (create timeout + late-create window) let go"


def test_reset_is_a_network_error_and_not_retried(matrix):
    (op,) = _ops(matrix, "reset")
    assert not op["ok"] and op["failure_class"] == "network_error" and op["http_status"] is None, op
    assert matrix["reset"]["stats"]["ops"]["create"]["requests"] == 1


def test_readiness_faults(matrix):
    create, first, second = _ops(matrix, "readiness_exit")
    # a non-zero exit is a result, not an error: the lifecycle turns it into CommandFailed
    assert create["ok"] and first["ok"] and first["value"][0] == 1, first
    assert second["ok"] and second["value"] == [0, "v20.18.1\n"]
    create, failed = _ops(matrix, "readiness_stream")
    assert not failed["ok"] and (failed["failure_class"], failed["http_status"]) == ("http_error", 500), failed


def test_died_sandbox_answers_not_found(matrix):
    create, ready, live, destroy = _ops(matrix, "died")
    assert ready["ok"] and ready["value"] == [0, "v20.18.1\n"]
    assert not live["ok"] and (live["failure_class"], live["http_status"], live["error_code"]) == \
        ("http_error", 404, "sandbox_gone"), live
    assert destroy["ok"] and destroy["value"] is False  # already gone


def test_kill_failure_and_clean_life(matrix):
    create, destroy = _ops(matrix, "kill_fail")
    assert not destroy["ok"] and (destroy["failure_class"], destroy["http_status"]) == ("http_error", 500)
    create, run, destroy, again, gone = _ops(matrix, "clean")
    assert create["ok"] and run["value"] == [0, "v20.18.1\n"] and destroy["value"] is True
    assert again["ok"] and again["value"] is False
    assert not gone["ok"] and gone["http_status"] == 404


# ---------------------------------------------------------------------------
# credentials, cooperation with gevent


def test_missing_key_stops_the_run_before_any_create(tmp_path):
    with start_emulator("fast", faces="daytona") as emu:
        run = run_locust("daytona.py", 5, tmp_path, ["--emulator-url", emu.url], env={"DAYTONA_API_KEY": ""},
                         timeout=60)
        stats = emu.stats()
    assert run.returncode != 0
    assert "DAYTONA_API_KEY" in run.output, run.output[-2000:]
    assert stats["requests"] == 0


def test_creates_overlap_under_gevent(tmp_path):
    # 1 s per create and 0.2 s per command: one after another, 100 sandboxes would take 100+ s
    with start_emulator("fast", faces="daytona", create_latency={"kind": "constant", "ms": 1000},
                        exec_latency={"kind": "constant", "ms": 200}) as emu:
        run = run_locust("daytona.py", 100, tmp_path, ["--emulator-url", emu.url], env=KEY, timeout=120)
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    assert all(r["status"] == "success" for r in records)
    assert max(r["latency_ms"] for r in records) < 20_000
    assert all(r["provider_metadata"].get("state_updates") == "polling" for r in records)


@pytest.mark.skipif(not os.environ.get("LOADGEN_HUB_LAG_USERS"), reason="set LOADGEN_HUB_LAG_USERS=1000 to measure")
def test_hub_lag(tmp_path):
    users = int(os.environ["LOADGEN_HUB_LAG_USERS"])
    with start_emulator("fast", faces="daytona") as emu:
        run = run_locust("daytona.py", users, tmp_path, ["--emulator-url", emu.url], env=KEY, timeout=600)
    assert run.returncode == 0, run.output[-3000:]
    summary = run.meta["metrics_summary"]
    local = next(iter(summary["processes"].values()))
    print(f"\ndaytona, {users} sandboxes in one process: hub lag max {local['hub_lag_max_ms']} ms, "
          f"p99 {local['hub_lag_p99_ms']} ms, cpu max {local['cpu_percent_max']}%")
    assert collections.Counter(r["status"] for r in run.records) == {"success": users}


# ---------------------------------------------------------------------------
# the face on its own


def test_face_bad_input_and_auth():
    with start_emulator("fast", faces="e2b,daytona,runloop") as emu:
        url = emu.url
        assert _request(url, "POST", "/api/sandbox", b"{}", auth=False)[0] == 401
        assert _request(url, "POST", "/toolbox/x/process/execute", b"{}", auth=False)[0] == 401
        assert _request(url, "POST", "/api/sandbox", b"{not json")[0] == 400
        assert _request(url, "POST", "/api/sandbox", b"[]")[0] == 400
        assert _request(url, "POST", "/api/sandbox", json.dumps({"labels": {"a": 1}}).encode())[0] == 400
        assert _request(url, "POST", "/api/sandbox", json.dumps({"autoStopInterval": -1}).encode())[0] == 400
        assert _request(url, "GET", "/api/sandbox/nope")[0] == 404
        assert _request(url, "DELETE", "/api/sandbox/nope")[0] == 404
        status, _, body = _request(url, "POST", "/toolbox/nope/process/execute", b'{"command":"node -v"}')
        assert status == 404 and json.loads(body)["statusCode"] == 404
        status, _, body = _request(url, "POST", "/api/sandbox", json.dumps(
            {"labels": {"run_id": "r", "sandbox_idx": "1"}, "autoStopInterval": 0, "ttlMinutes": 30}).encode())
        assert status == 200
        record = json.loads(body)
        assert record["state"] == "started" and record["toolboxProxyUrl"] == f"{url}/toolbox"
        sid = record["id"]
        assert _request(url, "POST", f"/toolbox/{sid}/process/execute", b'{"cmd":"x"}')[0] == 400
        status, _, body = _request(url, "POST", f"/toolbox/{sid}/process/execute", b'{"command":"node -v"}')
        assert status == 200 and json.loads(body) == {"exitCode": 0, "result": "v20.18.1\n"}
        assert _request(url, "GET", f"/api/sandbox/{sid}/toolbox-proxy-url")[0] == 200
        assert _request(url, "DELETE", f"/api/sandbox/{sid}")[0] == 200
        status, _, body = _request(url, "GET", f"/api/sandbox/{sid}")
        assert status == 200 and json.loads(body)["state"] == "destroyed"
        assert _request(url, "DELETE", f"/api/sandbox/{sid}")[0] == 404
        # the e2b face still answers its own paths on the same server
        status, _, _ = _request(url, "POST", "/v2/sandboxes", json.dumps({"templateID": "base"}).encode(),
                                headers={"X-API-KEY": "e2b"}, auth=False)
        assert status == 201
        truth = emu.sandboxes()
        assert [s["provider"] for s in truth] == ["daytona", "e2b"]
        assert truth[0]["lifetime_s"] == 1800.0


def test_polling_fallback_when_socketio_is_unavailable():
    """Without --emulator-url the adapter tries the SDK's socket.io stream first; when it
    cannot connect (the emulator serves no websocket) it must fall back to polling
    instead of waiting on events, and a create answered `starting` polls GET."""
    code = r"""
from gevent import monkey; monkey.patch_all()
import os, time
os.environ["DAYTONA_API_KEY"] = "k"
from loadgen.emulator import EmulatorThread
from loadgen.providers.base import ProviderSettings
from loadgen.providers.daytona import DaytonaProvider
with EmulatorThread("fast", faces="daytona") as emu:
    os.environ["DAYTONA_API_URL"] = emu.url + "/api"
    p = DaytonaProvider(ProviderSettings(users_in_process=2)); p.prepare()
    emu.emulator.faces[0].create_state = "starting"
    t = time.monotonic()
    h = p.create({"run_id": "r", "sandbox_idx": "0"})
    print("RESULT", p.events, h.state.value, round(time.monotonic() - t, 3), emu.stats()["ops"]["get"]["requests"])
    for api in (p.client._api_client, p.client._toolbox_api_client):
        kw = api.rest_client.pool_manager.connection_pool_kw
        print("POOL", kw["retries"], kw["maxsize"], api.rest_client.pool_manager.connection_from_url(emu.url).retries)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stdout[-2000:] + proc.stderr[-2000:]
    _, events, state, seconds, gets = line[0].split()
    assert events == "polling" and state == "started"
    assert int(gets) >= 1
    pools = [x for x in proc.stdout.splitlines() if x.startswith("POOL")]
    # urllib3 retries off on the API and toolbox pools (the SDK's default: 3, and RemoteDisconnectedRetry)
    assert pools == ["POOL False 256 False", "POOL False 256 False"], pools
