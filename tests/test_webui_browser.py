"""The web UI as a new user meets it, in a real browser (Debian's Chromium through playwright).

A run started from the form of ``locustfiles/local.py`` reaches its own
emulator and nothing else: the emulator's ground truth counts exactly the
creates of the run, every endpoint variable of the e2b SDK points at a trap
that nobody knocks on, and the kernel's tracer (strace) saw every connect()
of the Locust process go to 127.0.0.1. A form with a bad value, or one that
would change the target, is refused in the UI with nothing created.
"""

from __future__ import annotations

import importlib.util

import orjson
import pytest

from tests.webui_fixtures import (
    CHROMIUM,
    LOOPBACK,
    NON_WHITE_PIXELS_JS,
    STRACE,
    WebLocust,
    artifacts_dir,
    fill_form,
    get_json,
    open_browser,
)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]

USERS = 300
CHARTS = ("concurrency", "status", "latency")


def _records(run_dir):
    (run_path,) = [p for p in run_dir.iterdir() if p.is_dir()]
    return [orjson.loads(line) for line in (run_path / "raw.jsonl").read_bytes().splitlines() if line.strip()]


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (Debian: apt-get install -y strace)")
def test_a_form_run_reaches_only_the_emulator_it_started(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir(tmp_path / "artifacts")
    with WebLocust(tmp_path) as web, sync_playwright() as pw:
        browser = open_browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(web.base + "/")
        banner = page.locator("#loadgen-target")
        expect(banner).to_contain_text("loadgen emulator at http://127.0.0.1:")
        assert banner.get_attribute("data-target") == "emulator"
        fill_form(page, USERS)
        page.get_by_text("Custom parameters").click()
        assert page.locator('input[name="emulatorUrl"]').count() == 0  # the target is not the form's to change
        page.screenshot(path=str(shots / "webui-form.png"), full_page=True)
        page.get_by_role("button", name="Start").click()
        page.get_by_role("tab", name="Sandboxes").click()
        panel = page.frame_locator("#loadgen-panel")
        # the run ends by itself: every life over, Locust stopped, meta.json written
        expect(panel.locator("#lg-state")).to_contain_text("finished: done, exit code 0", timeout=180_000)
        expect(panel.locator("#lg-status-success .v")).to_have_text(f"{USERS}")
        expect(panel.locator("#lg-status-failed .v")).to_have_text("0")
        expect(panel.locator("#lg-summary")).to_contain_text(f"{USERS} of {USERS} results received")
        expect(panel.locator("#lg-report")).to_have_attribute("href", "../loadgen/report/report.html")
        # time to N live and the cost, once the run is over
        expect(panel.locator("#lg-schedule")).to_contain_text("time to 50% / 90% / 99% / 100% live")
        expect(panel.locator("#lg-schedule")).to_contain_text("; cost $")
        expect(panel.locator("#lg-summary")).to_contain_text(f"of {USERS} ever alive; peak {USERS} at")
        expect(panel.locator("#lg-summary")).to_contain_text("cost: ")
        page.wait_for_timeout(1500)  # the charts' last redraw after the end
        for name in CHARTS:
            drawn = panel.locator(f"#lg-chart-{name}").evaluate(NON_WHITE_PIXELS_JS)
            assert drawn > 2000, f"the {name} chart is (nearly) blank: {drawn} non-white pixels"
        shot = shots / "webui-sandboxes-tab.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshots of the web UI: {shots}")
        report = page.request.get(web.base + "/loadgen/report/report.html")
        assert report.ok and "<html" in report.text()

        snap = web.snapshot()
        emulator_url = snap["target"]["url"]
        truth = get_json(emulator_url + "/_emulator/stats")
        browser.close()
    assert truth["created"] == USERS and truth["requests"] == USERS and truth["live"] == 0
    assert snap["by_status"]["success"] == USERS and snap["peak_live"] == USERS
    (meta_path,) = web.run_dir.glob("*/meta.json")
    meta = orjson.loads(meta_path.read_bytes())
    assert snap["time_to_live"] == meta["time_to_live"] and snap["time_to_live"]["ever_alive"] == USERS
    assert snap["cost"] == meta["cost"] and snap["cost"]["usd"] is not None
    records = _records(web.run_dir)
    assert len(records) == USERS and {r["status"] for r in records} == {"success"}
    assert sorted(r["sandbox_idx"] for r in records) == list(range(USERS))
    # Nothing left 127.0.0.1, and the real service's stand-in was never contacted.
    connects = web.connects()
    assert any(port == int(emulator_url.rsplit(":", 1)[1]) for _, port in connects), "strace saw no connect()"
    assert {addr for addr, _ in connects} <= set(LOOPBACK), sorted(set(connects))
    assert web.trap.connections == 0 and all(port != web.trap.port for _, port in connects)


