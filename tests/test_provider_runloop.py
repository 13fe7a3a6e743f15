"""The runloop adapter: the real `runloop-api-client` SDK against the emulator's runloop face.

- a 200-sandbox chaos run through Locust, checked sandbox by sandbox against
  the emulator's ground truth (joined by the run_id/sandbox_idx metadata);
- every fault at 100%, driven through the adapter in a gevent-patched
  subprocess, gives the right failure class and status;
- a missing key stops the run before any create;
- the SDK cooperates with gevent (concurrent creates overlap);
- the face's bad-input answers and its execution long poll.

Hub lag at 1,000 concurrent sandboxes (not part of the normal run):
    LOADGEN_HUB_LAG_USERS=1000 python -m pytest -s tests/test_provider_runloop.py -k hub_lag
"""

from __future__ import annotations

import collections
import functools
import http.client
import json
import os
import re

import pytest

from loadgen.emulator import start_emulator
from tests.adapter_matrix import run_matrix
from tests.protocol_fixtures import spoke
from tests.tap import Tap, sent_lean_and_plain

PROTOCOLS = ["h1", "h2", "tls", "h2+tls"]
from tests.locust_harness import run_locust

KEY = {"RUNLOOP_API_KEY": "runloop_test_key"}
FAST = ["--create-timeout", "3", "--command-timeout", "3", "--destroy-timeout", "3", "--late-create-window", "1"]

# the emulator's first fault -> the record's status. (The chaos run holds each sandbox
# 2 s, so a sandbox that dies 1 s after its readiness is dead by its liveness probe.)
EXPECTED_STATUS = {
    None: "success", "kill_fail": "success",
    "create_5xx": "failed", "create_hang": "failed", "reset": "failed", "rate_limited": "failed", "capacity": "failed",
    "readiness_fail": "readiness_failed", "died": "partial",
}


def _request(url, method, path, body=None, auth=True):
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=40)
    try:
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = "Bearer runloop_test_key"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# the chaos run


def test_chaos_run_matches_the_emulators_ground_truth(tmp_path):
    with start_emulator("chaos", faces="e2b,daytona,runloop", seed=11) as emu:
        run = run_locust("runloop.py", 200, tmp_path, ["--emulator-url", emu.url, *FAST, "--hold", "2"],
                         env=KEY)
        truth = emu.sandboxes()
        stats = emu.stats()
    assert run.returncode == 0, run.output[-4000:]
    records = run.records
    assert len(records) == 200 and sorted(r["sandbox_idx"] for r in records) == list(range(200))
    run_id = records[0]["run_id"]
    by_idx = {}
    for sb in truth:
        assert sb["provider"] == "runloop"
        assert sb["metadata"]["run_id"] == run_id  # the metadata reached the server
        by_idx[int(sb["metadata"]["sandbox_idx"])] = sb
    assert sorted(by_idx) == list(range(200)), "one create per sandbox, none retried"
    mismatches = [(r["sandbox_idx"], by_idx[r["sandbox_idx"]]["fault"], r["status"], r["error_message"])
                  for r in records if r["status"] != EXPECTED_STATUS[by_idx[r["sandbox_idx"]]["fault"]]]
    assert not mismatches, mismatches[:10]
    expected = collections.Counter(EXPECTED_STATUS[sb["fault"]] for sb in truth)
    assert collections.Counter(r["status"] for r in records) == expected
    assert len({sb["fault"] for sb in truth}) >= 5, "the chaos profile should have hit most faults"
    for r in records:
        sb = by_idx[r["sandbox_idx"]]
        fault = sb["fault"]
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
            assert r["sandbox_id"] == sb["sandbox_id"]
        if sb["sandbox_id"] is not None:
            assert sb["lifetime_s"] >= 600, "keep_alive_time_seconds must outlast the run"
    kill_faults = sum(1 for sb in truth if "kill_fail" in sb["faults"] and sb["state"] == "running")
    assert stats["live"] == kill_faults
    assert stats["errors"]["unauthorized"] == 0 and stats["errors"]["bad_request"] == 0


