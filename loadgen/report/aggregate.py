"""`loadgen aggregate`: the figures of a sharded run, over all its shards' records.

Usage:
  loadgen aggregate RUN_DIR... [--out DIR] [--group-id ID] [--database-url URL]
  loadgen aggregate (-h | --help)

Options:
  --out DIR            Where group-<ID>-meta.json goes (default: beside the first run directory).
  --group-id ID        The group (default: the shards' own group_id tag).
  --database-url URL   Also upsert the run_groups row (default $DATABASE_URL; prefer the variable).

A burst too big for one master is run as shards: separate runs, each tagged
with the group's --group-id, its --shard-index and the --shard-count. Percentiles
do not add up, so the group's figures are computed again from every record of
every shard, with the same statistics as a single run. A run tagged with
another group, or the same shard given twice, is refused; a run without shard
tags is counted only when --group-id names the group, with a warning for each.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from docopt import docopt

from loadgen import rundir
from loadgen.report import stats


def aggregate(run_paths: list[Path], group_id: str | None = None) -> dict:
    records, metrics, identities = [], [], []
    for shard, path in enumerate(run_paths):
        if not (path / rundir.RAW).exists():
            raise ValueError(f"{path}: no {rundir.RAW}; is this a run directory?")
        identity = rundir.read_json(path / rundir.RUN) if (path / rundir.RUN).exists() else {}
        identities.append(identity)
        for record in rundir.read_records(path):
            # each shard numbers its sandboxes from 0: keep them apart, in shard order
            record = dict(record, shard_sandbox_idx=record["sandbox_idx"],
                          sandbox_idx=shard * 10_000_000 + record["sandbox_idx"])
            records.append(record)
        if (path / rundir.METRICS).exists():
            metrics.extend(rundir.iter_jsonl(path / rundir.METRICS))
    groups = {i.get("group_id") for i in identities if i.get("group_id")}
    group_id = group_id or (groups.pop() if len(groups) == 1 else None)
    if not group_id:
        raise ValueError("the shards carry no single group_id; name the group with --group-id")
    check_shards(run_paths, identities, group_id)
    providers = sorted({i.get("provider") for i in identities if i.get("provider")})
    statuses = []
    for path in run_paths:
        meta_path = path / rundir.META
        statuses.append(rundir.read_json(meta_path).get("status") if meta_path.exists() else "failed")
    meta = stats.compute(records, metrics)
    meta.update(
        group_id=group_id,
        provider=providers[0] if len(providers) == 1 else ",".join(providers),
        shards=[{"run_id": i.get("run_id"), "shard_index": i.get("shard_index"), "status": s, "path": str(p)}
                for i, s, p in zip(identities, statuses, run_paths)],
        shard_count=len(run_paths),
        status="done" if all(s == "done" for s in statuses) else "failed",
        commit_sha=next((i.get("commit_sha") for i in identities if i.get("commit_sha")), None),
        started_at=min((i.get("started_at") for i in identities if i.get("started_at")), default=None),
    )
    return meta


def check_shards(run_paths: list[Path], identities: list[dict], group_id: str) -> None:
    """Refuse runs that are not this group's shards; warn about untagged runs and a shard count that disagrees."""
    seen: dict = {}
    for path, identity in zip(run_paths, identities):
        tag = identity.get("group_id")
        if tag and tag != group_id:
            raise ValueError(f"{path} is a shard of group {tag!r}, not {group_id!r}: pass only this group's shards")
        if not tag:
            print(f"loadgen aggregate: warning: {path} carries no shard tags (--group-id, --shard-index); "
                  f"counted in group {group_id!r} because --group-id names it", file=sys.stderr)
            continue
        index = identity.get("shard_index")
        if index is not None and index in seen:
            raise ValueError(f"{path} and {seen[index]} are both shard {index} of group {group_id!r}: "
                             "the same shard twice would count its sandboxes twice")
        seen[index] = path
    counts = {i.get("shard_count") for i in identities if i.get("shard_count")}
    if len(counts) == 1 and counts != {len(run_paths)}:
        print(f"loadgen aggregate: warning: group {group_id!r} has {counts.pop()} shards by its tags, "
              f"{len(run_paths)} given", file=sys.stderr)


def main(argv) -> int:
    args = docopt(__doc__, argv=argv)
    paths = [Path(p) for p in args["RUN_DIR"]]
    try:
        meta = aggregate(paths, args["--group-id"])
    except (ValueError, OSError) as exc:
        print(f"loadgen aggregate: {exc}", file=sys.stderr)
        return 1
    out = Path(args["--out"]) if args["--out"] else paths[0].parent
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"group-{meta['group_id']}-meta.json"
    rundir.atomic_write_json(target, meta)
    print(f"loadgen aggregate: group {meta['group_id']}: {meta['sandboxes_attempted']} sandboxes over "
          f"{meta['shard_count']} shards, status {meta['status']}; wrote {target}")
    url = args["--database-url"] or os.environ.get("DATABASE_URL")
    if url:
        from loadgen.sinks.pg_figures import figures_from_meta
        from loadgen.sinks.pg_groups import GROUP_COLUMNS, write_group

        figures = {k: v for k, v in figures_from_meta(meta).items() if k in GROUP_COLUMNS}
        figures.update(provider=meta["provider"], status=meta["status"], shard_count=meta["shard_count"],
                       commit_sha=meta["commit_sha"], started_at=meta["started_at"])
        try:
            write_group(url, meta["group_id"], figures, meta)
        except Exception as exc:  # noqa: BLE001 - already redacted by the sink
            print(f"loadgen aggregate: could not write run_groups: {exc}", file=sys.stderr)
            return 1
        print(f"loadgen aggregate: run_groups row {meta['group_id']} written")
    return 0
