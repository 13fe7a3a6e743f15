"""Cost before and after a run: --max-cost refuses before any create; the actual cost is the records'."""

from __future__ import annotations

import json

import pytest

from loadgen.providers.prices import PRICES
from loadgen.result import parse_iso, was_destroyed
from tests.locust_harness import run_locust
from tests.pg_fixtures import fresh_database, query


def test_max_cost_below_the_worst_case_refuses_with_exit_2_and_creates_nothing(tmp_path, emulator):
    # 100 sandboxes × the default lifetime (~1,570 s) at e2b's price is about $4.75
    run = run_locust("local.py", 100, tmp_path / "runs", ["--emulator-url", emulator.url, "--max-cost", "1"])
    assert run.returncode == 2, run.output[-3000:]
    assert "loadgen: cost: worst case $4." in run.output and "--max-cost $1.00" in run.output
    assert "refusing to start: the worst case" in run.output
    assert emulator.stats()["requests"] == 0
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_an_unknown_price_cannot_pass_max_cost(tmp_path, emulator):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"e2b": {"usd_per_sandbox_second": None}}))
    run = run_locust("local.py", 5, tmp_path / "runs", ["--emulator-url", emulator.url, "--max-cost", "100",
                                                       "--price-file", str(prices)])
    assert run.returncode == 2 and "no price is known for e2b" in run.output
    assert emulator.stats()["requests"] == 0


def test_actual_cost_is_the_records_sandbox_seconds_times_the_price_in_meta_summary_and_postgres(tmp_path, emulator):
    price = PRICES["e2b"].usd_per_sandbox_second
    with fresh_database() as url:
        run = run_locust("local.py", 10, tmp_path, ["--emulator-url", emulator.url, "--max-cost", "10",
                                                    "--hold", "1", "--database-url", url])
        assert run.returncode == 0, run.output[-3000:]
        records = run.records
        assert all(was_destroyed(r) for r in records)
        seconds = sum(parse_iso(r["destroy_ended_at"]) - parse_iso(r["create_ended_at"]) for r in records)
        cost = run.meta["cost"]
        assert cost["sandbox_seconds"] == pytest.approx(seconds, abs=1e-5)
        assert cost["usd"] == pytest.approx(seconds * price, abs=1e-6)
        assert cost["leaked"] == 0 and cost["target"] == "emulator"
        lifetime = run.meta["options"]["sandbox_lifetime"] or cost["estimate"]["lifetime_s"]
        assert cost["estimate"]["usd"] == pytest.approx(10 * lifetime * price, abs=1e-6)
        assert f"[summary] cost: {seconds:,.1f} sandbox-seconds, ${cost['usd']:,.4f}" in run.output
        ttl = run.meta["time_to_live"]
        (row,) = query(url, "SELECT sandbox_seconds, cost_usd, cost_estimate_usd, time_to_100pct_live_ms, "
                            "peak_live, peak_live_during_hold FROM runs")
        assert row == (pytest.approx(cost["sandbox_seconds"]), pytest.approx(cost["usd"]),
                       pytest.approx(cost["estimate"]["usd"]), pytest.approx(ttl["to_100pct_ms"]), 10, 10)