# ---------------------------------------------------------------------------
# every fault at 100%, through the adapter (in a gevent-patched subprocess)

@pytest.fixture(scope="module", params=PROTOCOLS)
def matrix(request):
    """The same matrix over each protocol the SDK speaks (httpx: HTTP/1.1 or HTTP/2, cleartext or TLS)."""
    results = run_matrix("runloop", {"destroy_timeout_s": 3, "sandbox_lifetime_s": 900}, long_poll=True,
                         protocol=request.param)
    results["protocol"] = request.param
    return results


def test_matrix_spoke_its_protocol(matrix):
    protocol = matrix["protocol"]
    assert all(spoke(case["stats"], protocol) for name, case in matrix.items() if name != "protocol"), protocol


def _ops(matrix, name):
    return matrix[name]["ops"]


@pytest.mark.parametrize("name, status", [("create_5xx", 500), ("rate_limited", 429), ("capacity", 429)])
def test_create_http_faults_are_not_retried(matrix, name, status):
    ops = _ops(matrix, name)
    failed = ops[-1]
    assert not failed["ok"] and failed["failure_class"] == "http_error" and failed["http_status"] == status, ops
    if status == 429:
        assert ops[0]["ok"], ops
        assert failed["error_type"] == "RateLimitError" and failed["error_code"] == "rate_limited"
    assert matrix[name]["stats"]["ops"]["create"]["requests"] == len(ops), "max_retries=0: one request per create"


def test_create_hang_is_a_timeout_bounded_by_the_late_create_window(matrix):
    (op,) = _ops(matrix, "create_hang")
    assert not op["ok"] and op["failure_class"] == "timeout", op
    assert op["s"] < 10


def test_reset_is_a_network_error_and_not_retried(matrix):
    (op,) = _ops(matrix, "reset")
    assert not op["ok"] and op["failure_class"] == "network_error" and op["http_status"] is None, op
    assert matrix["reset"]["stats"]["ops"]["create"]["requests"] == 1


def test_readiness_faults(matrix):
    create, first, second = _ops(matrix, "readiness_exit")
    assert create["ok"] and first["ok"] and first["value"][0] == 1, first
    assert second["ok"] and second["value"] == [0, "v20.18.1\n"]
    create, failed = _ops(matrix, "readiness_stream")
    assert not failed["ok"] and (failed["failure_class"], failed["http_status"]) == ("http_error", 500), failed


def test_died_devbox_answers_not_found(matrix):
    create, ready, live, destroy = _ops(matrix, "died")
    assert ready["ok"] and ready["value"] == [0, "v20.18.1\n"]
    assert not live["ok"] and (live["failure_class"], live["http_status"], live["error_code"]) == \
        ("http_error", 404, "sandbox_gone"), live
    assert destroy["ok"] and destroy["value"] is False


def test_kill_failure_clean_life_and_long_poll(matrix):
    create, destroy = _ops(matrix, "kill_fail")
    assert not destroy["ok"] and (destroy["failure_class"], destroy["http_status"]) == ("http_error", 500)
    create, run, slow, destroy, again, gone = _ops(matrix, "clean")
    assert create["ok"] and run["value"] == [0, "v20.18.1\n"]
    assert slow["ok"] and slow["value"] == [0, "v1.2.3\n"], slow
    assert destroy["value"] is True and again["value"] is False
    assert not gone["ok"] and gone["http_status"] == 404
    (truth,) = matrix["clean"]["truth"]
    assert truth["metadata"] == {"run_id": "matrix", "sandbox_idx": "0"} and truth["lifetime_s"] == 900


