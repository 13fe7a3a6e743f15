"""The Sandboxes tab serves live data from the master during a run (web UI mode)."""

import json
import signal
import subprocess
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
        stats = json.loads(get(base + "/stats/requests"))
        tab = next(e for e in stats["extended_stats"] if e["key"] == "sandboxes")
        rows = {row["name"]: row["value"] for row in tab["data"]}
        assert rows["held at the barrier"] == 100
        assert rows["barrier"].startswith("released by count")
        page = get(base + "/").decode()
        assert "Sandboxes" in page
        svg = get(base + "/loadgen/concurrency.svg").decode()
        assert svg.lstrip().startswith("<svg") or svg.lstrip().startswith("<?xml")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            kill_all([proc])
    assert emulator.stats()["live"] == 0
