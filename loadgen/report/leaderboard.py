"""`loadgen leaderboard`: the daily benchmark's tables, merged from each provider's results.

Usage:
  loadgen leaderboard RESULTS... [--out DIR] [--expect PROVIDERS] [--date DATE]
  loadgen leaderboard (-h | --help)

Options:
  --out DIR             Where the results go [default: results].
  --expect PROVIDERS    Comma-separated providers every mode should have: one
                        without a result ranks last as failed ("no result").
  --date DATE           The date of the results, YYYY-MM-DD (default: the UTC
                        day the earliest run of the mode started).
  -h --help             Show this help.

RESULTS are run directories (holding raw.jsonl), result files (JSON: a
provider's entry, e.g. one that was skipped, or an earlier leaderboard's
<date>.json or latest.json), or folders holding any of those at any depth (a
CI job's downloaded artifacts). One result per provider and mode: when two
runs of the same provider and mode are given, the one that started last is
kept. Every score is recomputed from the per-iteration samples
(loadgen.report.scoring defines them); nothing is taken from a file's own
score. Written, for each mode (sequential, staggered, burst, storage):

  DIR/<mode>/<date>.json   the ranked entries, with the samples they were scored on
  DIR/<mode>/latest.json   the same
  DIR/<mode>/leaderboard.svg, DIR/<mode>/leaderboard.md   the table
  DIR/leaderboard.md       every mode's table and the formulas (a job summary)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import orjson
from docopt import docopt

from loadgen import rundir
from loadgen.report import leaderboard_render as render
from loadgen.report.leaderboard_render import label
from loadgen.report.command import ReportError, load_run
from loadgen.report.scoring import storage_score, tti_score, TTI_TIMEOUT_MS
from loadgen.result import iso, parse_iso

BOARD_KIND = "loadgen.leaderboard"
RESULT_KIND = "loadgen.result"
VERSION = 1
MODES = ("sequential", "staggered", "burst", "storage")
DEFAULT_MODE = "burst"
STORAGE_PROVIDER = "storage"
_READY = ("success", "partial")
_STATUS_ORDER = {"ok": 0, "failed": 1, "skipped": 2}


# ---------------------------------------------------------------------------
# One entry per provider and mode, from a run directory or a result file


def tti_samples(records: list) -> list:
    """The TTI (ms) of every successful iteration: ready (success or partial) within TTI_TIMEOUT_MS."""
    out = []
    for r in records:
        if r.get("status") in _READY and r.get("latency_ms") is not None and r.get("first_command_ms") is not None:
            tti = r["latency_ms"] + r["first_command_ms"]
            if tti <= TTI_TIMEOUT_MS:
                out.append(round(tti, 3))
    return sorted(out)


def storage_samples(records: list) -> list:
    """Every successful storage iteration: uploaded, downloaded whole, checked and deleted."""
    out = []
    for r in records:
        meta = r.get("provider_metadata") or {}
        if r.get("status") == "success" and r.get("destroy_ok") is True and meta.get("size_bytes") is not None \
                and r.get("latency_ms") is not None and r.get("first_command_ms") is not None:
            out.append({"sandbox_idx": r["sandbox_idx"], "size_bytes": meta["size_bytes"],
                        "upload_ms": r["latency_ms"], "download_ms": r["first_command_ms"],
                        "delete_ms": r.get("destroy_ms")})
    return out


def _ms_since(t0: Optional[float], iso_text: Optional[str]) -> Optional[float]:
    t = parse_iso(iso_text)
    return None if t0 is None or t is None else round((t - t0) * 1000.0, 3)


def run_clock(meta: dict, records: list) -> dict:
    """Wall clock and time to first ready, from the run's start (the first create).

    meta.json's own figures win when the run wrote them; otherwise, from the
    records: wall clock runs until the last iteration's TTI was known (its
    readiness end, or its create end when the create failed), first ready
    until the first readiness end."""
    starts = [parse_iso(r.get("create_started_at") or r.get("started_at")) for r in records]
    starts = [t for t in starts if t is not None]
    t0 = min(starts) if starts else None
    ready = [_ms_since(t0, r.get("readiness_ended_at")) for r in records if r.get("status") in _READY]
    ends = [_ms_since(t0, r.get("readiness_ended_at") or r.get("create_ended_at")) for r in records]
    ready, ends = [x for x in ready if x is not None], [x for x in ends if x is not None]
    return {
        "wall_clock_ms": meta.get("wall_clock_ms", max(ends) if ends else None),
        "first_ready_ms": meta.get("first_ready_ms", meta.get("time_to_first_ready_ms", min(ready) if ready else None)),
    }


def entry_from_run(path: Path) -> dict:
    run = load_run(path)
    meta, records = run["meta"], run["records"]
    options = meta.get("options") or {}
    storage = run["provider"] == STORAGE_PROVIDER
    provider = run["provider"]
    if storage:  # the storage benchmark's "provider" is the object store it measured (tigris, r2, aws, ...)
        provider = next(((r.get("provider_metadata") or {}).get("target") for r in records
                         if (r.get("provider_metadata") or {}).get("target")), provider)
    entry = {
        "kind": RESULT_KIND,
        "provider": provider,
        "mode": "storage" if storage else (options.get("mode") or DEFAULT_MODE),
        "target": meta.get("target") or "provider",
        "status": "ok",
        "reason": None,
        "run_id": run["run_id"],
        "source": str(path),
        "started_at": meta.get("started_at") or (records[0].get("started_at") if records else None),
        "commit_sha": meta.get("commit_sha"),
        "run_status": meta.get("status"),
        "generator_saturated": run["stats"].get("generator_saturated"),
        "stagger_ms": options.get("stagger_ms"),
        "iterations": len(records),
        **run_clock(meta, records),
    }
    if storage:
        entry["storage_iterations"] = storage_samples(records)
    else:
        entry["tti_ms"] = tti_samples(records)
    return entry


def entries_from_json(path: Path) -> list:
    """The entries a JSON file holds: a provider's result, or a whole earlier leaderboard."""
    try:
        data = rundir.read_json(path)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and data.get("kind") == BOARD_KIND:
        items = data.get("entries") or []
    elif isinstance(data, dict) and data.get("kind") == RESULT_KIND:
        items = [data]
    else:
        return []
    out = []
    for item in items:
        if not isinstance(item, dict) or not item.get("provider") or item.get("mode") not in MODES:
            raise ReportError(f"{path}: a result needs a provider and a mode ({', '.join(MODES)})")
        out.append(dict(item, source=item.get("source") or str(path)))
    return out