# ---------------------------------------------------------------------------
# the lean SDK path sends what the SDK as shipped sends


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _lifecycle_on_the_wire(tap: Tap, plain: bool, monkeypatch) -> list:
    """A create, a command, a command with a query parameter (which the lean path leaves to the SDK), a
    shutdown and a shutdown of a devbox that is gone, as sent; ids and per-request UUIDs replaced."""
    from loadgen.providers import get_provider_class
    from loadgen.providers.base import ProviderSettings

    monkeypatch.setenv("RUNLOOP_API_KEY", "runloop_test_key")
    monkeypatch.delenv("LOADGEN_RUNLOOP_TRANSPORT", raising=False)
    if plain:  # a lean client made earlier in this process installed its body transform: the SDK's own here
        from runloop_api_client._utils import maybe_transform
        from runloop_api_client.resources.devboxes import devboxes

        monkeypatch.setattr(devboxes, "maybe_transform", maybe_transform)
    adapter = get_provider_class("runloop")(ProviderSettings(base_url=tap.url, users_in_process=2))
    adapter.prepare()
    assert adapter.wire_verdicts and adapter.lean is not plain
    call = lambda method, *args: adapter.start_call(method, *args).wait(30)  # noqa: E731
    handle = call(adapter.create, {"run_id": "tap", "sandbox_idx": "0"})
    assert call(adapter.run, handle, "node -v", 10).stdout == "v20.18.1\n"
    view = call(functools.partial(handle.client.devboxes.execute, handle.id, command="node -v", last_n="5",
                                  optimistic_timeout=5))
    assert view.exit_status == 0
    assert call(adapter.destroy, handle, 10) is True
    assert call(adapter.destroy, handle, 10) is False
    sent = tap.requests()
    normalised = []
    for lines, body in sent:
        text = _UUID.sub(b"<uuid>", "\r\n".join(lines).encode("latin-1").replace(handle.id.encode(), b"<id>"))
        normalised.append((text.decode("latin-1").split("\r\n"), _UUID.sub(b"<uuid>", body)))
    return normalised


def test_the_lean_sdk_path_sends_what_the_sdk_as_shipped_sends(monkeypatch):
    """Method, path, every header (names, values, order) and body, request by request, with the lean path
    on and with LOADGEN_RUNLOOP_PLAIN_SDK=1 (the SDK's own request path on the same timed transport)."""
    lean, plain = sent_lean_and_plain("runloop", "LOADGEN_RUNLOOP_PLAIN_SDK",
                                      lambda tap, plain: _lifecycle_on_the_wire(tap, plain, monkeypatch), monkeypatch)
    assert [lines[0] for lines, _ in lean] == [
        "POST /v1/devboxes/create_and_await_running HTTP/1.1", "POST /v1/devboxes/<id>/execute HTTP/1.1",
        "POST /v1/devboxes/<id>/execute?last_n=5 HTTP/1.1", "POST /v1/devboxes/<id>/shutdown HTTP/1.1",
        "POST /v1/devboxes/<id>/shutdown HTTP/1.1"]
    assert len(plain) == len(lean)
    for (lean_lines, lean_body), (plain_lines, plain_body) in zip(lean, plain):
        assert lean_lines == plain_lines
        assert lean_body == plain_body
    create_head = lean[0][0]
    assert any(line.lower() == "authorization: bearer runloop_test_key" for line in create_head), create_head


