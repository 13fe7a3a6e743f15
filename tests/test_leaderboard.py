"""The daily score and `loadgen leaderboard`: hand-computed scores, the merged ranking, the SVG table."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from loadgen.report import leaderboard, leaderboard_render as render, scoring
from loadgen.result import iso
from tests.test_report_screenshot import CHROMIUM, decode_png

T0 = 1_778_000_000.0  # 2026-05-05T16:53:20Z
SVG_NS = "{http://www.w3.org/2000/svg}"


def _record(run_id, provider, idx, status, tti_ms=None, start=T0):
    """A record whose create takes 80% of the TTI and the first node -v the rest."""
    r = {"run_id": run_id, "sandbox_idx": idx, "provider": provider, "status": status,
         "started_at": iso(start), "create_started_at": iso(start), "latency_ms": None, "first_command_ms": None,
         "create_ended_at": None, "readiness_ended_at": None, "destroy_ok": True, "provider_metadata": {}}
    if status == "failed":
        r["create_ended_at"] = iso(start + 0.05)
        return r
    create_ms = round(tti_ms * 0.8, 3)
    r.update(latency_ms=create_ms, first_command_ms=round(tti_ms - create_ms, 3),
             create_ended_at=iso(start + create_ms / 1000), readiness_ended_at=iso(start + tti_ms / 1000))
    return r


def write_run(path: Path, provider: str, ttis: list, failures: int = 0, start=T0, mode="burst",
              target="provider") -> Path:
    """A run directory as the master writes one: raw.jsonl and meta.json."""
    run_id = f"{int(start)}-{provider}"
    records = [_record(run_id, provider, i, "success", t, start + i * 0.001) for i, t in enumerate(ttis)]
    records += [_record(run_id, provider, len(ttis) + i, "failed", start=start) for i in range(failures)]
    path.mkdir(parents=True)
    (path / "raw.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (path / "meta.json").write_bytes(orjson.dumps({"run_id": run_id, "provider": provider, "started_at": iso(start),
                                                   "status": "done", "target": target, "options": {"mode": mode}}))
    return path


def test_the_score_of_hand_built_results_equals_the_hand_computed_answer(tmp_path):
    # 20 successful iterations: 50 ms, 200..1,900 ms by 100, and 9,000 ms; 5% of 20 = 1 trimmed from each
    # end, leaving 200..1,900 (18 values). Nearest rank: median = 9th = 1,000; p95 = 18th (ceil 17.1) =
    # 1,900; p99 = 18th (ceil 17.82) = 1,900. S(1,000) = 90, S(1,900) = 81:
    # timing = 0.60 x 90 + 0.25 x 81 + 0.15 x 81 = 86.4. Iterations: the 20, 3 failed creates, one
    # readiness failure and one ready only after 130 s (past the 120 s timeout): 25, so 0.8 x 86.4 = 69.12.
    ttis = [50.0] + [200.0 + 100 * i for i in range(18)] + [9000.0]
    run = write_run(tmp_path / "run", "e2b", ttis + [130_000.0], failures=3)
    with (run / "raw.jsonl").open("ab") as fh:
        fh.write(orjson.dumps({**_record("x", "e2b", 24, "failed"), "status": "readiness_failed",
                               "latency_ms": 300.0}) + b"\n")
    [entry] = leaderboard.collect([run])
    scored = leaderboard.score_entry(entry)
    assert (scored["iterations"], scored["ok"], scored["trimmed_count"]) == (25, 20, 18)
    assert (scored["median_ms"], scored["p95_ms"], scored["p99_ms"]) == (1000.0, 1900.0, 1900.0)
    assert scored["median_score"] == pytest.approx(90.0) and scored["p99_score"] == pytest.approx(81.0)
    assert scored["timing_score"] == pytest.approx(86.4)
    assert scored["score"] == pytest.approx(69.12)
    assert scoring.metric_score(12_000, scoring.TTI_CEILING_MS) == 0.0
    assert scoring.trimmed(list(range(19))) == list(range(19))  # 5% of 19 rounds down to 0
    assert scoring.tti_score([], 10)["score"] == 0.0


def _three_providers(root: Path) -> Path:
    """CI artifacts of a burst: three providers' run directories, a skipped provider, and a stale run."""
    art = root / "artifacts"
    # A: 500 ms every time, 10/10 -> S = 95, score 95.0
    write_run(art / "daily-acme" / "runs" / "r1", "acme", [500.0] * 10, start=T0 + 60)
    # B: the fastest median (200 ms) but half its iterations fail -> 98 x 0.5 = 49.0
    write_run(art / "daily-bolt" / "runs" / "r1", "bolt", [200.0] * 5, failures=5, start=T0 + 120)
    # C: 1.5 s every time, 10/10 -> S = 85, score 85.0
    write_run(art / "daily-cove" / "runs" / "r1", "cove", [1500.0] * 10, start=T0 + 180)
    # an older run of A with other figures: the newer one is kept
    write_run(art / "daily-acme-old" / "runs" / "r0", "acme", [9000.0] * 10, start=T0 - 86_400)
    (art / "daily-dune").mkdir()
    (art / "daily-dune" / "result.json").write_text(json.dumps(
        {"kind": "loadgen.result", "provider": "dune", "mode": "burst", "status": "skipped",
         "reason": "DUNE_API_KEY is not set"}))
    return art


