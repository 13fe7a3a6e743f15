"""`loadgen report`: pictures, an HTML page and a Markdown summary of finished runs.

Usage:
  loadgen report RUN_DIR [--out DIR]
  loadgen report --compare RUN_DIR... [--out DIR]
  loadgen report (-h | --help)

Options:
  --out DIR    Where to write the files; RUN_DIR/report/ if not given
               (with --compare: FIRST_RUN_DIR/report/compare/).
  --compare    Rank several runs (one per provider, say) by TTI and success
               rate, with their TTI CDFs overlaid.
  -h --help    Show this help.

The statistics are always recomputed from raw.jsonl (with loadgen.report.stats), so
a report is right even for a run whose master died before writing
meta.json; meta.json and run.json, when present, only add the run's identity
and options. Files written for one run:

  report.html   self-contained page: charts, tables, generator health
  summary.md    Markdown for a GitHub job summary or a PR comment
  stats.json    the recomputed statistics (the figures of meta.json)
  *.svg         latency_hist, latency_cdf, tti_cdf, concurrency,
                status_strip, hub_lag, cpu

and for --compare: compare.html, compare.md, tti_cdf_compare.svg.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import orjson
from docopt import docopt

from loadgen import rundir
from loadgen.report import charts, stats
from loadgen.report.compare import leaderboard, render_compare_html, render_compare_md
from loadgen.report.render import render_html, render_md


class ReportError(Exception):
    """Bad input: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------
# Loading