def test_the_lean_path_makes_answers_options_and_bodies_the_planned_way(monkeypatch):
    """The lean client hands every answer, every post's options and the devbox calls' bodies to
    loadgen.providers.stainless (whose output tests/test_stainless.py compares with the SDK's)."""
    from runloop_api_client.types import DevboxAsyncExecutionDetailView, DevboxView

    from loadgen.providers import get_provider_class, runloop
    from loadgen.providers.base import ProviderSettings

    monkeypatch.setenv("RUNLOOP_API_KEY", "runloop_test_key")
    monkeypatch.delenv("LOADGEN_RUNLOOP_TRANSPORT", raising=False)
    monkeypatch.delenv("LOADGEN_RUNLOOP_PLAIN_SDK", raising=False)
    with start_emulator("fast", faces="runloop") as emu:
        adapter = get_provider_class("runloop")(ProviderSettings(base_url=emu.url, users_in_process=2))
        adapter.prepare()
        models = runloop._lean_models()
        assert adapter.lean and models is not None
        from runloop_api_client.resources.devboxes import devboxes

        assert devboxes.maybe_transform == models.transform  # the name the devbox calls use
        seen = collections.defaultdict(list)
        for owner, name, key in ((models, "construct", 0), (models, "request_options", "url"),
                                 (devboxes, "maybe_transform", 1)):
            original = getattr(owner, name)
            monkeypatch.setattr(owner, name, lambda *a, _name=name, _f=original, _key=key, **k: (
                seen[_name].append(a[_key] if isinstance(_key, int) else k[_key]), _f(*a, **k))[1])
        call = lambda method, *args: adapter.start_call(method, *args).wait(30)  # noqa: E731
        handle = call(adapter.create, {"run_id": "planned", "sandbox_idx": "0"})
        assert call(adapter.run, handle, "node -v", 10).stdout == "v20.18.1\n"
        assert call(adapter.destroy, handle, 10) is True
    answers = [t for t in seen["construct"] if t in (DevboxView, DevboxAsyncExecutionDetailView)]  # (not fields')
    assert seen["construct"][0] is DevboxView and answers == [DevboxView, DevboxAsyncExecutionDetailView, DevboxView]
    assert seen["request_options"] == ["/v1/devboxes/create_and_await_running", f"/v1/devboxes/{handle.id}/execute",
                                       f"/v1/devboxes/{handle.id}/shutdown"]
    assert [t.__name__ for t in seen["maybe_transform"]] == [  # (the SDK transforms a command's body twice)
        "DevboxCreateParams", "DevboxExecuteParams", "DevboxExecuteParams", "DevboxShutdownParams"]
    assert isinstance(handle.view, DevboxView) and handle.view.status == "running"


# ---------------------------------------------------------------------------
# credentials, cooperation with gevent


def test_missing_key_stops_the_run_before_any_create(tmp_path):
    with start_emulator("fast", faces="runloop") as emu:
        run = run_locust("runloop.py", 5, tmp_path, ["--emulator-url", emu.url], env={"RUNLOOP_API_KEY": ""},
                         timeout=60)
        stats = emu.stats()
    assert run.returncode != 0
    assert "RUNLOOP_API_KEY" in run.output, run.output[-2000:]
    assert stats["requests"] == 0


def test_creates_overlap_under_gevent(tmp_path):
    # 1 s per create and 0.2 s per command: one after another, 100 devboxes would take 100+ s
    with start_emulator("fast", faces="runloop", create_latency={"kind": "constant", "ms": 1000},
                        exec_latency={"kind": "constant", "ms": 200}) as emu:
        run = run_locust("runloop.py", 100, tmp_path, ["--emulator-url", emu.url], env=KEY, timeout=120)
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    assert all(r["status"] == "success" for r in records)
    assert max(r["latency_ms"] for r in records) < 20_000


@pytest.mark.skipif(not os.environ.get("LOADGEN_HUB_LAG_USERS"), reason="set LOADGEN_HUB_LAG_USERS=1000 to measure")
def test_hub_lag(tmp_path):
    users = int(os.environ["LOADGEN_HUB_LAG_USERS"])
    with start_emulator("fast", faces="runloop") as emu:
        run = run_locust("runloop.py", users, tmp_path, ["--emulator-url", emu.url], env=KEY, timeout=600)
    assert run.returncode == 0, run.output[-3000:]
    local = next(iter(run.meta["metrics_summary"]["processes"].values()))
    print(f"\nrunloop, {users} sandboxes in one process: hub lag max {local['hub_lag_max_ms']} ms, "
          f"p99 {local['hub_lag_p99_ms']} ms, cpu max {local['cpu_percent_max']}%")
    assert collections.Counter(r["status"] for r in run.records) == {"success": users}