def collect(paths: Iterable) -> list:
    """Every entry found under the given paths (see the module doc)."""
    entries = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ReportError(f"no such file or directory: {path}")
        if path.is_file():
            found = entries_from_json(path)
            if not found:
                raise ReportError(f"{path} is not a loadgen result file (kind {RESULT_KIND} or {BOARD_KIND})")
            entries += found
        elif (path / rundir.RAW).is_file():
            entries.append(entry_from_run(path))
        else:
            for raw in sorted(path.rglob(rundir.RAW)):
                entries.append(entry_from_run(raw.parent))
            for js in sorted(path.rglob("*.json")):
                if not any((parent / rundir.RAW).is_file() for parent in js.parents):
                    entries += entries_from_json(js)
    return entries


# ---------------------------------------------------------------------------
# Scoring and ranking


def score_entry(entry: dict) -> dict:
    """The entry with its score recomputed from its samples; no success at all is a failed provider."""
    e = {k: v for k, v in entry.items() if k not in ("rank",)}
    e.setdefault("status", "ok")
    e.setdefault("iterations", 0)
    if e["status"] == "skipped":
        e.update(score=0.0, ok=0, success_rate=None)
        return e
    if e["mode"] == "storage":
        e.update(storage_score(e.get("storage_iterations") or [], e["iterations"]))
    else:
        e.update(tti_score(e.get("tti_ms") or [], e["iterations"]))
    if e["ok"] == 0:
        e["status"] = "failed"
        e["score"] = 0.0
        if not e.get("reason"):
            e["reason"] = f"no successful iteration of {e['iterations']}" if e["iterations"] else "no result"
    return e


def _newer(a: dict, b: dict) -> bool:
    return (a.get("started_at") or "") > (b.get("started_at") or "")