def test_the_merged_leaderboard_of_three_providers_ranks_them_as_the_formula_says(tmp_path):
    art = _three_providers(tmp_path)
    out = tmp_path / "results"
    assert leaderboard.main([str(art), "--out", str(out), "--expect", "acme,bolt,cove,dune,echo"]) == 0
    latest = json.loads((out / "burst" / "latest.json").read_text())
    dated = json.loads((out / "burst" / "2026-05-05.json").read_text())
    assert latest == dated and latest["mode"] == "burst" and latest["date"] == "2026-05-05"
    ranked = [(e["rank"], e["provider"], e["status"], round(e["score"], 6)) for e in latest["entries"]]
    assert ranked == [(1, "acme", "ok", 95.0), (2, "cove", "ok", 85.0), (3, "bolt", "ok", 49.0),
                      (4, "echo", "failed", 0.0), (5, "dune", "skipped", 0.0)]
    assert latest["entries"][0]["run_id"].endswith("acme") and latest["entries"][0]["median_ms"] == 500.0
    assert "5% trimmed" in latest["formula"]
    page = (out / "leaderboard.md").read_text()
    assert "| 1 | acme | 95.0 | 500 ms | 500 ms | 500 ms | 10/10 |" in page
    assert "| 3 | bolt | 49.0 | 200 ms | 200 ms | 200 ms | 5/10 |" in page
    assert "0.60 x S(median)" in page and "dune: DUNE_API_KEY is not set." in page

    # the written files are results too: merging them again recomputes the same table
    again = tmp_path / "again"
    assert leaderboard.main([str(out / "burst" / "latest.json"), "--out", str(again)]) == 0
    assert [(e["provider"], e["score"]) for e in json.loads((again / "burst" / "latest.json").read_text())["entries"]] \
        == [(e["provider"], e["score"]) for e in latest["entries"]]


def test_bad_input_is_refused_with_a_clear_message(tmp_path, capsys):
    assert leaderboard.main([str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert leaderboard.main([str(tmp_path / "empty")]) == 1
    assert "no results found" in capsys.readouterr().err
    assert leaderboard.main([str(tmp_path), "--date", "May 5"]) == 2


def test_the_svg_table_parses_and_shows_in_a_browser(tmp_path):
    art = _three_providers(tmp_path)
    out = tmp_path / "results"
    assert leaderboard.main([str(art), "--out", str(out)]) == 0
    svg_path = out / "burst" / "leaderboard.svg"
    root = ET.fromstring(svg_path.read_text())
    assert root.tag == f"{SVG_NS}svg" and root.get("width") == "1200"
    texts = {t.text: t for t in root.iter(f"{SVG_NS}text")}
    for head in ("#", "Provider", "Score", "Median", "P95", "P99", "Status"):
        assert head in texts
    assert texts["acme"] is not None and texts["10/10"] is not None
    # median colours: green up to 1 s, amber up to 2 s, red beyond; ranks 1-3 on gold, silver, bronze
    fills = {(t.text, t.get("fill")) for t in root.iter(f"{SVG_NS}text")}
    assert {("500 ms", "#1a7f37"), ("200 ms", "#1a7f37"), ("1,500 ms", "#b26b00")} <= fills
    assert [render.median_colour(ms) for ms in (1000, 1000.001, 2000, 2000.001)] == \
        ["#1a7f37", "#b26b00", "#b26b00", "#c8342f"]
    circles = [c.get("fill") for c in root.iter(f"{SVG_NS}circle")]
    assert circles == ["#e8b923", "#b8bcc4", "#c8834a"]
    footer = " ".join(t.text for t in root.iter(f"{SVG_NS}text") if t.text)
    assert "N = 10 per provider" in footer and "Wall clock / first ready" in footer and "Updated" in footer

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    height = int(root.get("height"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size=1200,{height}",
           svg_path.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file(), proc.stderr.decode(errors="replace")[-2000:]
    w, h, bpp, rows = decode_png(shot.read_bytes())
    assert (w, h) == (1200, height)
    colours = {row[x:x + 3] for row in rows[::3] for x in range(0, len(row), bpp * 3)}
    assert len(colours) >= 20, f"screenshot looks blank: {len(colours)} distinct colours"
    gold = bytes(int("e8b923"[i:i + 2], 16) for i in (0, 2, 4))
    assert any(gold in row for row in rows), "the gold rank badge is not on the screen"


def test_the_cli_knows_the_command():
    assert shutil.which("loadgen")
    out = subprocess.run(["loadgen", "leaderboard", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "RESULTS" in out.stdout