# ---------------------------------------------------------------------------
# the face on its own


def test_face_bad_input_and_auth():
    with start_emulator("fast", faces="e2b,daytona,runloop") as emu:
        url = emu.url
        assert _request(url, "POST", "/v1/devboxes/create_and_await_running", b"{}", auth=False)[0] == 401
        assert _request(url, "POST", "/v1/devboxes/create_and_await_running", b"{nope")[0] == 400
        assert _request(url, "POST", "/v1/devboxes", b"[1]")[0] == 400
        body = json.dumps({"launch_parameters": {"keep_alive_time_seconds": 172801}}).encode()
        assert _request(url, "POST", "/v1/devboxes/create_and_await_running", body)[0] == 400
        body = json.dumps({"metadata": {"a": 1}}).encode()
        assert _request(url, "POST", "/v1/devboxes/create_and_await_running", body)[0] == 400
        body = json.dumps({"blueprint_id": "a", "snapshot_id": "b"}).encode()
        assert _request(url, "POST", "/v1/devboxes/create_and_await_running", body)[0] == 400
        assert _request(url, "GET", "/v1/devboxes/nope")[0] == 404
        assert _request(url, "POST", "/v1/devboxes/nope/execute", b'{"command":"node -v"}')[0] == 404
        assert _request(url, "POST", "/v1/devboxes/nope/shutdown")[0] == 404
        body = json.dumps({"metadata": {"run_id": "r", "sandbox_idx": "1"}, "blueprint_name": "node",
                           "launch_parameters": {"keep_alive_time_seconds": 7200}}).encode()
        status, _, reply = _request(url, "POST", "/v1/devboxes/create_and_await_running", body)
        assert status == 200
        view = json.loads(reply)
        assert view["status"] == "running" and view["metadata"] == {"run_id": "r", "sandbox_idx": "1"}
        dbx = view["id"]
        assert _request(url, "POST", f"/v1/devboxes/{dbx}/execute", b'{"cmd":"x"}')[0] == 400
        assert _request(url, "POST", f"/v1/devboxes/{dbx}/execute",
                        b'{"command":"node -v","optimistic_timeout":99}')[0] == 400
        # a command longer than the optimistic wait: `running`, then the execution long poll
        status, _, reply = _request(url, "POST", f"/v1/devboxes/{dbx}/execute",
                                    b'{"command":"sleep 1 && echo done","optimistic_timeout":0}')
        running = json.loads(reply)
        assert status == 200 and running["status"] == "running"
        path = f"/v1/devboxes/{dbx}/executions/{running['execution_id']}/wait_for_status"
        status, _, reply = _request(url, "POST", path, b'{"statuses":["completed"],"timeout_seconds":0.2}')
        assert status == 408
        status, _, reply = _request(url, "POST", path, b'{"statuses":["completed"],"timeout_seconds":20}')
        done = json.loads(reply)
        assert status == 200 and done["status"] == "completed" and done["stdout"] == "done\n"
        assert _request(url, "POST", f"/v1/devboxes/{dbx}/executions/other/wait_for_status",
                        b'{"statuses":["completed"]}')[0] == 404
        status, _, reply = _request(url, "POST", f"/v1/devboxes/{dbx}/shutdown")
        assert status == 200 and json.loads(reply)["status"] == "shutdown"
        status, _, reply = _request(url, "GET", f"/v1/devboxes/{dbx}")
        assert status == 200 and json.loads(reply)["status"] == "shutdown"
        assert _request(url, "POST", f"/v1/devboxes/{dbx}/shutdown")[0] == 404
        (truth,) = emu.sandboxes()
        assert truth["provider"] == "runloop" and truth["lifetime_s"] == 7200 and truth["template"] == "node"