def merge(entries: list, expect: Iterable[str] = (), warn=lambda m: None) -> dict:
    """{mode: ranked entries}: one per provider and mode (the latest run), scores recomputed,
    expected providers without a result added as failed; ranked by score, failed then skipped last."""
    chosen: dict = {}
    for e in entries:
        key = (e["mode"], label(e))
        old = chosen.get(key)
        if old is not None and old.get("run_id") != e.get("run_id"):
            keep, drop = (e, old) if _newer(e, old) else (old, e)
            warn(f"two results for {key[1]} in {key[0]} mode: keeping {keep.get('source')}, "
                 f"not {drop.get('source')}")
            e = keep
        elif old is not None:
            continue
        chosen[key] = e
    boards: dict = {}
    for (mode, _), e in chosen.items():
        boards.setdefault(mode, []).append(score_entry(e))
    expected = [p.strip() for p in expect if p.strip()]
    for mode in [m for m in MODES if m in boards and m != "storage"]:
        present = {e["provider"] for e in boards[mode]}
        for provider in expected:
            if provider not in present:
                boards[mode].append(score_entry({"kind": RESULT_KIND, "provider": provider, "mode": mode,
                                                 "status": "failed", "reason": "no result", "iterations": 0}))
    for mode, board in boards.items():
        board.sort(key=lambda e: (_STATUS_ORDER.get(e["status"], 1), -e["score"],
                                  e.get("median_ms") or e.get("download_median_ms") or float("inf"), label(e)))
        for i, e in enumerate(board, 1):
            e["rank"] = i
    return {m: boards[m] for m in MODES if m in boards}


# ---------------------------------------------------------------------------
# Writing


def board_date(board: list, explicit: Optional[str]) -> str:
    if explicit:
        return explicit
    starts = sorted(e["started_at"] for e in board if e.get("started_at"))
    return starts[0][:10] if starts else time.strftime("%Y-%m-%d", time.gmtime())


def write(boards: dict, out_dir: Path, date: Optional[str] = None, now: Optional[float] = None) -> list:
    """Write every mode's files (see the module doc); returns the paths written."""
    updated_at = iso(time.time() if now is None else now)
    written = []
    pages = []
    for mode, board in boards.items():
        folder = out_dir / mode
        folder.mkdir(parents=True, exist_ok=True)
        day = board_date(board, date)
        doc = {"kind": BOARD_KIND, "version": VERSION, "mode": mode, "date": day, "updated_at": updated_at,
               "formula": render.formula(mode), "entries": board}
        for name in (f"{day}.json", "latest.json"):
            rundir.atomic_write_json(folder / name, doc)
            written.append(folder / name)
        md = render.markdown(doc)
        for name, text in (("leaderboard.svg", render.svg(doc)), ("leaderboard.md", md)):
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
        pages.append(md)
    page = out_dir / "leaderboard.md"
    page.write_text("\n".join(pages), encoding="utf-8")
    written.append(page)
    return written


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "leaderboard":  # run as `python -m loadgen.report.leaderboard ...`
        argv = ["leaderboard"] + argv
    args = docopt(__doc__, argv=argv)
    date = args["--date"]
    if date and not (len(date) == 10 and date[4] == date[7] == "-" and date.replace("-", "").isdigit()):
        print(f"loadgen leaderboard: --date {date!r}: want YYYY-MM-DD", file=sys.stderr)
        return 2
    warnings = []
    try:
        entries = collect(args["RESULTS"])
        if not entries:
            raise ReportError("no results found (no raw.jsonl and no result file under the paths given)")
        boards = merge(entries, (args["--expect"] or "").split(","), warnings.append)
        written = write(boards, Path(args["--out"]), date)
    except ReportError as exc:
        print(f"loadgen leaderboard: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"loadgen leaderboard: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    for w in warnings:
        print(f"loadgen leaderboard: warning: {w}", file=sys.stderr)
    for mode, board in boards.items():
        ranked = ", ".join(f"{e['rank']}. {label(e)} {e['score']:.1f}" for e in board)
        print(f"loadgen leaderboard: {mode}: {ranked}")
    print(f"loadgen leaderboard: wrote {len(written)} files to {args['--out']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