BAD_FIELDS = [
    ("createTimeout", "abc", "argument --create-timeout: invalid float value: 'abc'"),
    ("commandTimeout", "-1", "--command-timeout must be > 0"),
    ("destroyTimeout", "0", "--destroy-timeout must be > 0"),
    ("lateCreateWindow", "soon", "argument --late-create-window: invalid float value: 'soon'"),
    ("hold", "-3", "--hold must be >= 0"),
    ("barrierTimeout", "0", "--barrier-timeout must be > 0"),
    ("probeSpread", "-1", "--probe-spread must be >= 0"),
    ("sandboxLifetime", "1.5", "argument --sandbox-lifetime: invalid int value: '1.5'"),
    ("minSuccessRate", "2", "--min-success-rate must be between 0 and 1"),
    ("minSuccessRate", "most", "argument --min-success-rate: invalid float value: 'most'"),
    ("shardIndex", "first", "argument --shard-index: invalid int value: 'first'"),
    ("shardCount", "0", "--shard-count must be at least 1"),
    ("label", "x" * 201, "--label must be at most 200 characters"),
    ("userCount", "0", "the number of users (-u) must be at least 1"),
]


def test_the_form_refuses_bad_values_in_the_ui_and_creates_nothing(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with WebLocust(tmp_path, trace=False) as web, sync_playwright() as pw:
        browser = open_browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(web.base + "/")
        fill_form(page, 5, {})
        page.get_by_text("Custom parameters").click()
        for field, value, message in BAD_FIELDS:
            good = page.locator(f'input[name="{field}"]').input_value()
            page.fill(f'input[name="{field}"]', value)
            page.get_by_role("button", name="Start").click()
            expect(page.get_by_text("loadgen refused to start")).to_contain_text(message)
            page.fill(f'input[name="{field}"]', good)  # one bad field at a time
        url = web.snapshot()["target"]["url"]
        browser.close()
        truth = get_json(url + "/_emulator/stats")
        snap = web.snapshot()
    assert truth["requests"] == 0 and truth["created"] == 0
    assert snap["run_id"] is None
    assert not web.run_dir.exists() or not any(web.run_dir.iterdir())


def test_an_emptied_emulator_url_is_refused_in_the_ui(tmp_path, emulator):
    """A real-provider locustfile pointed at an emulator: emptying the form's Emulator Url would
    have sent the burst to the real service; the form refuses, and nothing is created anywhere."""
    from playwright.sync_api import expect, sync_playwright

    with WebLocust(tmp_path, "e2b.py", ["--emulator-url", emulator.url]) as web, sync_playwright() as pw:
        browser = open_browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(web.base + "/")
        expect(page.locator("#loadgen-target")).to_contain_text(f"loadgen emulator at {emulator.url}")
        fill_form(page, 5, {"emulatorUrl": ""})
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_text("loadgen refused to start")).to_contain_text("the form cannot change --emulator-url")
        browser.close()
        snap = web.snapshot()
    assert emulator.stats()["requests"] == 0 and snap["run_id"] is None
    assert web.trap.connections == 0
    assert {addr for addr, _ in web.connects()} <= set(LOOPBACK)


def test_a_real_provider_target_says_so_before_start(tmp_path):
    """Without --emulator-url, e2b.py's target is the real (billed) service: the banner says so
    above the form, and the tab's data says so before any run."""
    from playwright.sync_api import expect, sync_playwright

    with WebLocust(tmp_path, "e2b.py", trace=False) as web, sync_playwright() as pw:
        browser = open_browser(pw)
        page = browser.new_page()
        page.goto(web.base + "/")
        banner = page.locator("#loadgen-target")
        expect(banner).to_contain_text("the REAL e2b service")
        assert banner.get_attribute("data-target") == "provider"
        browser.close()
        snap = web.snapshot()
    assert snap["run_id"] is None and snap["target"]["kind"] == "provider"
    assert "billed" in snap["target"]["line"]
