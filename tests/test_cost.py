"""Cost before and after a run (--max-cost refuses before any create; the actual cost is the records'), and
time to N live beside it, in meta.json, the summary, Postgres and the report."""

from __future__ import annotations

import json

import pytest

from loadgen.emulator import start_emulator
from loadgen.providers.prices import PRICES
from loadgen.report import command as report, human
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One run of 10 sandboxes held 1 s, with the Postgres sink and `loadgen report` written after it:
    (the run, its runs row, report.html, summary.md)."""
    tmp = tmp_path_factory.mktemp("cost-run")
    with start_emulator("fast") as emu, fresh_database() as url:
        run = run_locust("local.py", 10, tmp, ["--emulator-url", emu.url, "--max-cost", "10",
                                               "--hold", "1", "--database-url", url])
        assert run.returncode == 0, run.output[-3000:]
        (row,) = query(url, f"SELECT {', '.join(RUN_COLUMNS)} FROM runs")
    assert report.main(["report", str(run.run_path)]) == 0
    out = run.run_path / "report"
    return run, dict(zip(RUN_COLUMNS, row)), (out / "report.html").read_text(), (out / "summary.md").read_text()


RUN_COLUMNS = ("sandbox_seconds", "cost_usd", "cost_estimate_usd", "time_to_50pct_live_ms", "time_to_90pct_live_ms",
               "time_to_99pct_live_ms", "time_to_100pct_live_ms", "time_to_peak_live_ms", "peak_live",
               "peak_live_during_hold")


def test_actual_cost_is_the_records_sandbox_seconds_times_the_price_in_meta_summary_postgres_and_report(
        finished_run):
    run, row, html, md = finished_run
    price = PRICES["e2b"].usd_per_sandbox_second
    records = run.records
    assert all(was_destroyed(r) for r in records)
    seconds = sum(parse_iso(r["destroy_ended_at"]) - parse_iso(r["create_ended_at"]) for r in records)
    cost = run.meta["cost"]
    assert cost["sandbox_seconds"] == pytest.approx(seconds, abs=1e-5)
    assert cost["usd"] == pytest.approx(seconds * price, abs=1e-6)
    assert cost["leaked"] == 0 and cost["target"] == "emulator"
    lifetime = run.meta["options"]["sandbox_lifetime"] or cost["estimate"]["lifetime_s"]
    assert cost["estimate"]["usd"] == pytest.approx(10 * lifetime * price, abs=1e-6)
    assert f"[summary] cost: {human.number(seconds)} sandbox-seconds, ${cost['usd']:,.4f}" in run.output
    assert (row["sandbox_seconds"], row["cost_usd"], row["cost_estimate_usd"]) == (
        pytest.approx(cost["sandbox_seconds"]), pytest.approx(cost["usd"]), pytest.approx(cost["estimate"]["usd"]))
    for text in (html, md):
        assert f"${cost['usd']:,.4f}" in text and f"${cost['estimate']['usd']:,.2f}" in text
        assert human.number(cost["sandbox_seconds"]) in text


def test_time_to_n_live_is_in_meta_summary_postgres_and_report(finished_run):
    run, row, html, md = finished_run
    ttl = run.meta["time_to_live"]
    assert ttl["ever_alive"] == 10 and ttl["peak_live"] == 10 and ttl["peak_live_during_hold"] == 10
    assert 0 < ttl["to_50pct_ms"] <= ttl["to_90pct_ms"] <= ttl["to_99pct_ms"] <= ttl["to_100pct_ms"]
    assert ttl["to_peak_ms"] == ttl["to_100pct_ms"]  # every sandbox alive at once is the peak
    figures = [ttl[f"to_{k}_ms"] for k in ("50pct", "90pct", "99pct", "100pct", "peak")]
    assert (f"[summary] time to live from the first create: 50% {human.duration_ms(figures[0])}, "
            f"90% {human.duration_ms(figures[1])}, 99% {human.duration_ms(figures[2])}, "
            f"100% {human.duration_ms(figures[3])} of 10 ever alive; peak 10 at {human.duration_ms(figures[4])}; "
            "peak live during the hold 10") in run.output
    assert [row[f"time_to_{k}_live_ms"] for k in ("50pct", "90pct", "99pct", "100pct", "peak")] == [
        pytest.approx(f) for f in figures]
    assert (row["peak_live"], row["peak_live_during_hold"]) == (10, 10)
    # the report recomputes them from raw.jsonl: the same figures
    assert "Time to N live" in html and "**Time to N live**" in md
    for text in (html, md):
        for label, figure in zip(("to 50% live (5)", "to 90% live (9)", "to 99% live (10)", "to 100% live (10)",
                                  "to the peak (10)"), figures):
            assert label in text and human.duration_ms(figure) in text, label