def load_run(run_dir: Path | str) -> dict:
    """Everything a report needs from one run directory; ReportError when it is not a usable run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"no such run directory: {path}")
    raw = path / rundir.RAW
    if not raw.is_file():
        raise ReportError(f"{path} has no {rundir.RAW}: is it a run directory (<run-dir>/<run_id>/)?")
    try:
        records = rundir.read_records(path)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(f"cannot read {raw}: {exc}") from exc
    if not records:
        raise ReportError(f"{raw} holds no results: the run recorded no sandbox")
    metrics = []
    if (path / rundir.METRICS).is_file():
        try:
            metrics = list(rundir.iter_jsonl(path / rundir.METRICS))
        except orjson.JSONDecodeError as exc:
            raise ReportError(f"cannot read {path / rundir.METRICS}: {exc}") from exc
    meta = {}
    for name in (rundir.RUN, rundir.META):  # meta.json wins where both say something
        if (path / name).is_file():
            try:
                data = rundir.read_json(path / name)
            except orjson.JSONDecodeError as exc:
                raise ReportError(f"cannot read {path / name}: {exc}") from exc
            if isinstance(data, dict):
                meta.update(data)
    first = records[0]
    provider = meta.get("provider") or first.get("provider") or "?"
    run_id = meta.get("run_id") or first.get("run_id") or path.name
    name = meta.get("label") or None
    target = target_of(meta)
    return {
        "path": path,
        "provider": provider,
        "run_id": run_id,
        "name": name,
        "target": target,
        "label": f"{provider}{f' on {target}' if target else ''}{f': {name}' if name else ''} ({run_id})",
        "meta": meta,
        "records": records,
        "metrics": metrics,
        "stats": stats.compute(records, metrics, mode=(meta.get("schedule") or {}).get("mode")),
        "values": stats.phase_values(records),
    }


def target_of(meta: dict) -> Optional[str]:
    """What the run's sandboxes were created on, in words: "emulator (fast)", "emulator", "real service"
    (None when the run directory does not say)."""
    target = meta.get("target")
    if target is None:  # a run recorded before the target was: its options tell
        target = "emulator" if (meta.get("options") or {}).get("emulator_url") else None
    if target == "emulator":
        return f"emulator ({meta['emulator_profile']})" if meta.get("emulator_profile") else "emulator"
    return "real service" if target == "provider" else None


# ---------------------------------------------------------------------------
# Charts


def run_charts(run: dict) -> dict:
    """name -> SVG text for one run (the report's pictures, in page order)."""
    s = run["stats"]
    v = run["values"]
    out = {}
    out["status_strip"] = charts.status_strip_svg(
        [r.get("status") for r in run["records"]], "Status along submission order"
    )
    out["latency_hist"] = charts.histogram_svg(v["create"], "Create latency", "create latency (ms)")
    out["latency_cdf"] = charts.cdf_svg([("create", v["create"])], "Create latency CDF", "create latency (ms)")
    out["tti_cdf"] = charts.cdf_svg(
        [("TTI", v["tti"]), ("create", v["create"]), ("first command", v["first_command"])],
        "Time to interactive (create + first node -v) CDF",
        "milliseconds",
    )
    out["concurrency"] = charts.lines_svg(
        [
            ("sandboxes alive", [(p["t_s"], p["concurrent"]) for p in s["concurrency_timeline"]]),
            ("requests in flight", [(p["t_s"], p["in_flight"]) for p in s["in_flight_timeline"]]),
        ],
        "Concurrency (per-second maximum)",
        "seconds since run start",
        "count",
        step=1.0,
    )
    t0 = stats.ts(s["concurrency_summary"].get("run_started_at")) or 0.0
    by_proc: dict = {}
    for m in run["metrics"]:
        by_proc.setdefault(str(m.get("process", "?")), []).append(m)
    lag, cpu = [], []
    for name in sorted(by_proc, key=lambda p: (p != "master", p)):
        ms = by_proc[name]
        lag.append((name, [(m["t"] - t0, (m.get("hub_lag_ms") or {}).get("p99")) for m in ms if "t" in m]))
        cpu.append((name, [(m["t"] - t0, m.get("cpu_percent")) for m in ms if "t" in m]))
    out["hub_lag"] = charts.lines_svg(
        lag,
        "Gevent hub lag per process (p99 of each second)",
        "seconds since run start",
        "hub lag p99 (ms)",
        hline=(stats.HUB_LAG_P99_LIMIT_MS, f"saturation limit {stats.HUB_LAG_P99_LIMIT_MS:.0f} ms"),
    )
    out["cpu"] = charts.lines_svg(
        cpu,
        "CPU per process",
        "seconds since run start",
        "CPU (% of one core)",
        hline=(stats.CPU_BUSY_PERCENT, f"busy at {stats.CPU_BUSY_PERCENT:.0f}%"),
    )
    return out


# ---------------------------------------------------------------------------
# Writing


def _write(out_dir: Path, files: dict) -> list:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        p = out_dir / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        written.append(p)
    return written


def report_run(run_dir: Path | str, out_dir: Optional[Path | str] = None) -> list:
    """Write one run's report; returns the paths written."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir else run["path"] / "report"
    svgs = run_charts(run)
    files = {f"{name}.svg": svg for name, svg in svgs.items()}
    files["report.html"] = render_html(run, svgs)
    files["summary.md"] = render_md(run)
    files["stats.json"] = orjson.dumps(run["stats"], option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return _write(out, files)


def report_compare(run_dirs: list, out_dir: Optional[Path | str] = None) -> list:
    """Write the leaderboard of several runs; returns the paths written."""
    runs = [load_run(d) for d in run_dirs]
    labels = [r["label"] for r in runs]
    if len(set(labels)) != len(labels):  # same provider and run_id twice: tell them apart by path
        for r in runs:
            r["label"] = f"{r['label']} [{r['path']}]"
    board = leaderboard(runs)
    svg = charts.cdf_svg(
        [(row["label"], next(r for r in runs if r["label"] == row["label"])["values"]["tti"]) for row in board],
        "Time to interactive CDF, by run",
        "TTI: create + first node -v (ms)",
    )
    out = Path(out_dir) if out_dir else runs[0]["path"] / "report" / "compare"
    files = {
        "tti_cdf_compare.svg": svg,
        "compare.html": render_compare_html(board, svg),
        "compare.md": render_compare_md(board),
    }
    return _write(out, files)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "report":  # run as `python -m loadgen.report ...`
        argv = ["report"] + argv
    args = docopt(__doc__, argv=argv)
    out = args["--out"]
    try:
        if args["--compare"]:
            written = report_compare(args["RUN_DIR"], out)
        else:
            written = report_run(args["RUN_DIR"][0], out)
    except ReportError as exc:
        print(f"loadgen report: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"loadgen report: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    folder = written[0].parent if written else Path(".")
    print(f"loadgen report: wrote {len(written)} files to {folder}/")
    for p in written:
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
