"""What `loadgen watch` says about one run, and the verdict its exit code follows (pure).

A run's view is what its copy holds: the identity (run.json), the
heartbeat the master rewrites every second (heartbeat.json, or the runs
row's ``heartbeat``) and, once it ended, meta.json.

States
    ``done``, ``failed``, ``interrupted``: the run ended (meta.json says so;
    ``complete`` is meta.json's, see ``_complete`` for the sinks' copies). ``running``: the heartbeat is fresh.
    ``stuck``: no meta.json and the heartbeat (or, before the first one, the
    run's start) is older than ``--stuck-after`` (60 s; the master rewrites
    it every second, so its master is gone or hung). ``missing``: no such run
    where it was looked for.

Stale workers
    A worker reports to the master every second; one whose last report is
    more than ``STALE_WORKER_S`` (10 s) older than the heartbeat is stale (lost,
    stopped or cut off). Heartbeat ages compare the watcher's clock with the
    master's, so the two machines' clocks are assumed to agree (NTP).

Exit code
    0 when every run is done and complete; 1 when any run failed, was
    interrupted, is incomplete, stuck or missing; otherwise 2 (still running).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from loadgen.report.human import count, duration_ms, duration_s, number
from loadgen.result import parse_iso

STALE_WORKER_S = 10.0
STUCK_AFTER_S = 60.0

ENDED = ("done", "failed", "interrupted")
STATUS_ORDER = ("success", "partial", "readiness_failed", "failed")


@dataclass
class RunView:
    """One run as a source holds it."""

    run_id: str
    source: str
    identity: Optional[dict] = None
    heartbeat: Optional[dict] = None
    meta: Optional[dict] = None
    heartbeat_age_s: Optional[float] = None  # None: compute from heartbeat.ts and the local clock
    error: Optional[str] = None  # the run could not be found or read


def _age(ts: Optional[str], now: float) -> Optional[float]:
    try:
        return None if not ts else max(0.0, now - parse_iso(ts))
    except ValueError:
        return None


def _complete(meta: dict) -> bool:
    """meta.json's ``complete``; the sinks' copies of meta.json are written just before the master adds
    it, so there a finished run is complete when it is done with no result missing (the copy itself
    exists, so that sink's copy was finished)."""
    if "complete" in meta:
        return bool(meta["complete"])
    return meta.get("status") == "done" and not meta.get("missing_count")


def judge(view: RunView, stuck_after_s: float = STUCK_AFTER_S, now: Optional[float] = None) -> dict:
    """The figures and state of one run (see module doc)."""
    now = time.time() if now is None else now
    hb = view.heartbeat or {}
    meta = view.meta or {}
    ident = view.identity or {}
    out = {
        "run_id": view.run_id,
        "source": view.source,
        "provider": meta.get("provider") or ident.get("provider"),
        "state": None,
        "complete": _complete(meta) if view.meta else None,
        "error": view.error,
        "heartbeat_ts": hb.get("ts"),  # which heartbeat these figures are from
    }
    if view.error and not (view.heartbeat or view.meta or view.identity):
        out["state"] = "missing"
        return out
    age = view.heartbeat_age_s if view.heartbeat_age_s is not None else _age(hb.get("ts"), now)
    out["heartbeat_age_s"] = None if age is None else round(age, 1)
    if view.meta:
        out["state"] = meta.get("status") or "done"
    elif view.heartbeat:
        out["state"] = "stuck" if age is not None and age > stuck_after_s else "running"
    else:
        started = _age(ident.get("started_at"), now)
        out["state"] = "stuck" if started is not None and started > stuck_after_s else "running"
    lat = hb.get("latency_so_far") or {}
    out.update({
        "expected": meta.get("sandboxes_dispatched", hb.get("expected")),
        "done": meta.get("records_received", hb.get("done")),
        "by_status": meta.get("status_histogram") or hb.get("by_status") or {},
        "in_flight": 0 if view.meta else hb.get("in_flight"),
        "held": 0 if view.meta else hb.get("held"),
        "waiting": 0 if view.meta else hb.get("waiting"),
        "create_p50_ms": (meta.get("latency_distribution") or {}).get("p50", lat.get("create_p50_ms")),
        "create_p99_ms": (meta.get("latency_distribution") or {}).get("p99", lat.get("create_p99_ms")),
        "tti_p50_ms": (meta.get("tti_distribution") or {}).get("p50", lat.get("tti_p50_ms")),
        "tti_p99_ms": (meta.get("tti_distribution") or {}).get("p99", lat.get("tti_p99_ms")),
        "rate_per_s": hb.get("rate_per_s"),
        "eta_s": None if view.meta else hb.get("eta_s"),
        "barrier": meta.get("barrier") or hb.get("barrier") or {},
        "mode": (meta.get("schedule") or hb.get("schedule") or {}).get("mode"),
        "leak_count": meta.get("leak_count") if view.meta else None,
    })
    workers = hb.get("workers") or {}
    hb_at = _age(hb.get("ts"), now)
    stale = []
    for worker_id, w in sorted(workers.items()):
        behind = _age(w.get("last_report_at"), now)
        if behind is not None and hb_at is not None and behind - hb_at > STALE_WORKER_S:
            stale.append(worker_id)
    out["workers"] = len(workers)
    out["stale_workers"] = stale if out["state"] in ("running", "stuck") else []
    out["exit"] = verdict(out)
    return out


def verdict(status: dict) -> int:
    """0 done and complete, 1 anything wrong, 2 still running."""
    state = status.get("state")
    if state == "running":
        return 2
    if state == "done" and status.get("complete"):
        return 0
    return 1


def exit_code(statuses: list[dict]) -> int:
    codes = {s["exit"] for s in statuses}
    if 1 in codes or not statuses:
        return 1
    return 2 if 2 in codes else 0


def format_lines(s: dict) -> list[str]:
    """Two lines per run: where it stands, then its figures."""
    state = s["state"].upper() if s["state"] in ("stuck", "missing") else s["state"]
    head = f"{s['run_id']} ({s.get('provider') or '?'}) {state}"
    if s["state"] == "missing":
        return [f"{head}: {s.get('error') or 'not found'} [{s['source']}]"]
    expected, done = s.get("expected"), s.get("done")
    pct = f" ({100.0 * done / expected:.0f}%)" if expected and done is not None else ""
    by_status = s.get("by_status") or {}
    counts = ", ".join(f"{k} {count(by_status.get(k, 0))}" for k in STATUS_ORDER)
    extra = "".join(f", {k} {count(v)}" for k, v in sorted(by_status.items()) if k not in STATUS_ORDER)
    if s["state"] in ENDED:
        head += f", complete {s.get('complete')}"
        if s.get("leak_count"):
            head += f", LEAKS {count(s['leak_count'])}"
    head += f": done {count(done)}/{count(expected)}{pct}; {counts}{extra}"
    barrier = s.get("barrier") or {}
    if barrier.get("released"):
        barrier_text = f"released by {barrier.get('reason')}"
    elif barrier:
        barrier_text = f"holding ({count(barrier.get('arrived', 0))}/{count(expected)} arrived)"
    else:
        barrier_text = "-"
    rate = s.get("rate_per_s")
    eta = s.get("eta_s")
    age = s.get("heartbeat_age_s")
    age_text = "-" if age is None else f"{duration_s(age)} ago"
    figures = (
        f"  in flight {count(s.get('in_flight'))}, held {count(s.get('held'))}"
        + (f", waiting {count(s['waiting'])}" if s.get("waiting") else "")
        + f"; create p50 {duration_ms(s.get('create_p50_ms'))} p99 {duration_ms(s.get('create_p99_ms'))}; "
        f"TTI p50 {duration_ms(s.get('tti_p50_ms'))} p99 {duration_ms(s.get('tti_p99_ms'))}; "
        f"rate {'-' if rate is None else f'{number(rate)}/s'}, ETA {duration_s(eta)}; "
        f"barrier {barrier_text}; heartbeat {age_text}; workers {count(s.get('workers', 0))}"
        + (f", STALE: {', '.join(s['stale_workers'])}" if s.get("stale_workers") else "")
    )
    return [head, figures]
