"""The daily CI workflow (.github/workflows/daily.yml): its structure, and its jobs' own shell steps run here.

Without GitHub, the workflow is checked the two ways that are possible: the
YAML parsed and its structure asserted (the shuffled matrix run one provider
at a time, artifacts up and down, the merge job's summary), and every job's
``run:`` scripts executed as written (tests/workflow_runner.py) with the
environment the workflow sets and no secret at all: every provider against
loadgen's emulator, every store against a local S3 server, a few sandboxes
each, and the merge step writing the leaderboard files from the artifacts.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
import yaml

from loadgen.providers import REGISTRY, get_provider_class
from tests.workflow_runner import REPO, Runner, evaluate

WORKFLOW = REPO / ".github" / "workflows" / "daily.yml"
PROVIDERS = ["e2b", "daytona", "modal", "runloop", "codesandbox"]
STORES = ["tigris", "r2", "aws"]
SANDBOXES = 3
ITERATIONS = 4


def _doc() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_workflow_runs_daily_and_weekly_with_one_provider_at_a_time_in_a_drawn_order():
    doc = _doc()
    on = doc[True]  # YAML 1.1 reads the key `on` as true
    crons = [c["cron"] for c in on["schedule"]]
    assert len(crons) == 2 and crons[0].split()[2:] == ["*", "*", "*"] and crons[1].split()[4] == "0"
    assert set(on["workflow_dispatch"]["inputs"]) >= {"benchmark", "providers", "sandboxes", "iterations"}
    jobs = doc["jobs"]
    assert set(jobs) == {"order", "provider", "storage", "leaderboard"}
    # the weekly cron means the storage benchmark, the daily one the sandbox tables
    bench = jobs["order"]["env"]["BENCHMARK"]
    ctx = lambda schedule, inputs=None: {"inputs": inputs or {}, "github": {"event": {"schedule": schedule}}}  # noqa: E731
    assert evaluate(bench[3:-2], ctx(crons[0])) == "daily" and evaluate(bench[3:-2], ctx(crons[1])) == "storage"
    assert evaluate(bench[3:-2], ctx("", {"benchmark": "both"})) == "both"
    for name in ("provider", "storage"):
        job = jobs[name]
        assert job["needs"] == "order"
        strategy = job["strategy"]
        assert strategy["max-parallel"] == 1 and strategy["fail-fast"] is False
        [values] = strategy["matrix"].values()
        assert values.startswith("${{ fromJSON(needs.order.outputs.")
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
        assert len(uploads) == 1 and uploads[0]["if"] == "always()" and uploads[0]["with"]["name"].startswith("results-")
    # every provider's own variables come from a secret of the same name (and nothing else is needed)
    env = jobs["provider"]["env"]
    for provider in PROVIDERS:
        for var in get_provider_class(provider).required_env:
            assert env[var] == f"${{{{ secrets.{var} }}}}", var
    assert set(PROVIDERS) <= set(REGISTRY)
    assert jobs["order"]["env"]["PROVIDERS"].endswith("'" + ",".join(PROVIDERS) + "' }}")
    merge = jobs["leaderboard"]
    assert merge["needs"] == ["order", "provider", "storage"] and merge["if"].startswith("always()")
    [download] = [s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
    assert download["with"]["pattern"] == "results-*"
    [board] = [s for s in merge["steps"] if s.get("name") == "Leaderboard"]
    assert "loadgen leaderboard" in board["run"] and "$GITHUB_STEP_SUMMARY" in board["run"]


def _clean_env() -> dict:
    """This environment without a single credential: what a fork without secrets gives the workflow."""
    names = {v for name in REGISTRY for v in (*get_provider_class(name).required_env,
                                              *get_provider_class(name).optional_env)}
    env = {}
    for k, v in os.environ.items():
        if k in names or k.startswith(("AWS_", "TIGRIS_", "LOADGEN_", "E2B_", "MODAL_", "DATABASE_URL")):
            continue
        env[k] = v
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.mark.timeout(1800)
def test_the_jobs_shell_steps_run_here_and_the_merge_step_writes_the_leaderboard(tmp_path):
    runner = Runner(WORKFLOW, tmp_path, "workflow_dispatch",
                    inputs={"benchmark": "both", "providers": ",".join(PROVIDERS), "sandboxes": str(SANDBOXES),
                            "emulator_profile": "fast", "iterations": str(ITERATIONS)},
                    base_env=_clean_env())
    try:
        runs = runner.run_all()
    finally:
        for pid_file in tmp_path.glob("jobs/*/*/pid"):  # what the steps started, should a step have failed
            pid = int(pid_file.read_text().strip() or 0)
            if pid and _alive(pid):
                os.kill(pid, 15)
    report = "\n".join(f"{r.job} {r.matrix}: {name} {status} {code}\n{out[-3000:]}"
                       for r in runs for name, status, code, out in r.steps if status == "failure")
    assert all(r.result == "success" for r in runs), report

    # the order job drew a permutation, and the matrix jobs ran in that order
    order = runner.needs["order"]["outputs"]
    drawn = orjson.loads(order["providers"])
    assert sorted(drawn) == sorted(PROVIDERS) and sorted(orjson.loads(order["stores"])) == sorted(STORES)
    assert [r.matrix["provider"] for r in runs if r.job == "provider"] == drawn
    assert [r.matrix["store"] for r in runs if r.job == "storage"] == orjson.loads(order["stores"])
    # every emulator and local S3 server a job started was stopped by its own step (which waits up to 30 s)
    pids = [int(p.read_text()) for p in tmp_path.glob("jobs/*/*/pid")]
    assert len(pids) == len(PROVIDERS) + len(STORES) and not [p for p in pids if _alive(p)]

    # the merge job's files: every provider in every mode, measured against the emulator; every store
    [merge] = [r for r in runs if r.job == "leaderboard"]
    results = merge.folder / "results"
    for mode in ("sequential", "staggered", "burst", "storage"):
        for name in ("latest.json", "leaderboard.svg", "leaderboard.md"):
            assert (results / mode / name).is_file(), (mode, name)
        doc = orjson.loads((results / mode / "latest.json").read_bytes())
        entries = doc["entries"]
        if mode == "storage":
            assert sorted(e["provider"] for e in entries) == sorted(f"{s} (moto)" for s in STORES)
            assert all(e["ok"] == ITERATIONS == e["iterations"] for e in entries), entries
        else:
            assert sorted(e["provider"] for e in entries) == sorted(PROVIDERS)
            assert all(e["target"] == "emulator" and e["status"] == "ok" and e["ok"] == SANDBOXES
                       for e in entries), [(e["provider"], e["status"], e.get("reason")) for e in entries]
        assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
        assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
        ET.fromstring((results / mode / "leaderboard.svg").read_text())
    # the reuse probe ran inside every daily iteration
    probed = [orjson.loads(line) for p in tmp_path.glob("artifacts/results-daily-*/*/*/raw.jsonl")
              for line in p.read_bytes().splitlines()]
    assert len(probed) == len(PROVIDERS) * 3 * SANDBOXES and all(r["sandbox_fingerprint"] for r in probed)
    # the job summary is the leaderboard page
    assert merge.summary == (results / "leaderboard.md").read_text()
    for title in ("Sequential:", "Staggered:", "Burst:", "Storage:"):
        assert title in merge.summary
    assert "(emulated)" in merge.summary and "(moto)" in merge.summary
