"""The Sandboxes tab serves live data from the master during a run (web UI mode)."""

import json
import signal
import subprocess
import urllib.parse
import urllib.request

from tests.locust_harness import LOCUST, LOCUSTFILES, base_env, free_port, kill_all, wait_for


def get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def test_sandboxes_tab_serves_live_counts(tmp_path, emulator):
    port = free_port()
    proc = subprocess.Popen(
        [LOCUST, "-f", str(LOCUSTFILES / "local.py"), "--autostart", "-u", "100", "-r", "100",
         "--web-host", "127.0.0.1", "--web-port", str(port), "--run-dir", str(tmp_path),
         "--emulator-url", emulator.url, "--hold", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=base_env(), text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def held():
            try:
                snap = json.loads(get(base + "/loadgen/sandboxes"))
            except OSError:
                return None
            return snap if snap.get("held") == 100 else None

        snap = wait_for(held, 60, what="100 sandboxes held, seen through the web UI")
        # every sandbox is ready, so the barrier released by count; --hold keeps them held
        assert snap["live"] == 100 and snap["barrier"]["reason"] == "count"
        assert snap["peak_live"] >= snap["live"]  # "alive now" never exceeds the peak beside it
        assert snap["by_status"] == {"success": 0, "partial": 0, "readiness_failed": 0, "failed": 0}
        assert "waiting for 100 sandboxes in their hold" in snap["waiting_for"]
        assert snap["target"]["kind"] == "emulator" and snap["target"]["url"] == emulator.url
        page = get(base + "/").decode()
        assert "Sandboxes" in page and 'id="loadgen-target"' in page
        for name in ("concurrency", "status", "latency"):
            svg = get(base + f"/loadgen/{name}.svg").decode()
            assert svg.lstrip().startswith("<svg")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            kill_all([proc])
    assert emulator.stats()["live"] == 0


def test_a_profile_chosen_in_the_form_restarts_the_emulator_and_is_the_one_recorded(tmp_path):
    """local.py's --emulator-profile is a choice in the form: a new one restarts the emulator before
    the run, and run.json, meta.json and the tab name the profile that was really in force."""
    port = free_port()
    proc = subprocess.Popen(
        [LOCUST, "-f", str(LOCUSTFILES / "local.py"), "--web-host", "127.0.0.1", "--web-port", str(port),
         "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=base_env(), text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        first = wait_for(lambda: _snapshot(base), 60, what="the web UI")["target"]
        assert first["emulator_profile"] == "fast"
        body = urllib.parse.urlencode({"user_count": 5, "spawn_rate": 5, "emulator_profile": "realistic-daytona",
                                       "label": "profile from the form"}).encode()
        answer = json.loads(urllib.request.urlopen(base + "/swarm", data=body, timeout=30).read())
        assert answer["success"], answer
        snap = wait_for(lambda: (_snapshot(base) or {}).get("state") == "finished" and _snapshot(base), 120,
                        what="the run to end by itself")
        settings = json.loads(get(snap["target"]["url"] + "/_emulator/stats"))["settings"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            kill_all([proc])
    assert snap["target"]["url"] != first["url"] and snap["target"]["emulator_profile"] == "realistic-daytona"
    assert settings["create_latency"]["kind"] == "lognormal"  # the realistic profile is in force
    assert snap["label"] == "profile from the form" and snap["by_status"]["success"] == 5
    (run_path,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    meta = json.loads((run_path / "meta.json").read_text())
    assert (meta["target"], meta["emulator_profile"], meta["label"]) == ("emulator", "realistic-daytona",
                                                                        "profile from the form")
    assert meta["options"]["emulator_profile"] == "realistic-daytona"


def _snapshot(base):
    try:
        return json.loads(get(base + "/loadgen/sandboxes"))
    except OSError:
        return None
