"""The master's run: the run directory, the barrier, the sinks and the final figures.

One Coordinator exists per run on the master (or on the single process in
local mode). Everything it learns arrives as messages from the processes
that generate load; everything it writes goes to the run directory first and
is then copied by the sinks, which follow that directory.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import gevent
import orjson

from loadgen import rundir
from loadgen.engine.barrier import BarrierCoordinator
from loadgen.engine.collector import Collector
from loadgen.engine.target import emulator_lines
from loadgen.engine.schedule import Sequencer
from loadgen.providers.prices import price_for
from loadgen.report.cost import run_cost
from loadgen.result import iso
from loadgen.sinks.base import RunContext, Sink, SinkReport

log = logging.getLogger("loadgen.coordinator")

EXIT_OK = 0
EXIT_THRESHOLD = 1
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 4
EXIT_COMPROMISED = 5  # complete, but the generator itself failed some sandboxes: not every figure is the provider's

HEARTBEAT_INTERVAL_S = 1.0
SINK_INTERVAL_S = 2.0
# How long the schedule waits, after dispatch, for a worker that has not started its users yet.
SCHEDULE_START_WAIT_S = 30.0
PROGRESS_QUIET_S = 10.0  # a [progress] line at least this often while results are awaited


class LogFile:
    """coordinator.log: every loadgen and Locust log line of the master, timestamped in UTC."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        self.handler.setFormatter(formatter)
        self.handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(self.handler)

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


class Coordinator:
    def __init__(self, identity: dict, settings, run_path: Path, sinks: list[Sink],
                 expected: Callable[[], int], users_requested: int):
        self.identity = identity
        self.run_id = identity["run_id"]
        self.settings = settings
        self.run_path = run_path
        self.sinks = sinks
        self.users_requested = users_requested
        self.expected = expected
        self.dispatch_complete = False
        self.barrier = BarrierCoordinator(settings.barrier_deadline_s(users_requested), expected)
        self.schedule = settings.schedule
        self.t0: Optional[float] = None  # the schedule's origin (master clock), set when dispatch begins
        self.sequencer: Optional[Sequencer] = None  # sequential runs: whose turn it is
        self.sandbox_lost: Callable[[int], bool] = lambda idx: False
        self._dispatch_complete_at = 0.0
        self.refused: Optional[str] = None  # why the run may not start (e.g. --max-cost in the web UI)
        self.report_times: dict[str, float] = {}  # worker_id -> when its last report arrived
        self.collector: Optional[Collector] = None
        self.reports: dict[str, dict] = {}  # worker_id -> last absolute report
        self.final_from: set[str] = set()
        self.clock_offsets: dict[str, dict] = {}
        self.interrupted_reason: Optional[str] = None
        self.error_message: Optional[str] = None
        self.finalized = False
        self.meta: Optional[dict] = None
        self.exit_code: Optional[int] = None
        self._greenlets: list[gevent.Greenlet] = []
        self._metrics_fh = None
        self._logfile: Optional[LogFile] = None
        self.sink_failures: dict[str, str] = {}
        self.timeline: collections.deque = collections.deque(maxlen=7200)  # (t_s, live, in_flight), for the web UI
        self.live_reports: Callable[[], list] = lambda: list(self.reports.values())
        # key -> function giving a figure the coordinator cannot see (the emulator's own health)
        self.extra_meta: dict[str, Callable[[], object]] = {}
        self.health: dict[str, dict] = {}  # process -> its latest health sample, for the web UI
        self.peak_live = 0
        # worker -> its sandbox_idx ranges (the master's dispatch), to say whose records are missing
        self.worker_ranges: Callable[[], dict] = lambda: {}
        self.lost: dict[str, dict] = {}  # worker_id -> when it was last heard from and noticed lost
        self.barrier.excused = self._lost_unarrived

    # -- start ------------------------------------------------------------------
    def start(self) -> None:
        self.run_path.mkdir(parents=True, exist_ok=True)
        self._logfile = LogFile(self.run_path / rundir.LOG)
        rundir.atomic_write_json(self.run_path / rundir.RUN, self.identity)
        self.collector = Collector(self.run_path, self.expected, lambda: self.dispatch_complete)
        self.collector.waiting_for = self.waiting_for
        self._metrics_fh = open(self.run_path / rundir.METRICS, "ab")
        log.info("[phase] run %s starting: provider %s, %s users, run directory %s",
                 self.run_id, self.identity["provider"], _count(self.users_requested), self.run_path)
        ctx = RunContext(self.run_id, self.run_path, self.identity, log)
        for sink in list(self.sinks):
            try:
                sink.start(ctx)
            except Exception as exc:  # noqa: BLE001 - the run goes on; the sink's copy is incomplete
                self.sink_failures[sink.name] = f"start failed: {exc}"
                log.error("[sink] %s could not start: %s; its copy will be completed at the end if possible",
                          sink.name, exc)
        self.barrier.start()
        self._greenlets = [gevent.spawn(self._heartbeat_loop)] + [gevent.spawn(self._sink_loop, s) for s in self.sinks]

    def set_schedule_origin(self, t0: float) -> None:
        """t0 of the run's schedule (loadgen.engine.schedule); a sequential run has no barrier to wait for."""
        self.t0 = t0
        log.info("[phase] schedule: %s", _describe_schedule(self.schedule.describe(self.users_requested, t0)))
        if self.schedule.sequential:
            self.sequencer = Sequencer(t0, self.schedule.concurrency)
            self.barrier.abort("sequential")

    def ready_to_start(self, granted: dict[str, int], live: set[str]) -> bool:
        """Whether every live worker has started all the users it was granted (so t0 can be set).

        A worker that is still not ready SCHEDULE_START_WAIT_S after dispatch
        is not waited for: its sandboxes start late, and their lateness says so."""
        if self.t0 is not None or not self.dispatch_complete:
            return False
        waiting = [w for w, n in granted.items() if n > 0 and w in live
                   and (self.reports.get(w) or {}).get("tickets", 0) < n]
        if not waiting:
            return True
        if time.time() - self._dispatch_complete_at > SCHEDULE_START_WAIT_S:
            log.warning("[phase] starting the schedule without %d worker(s) that have not started their users "
                        "after %.0f s: %s", len(waiting), SCHEDULE_START_WAIT_S, ", ".join(sorted(waiting)))
            return True
        return False

    def advance_turn(self) -> bool:
        """Sequential runs: move the turn past every sandbox whose life is over; True if it moved."""
        if self.sequencer is None or self.collector is None:
            return False
        return self.sequencer.advance(self.collector.seen, self.sandbox_lost)

    def mark_dispatch_complete(self) -> None:
        self.dispatch_complete = True
        self._dispatch_complete_at = time.time()
        log.info("[phase] dispatch complete: %s sandboxes dispatched; dispatch is now frozen", _count(self.expected()))
        self.barrier.dispatch_complete = True
        self.barrier.evaluate()

    # -- messages from generating processes --------------------------------------
    def on_results(self, data: dict) -> bool:
        """Accept a batch of records; True when it moved a sequential run's turn."""
        self.collector.accept(data.get("records") or [])
        if data.get("final"):
            self.final_from.add(data["worker_id"])
        return self.advance_turn()

    def on_report(self, data: dict) -> Optional[dict]:
        """Record a process's absolute counts; returns the release message if that process still needs it."""
        samples = data.pop("phase1", None)
        self.reports[data["worker_id"]] = data
        self.report_times[data["worker_id"]] = time.time()
        if data["worker_id"] in self.lost:
            gone = self.lost.pop(data["worker_id"])
            log.warning("[phase] worker %s on host %s is back after %.0f s of silence; its records count again",
                        data["worker_id"], gone["host"], time.time() - gone["last_heard_at"])
        if samples and self.collector is not None:
            self.collector.note_phase1(samples)
        was_released = self.barrier.released
        self.barrier.report(data["worker_id"], data.get("phase1_done", 0), data.get("seen_release", False))
        if self.barrier.released and not was_released:
            self._log_release()
        if self.barrier.released and not data.get("seen_release"):
            return self.barrier.message()
        return None

    def tick_barrier(self) -> bool:
        """Deadline check; True when this call released the barrier."""
        released = self.barrier.evaluate()
        if released:
            self._log_release()
        return released

    def check_lost(self, workers, missing, now: Optional[float] = None) -> list[str]:
        """The workers (of ``workers``, those given sandboxes) newly silent for --worker-heartbeat-timeout.

        A worker reports every second; one that has not for ``worker_heartbeat_timeout_s``
        (SIGKILLed, its host down, its link cut for that long), and that Locust
        too counts as missing (``missing``: no heartbeat, which a master busy
        for a while never mistakes for silence), is lost: the run no longer
        waits for it, and its sandboxes without a record are listed as
        missing, with its host, in meta.json. One that reports again before
        the run ends is no longer lost."""
        now = time.time() if now is None else now
        newly = []
        for worker in sorted(workers):
            if worker in self.final_from or worker in self.lost or worker not in missing:
                continue
            last = self.report_times.get(worker, self._dispatch_complete_at or now)
            if now - last > self.settings.worker_heartbeat_timeout_s:
                self.mark_lost(worker, now, f"silent for {now - last:.1f} s (--worker-heartbeat-timeout "
                                            f"{self.settings.worker_heartbeat_timeout_s:g} s)")
                newly.append(worker)
        if newly and self.barrier.evaluate(now):  # their sandboxes were all the barrier still waited for
            self._log_release()
        return newly

    def nothing_left_from(self, worker: str) -> bool:
        """Whether the run waits for nothing more from this worker: its last results came, every record
        of its sandboxes arrived (a worker whose lives are over sends its end marker only when told to
        stop), or it is lost."""
        if worker in self.final_from or worker in self.lost:
            return True
        seen = self.collector.seen if self.collector is not None else set()
        return all(idx in seen for start, end in self.worker_ranges().get(worker, []) for idx in range(start, end))

    def mark_lost(self, worker: str, now: float, why: str) -> None:
        last = self.report_times.get(worker, self._dispatch_complete_at or now)
        self.lost[worker] = {"host": host_of(worker), "last_heard_at": last, "noticed_at": now}
        log.error("[phase] worker %s on host %s is lost: %s; the run goes on without it, and its sandboxes without "
                  "a record will be listed as missing (loadgen reap RUN_DIR destroys them from its journal)",
                  worker, host_of(worker), why)

    def _lost_unarrived(self) -> int:
        """Sandboxes of lost workers that never reported finishing phase 1: the barrier stops waiting for them."""
        ranges = self.worker_ranges()
        return sum(max(0, sum(end - start for start, end in ranges.get(w, [])) - self.barrier.counts.get(w, 0))
                   for w in self.lost)

    def missing_by_host(self, missing: list[int]) -> tuple[list[dict], dict]:
        """(lost workers, missing sandbox_idx by host) for meta.json: whose records never came."""
        owner = {}
        for worker, ranges in self.worker_ranges().items():
            for start, end in ranges:
                owner[(start, end)] = worker
        bounds = sorted(owner)

        def worker_of(idx: int) -> Optional[str]:
            for start, end in bounds:  # few ranges (one or two per worker)
                if start <= idx < end:
                    return owner[(start, end)]
            return None

        by_worker: dict[Optional[str], list[int]] = {}
        for idx in missing:
            by_worker.setdefault(worker_of(idx), []).append(idx)
        by_host: dict[str, dict] = {}
        for worker, idxs in sorted(by_worker.items(), key=lambda kv: kv[1][0]):
            host = host_of(worker) if worker else "unknown"
            entry = by_host.setdefault(host, {"count": 0, "sandbox_idx": [], "workers": []})
            entry["count"] += len(idxs)
            entry["sandbox_idx"] = (entry["sandbox_idx"] + idxs)[:1000]
            if worker and worker not in entry["workers"]:
                entry["workers"].append(worker)
        lost = []
        for worker, info in sorted(self.lost.items()):
            idxs = by_worker.get(worker, [])
            lost.append({"worker_id": worker, "host": info["host"], "last_heard_at": iso(info["last_heard_at"]),
                         "noticed_at": iso(info["noticed_at"]),
                         "noticed_after_s": round(info["noticed_at"] - info["last_heard_at"], 3),
                         "sandbox_idx_ranges": self.worker_ranges().get(worker, []),
                         "missing_count": len(idxs), "missing_sandbox_idx": idxs[:1000]})
        return lost, by_host

    def _log_release(self) -> None:
        b = self.barrier
        log.info("[phase] barrier released by %s after %s: %s/%s sandboxes finished phase 1",
                 b.reason, _duration_s(b.released_at - b.started_at), _count(b.arrived), _count(self.expected()))

    def on_metrics(self, sample: dict) -> None:
        self.health[sample.get("process", "?")] = sample
        if self._metrics_fh is not None:
            self._metrics_fh.write(orjson.dumps(sample) + b"\n")
            self._metrics_fh.flush()

    # -- background loops -----------------------------------------------------------
    def heartbeat(self) -> dict:
        c = self.collector
        hb = {
            "ts": iso(time.time()),
            "run_id": self.run_id,
            "status": "running" if not self.finalized else (self.meta or {}).get("status"),
            "expected": self.expected(),
            "done": c.received if c else 0,
            "in_flight": sum(r.get("in_flight", 0) for r in self.live_reports()),
            "held": sum(r.get("held", 0) for r in self.live_reports()),
            "waiting": sum(r.get("waiting", 0) for r in self.live_reports()),
            "errors": (c.received - c.by_status.get("success", 0)) if c else 0,
            "by_status": dict(c.by_status) if c else {},
            "barrier": {"released": self.barrier.released, "reason": self.barrier.reason,
                        "arrived": self.barrier.arrived},
            "schedule": self.schedule.describe(self.users_requested, self.t0),
            "started_at": self.identity.get("started_at"),
        }
        if c is not None:
            hb["rate_per_s"], hb["eta_s"] = (round(x, 3) if x is not None else None for x in c.rate_and_eta())
            hb["latency_so_far"] = c.latency_so_far()
        now = time.time()
        hb["workers"] = {w: {"last_report_at": iso(self.report_times.get(w, now)), "lost": w in self.lost,
                             **{k: r.get(k) for k in ("done", "in_flight", "held", "live", "waiting")}}
                         for w, r in self._reports_by_worker().items()}
        return hb

    def waiting_for(self) -> Optional[str]:
        """What the run is waiting for now, in words (the progress lines and the web UI say it)."""
        if self.finalized:
            return None
        if not self.dispatch_complete:
            return "waiting for every user to be started (dispatch)"
        b, s = self.barrier, self.settings
        if not b.released:
            left = max(0.0, b.started_at + b.deadline_s - time.time())
            return (f"waiting at the barrier: {b.arrived}/{self.expected()} sandboxes finished create and "
                    f"readiness; it releases when all have, or by its deadline (--barrier-timeout) in {left:.0f} s")
        reports = self.live_reports()
        late = sum(r.get("late_waiting", 0) for r in reports)
        held = sum(r.get("held", 0) for r in reports)
        in_flight = sum(r.get("in_flight", 0) for r in reports)
        parts = []
        if late:
            parts.append(f"{late} timed-out creates' late answers (up to --late-create-window "
                         f"{s.late_create_window_s:g} s each), so that their sandboxes are destroyed, not leaked")
        if held:
            parts.append(f"{held} sandboxes in their hold (--hold {s.hold_s:g} s, probes spread over "
                         f"{s.probe_spread_s:g} s)")
        if in_flight:
            parts.append(f"{in_flight} requests in flight (probes and destroys)")
        return ("waiting for " + "; ".join(parts)) if parts else None

    def live_point(self) -> dict:
        """Sandboxes alive and requests in flight now, summed over every process (and the peak so far)."""
        reports = self.live_reports()
        point = {"t_s": round(time.time() - self.barrier.started_at, 1),
                 "live": sum(r.get("live", 0) for r in reports),
                 "in_flight": sum(r.get("in_flight", 0) for r in reports)}
        self.peak_live = max(self.peak_live, point["live"])
        return point

    def _reports_by_worker(self) -> dict:
        reports = self.live_reports()
        return {r.get("worker_id", "local"): r for r in reports}

    def _heartbeat_loop(self) -> None:
        while True:
            self.timeline.append(self.live_point())
            c = self.collector
            if c is not None and self.dispatch_complete and not c.complete and \
                    time.time() - c.last_progress_at >= PROGRESS_QUIET_S:
                c.log_progress()  # no result for a while: say what the run is waiting for
            try:
                rundir.atomic_write_json(self.run_path / rundir.HEARTBEAT, self.heartbeat())
            except Exception:  # noqa: BLE001
                log.exception("could not write heartbeat.json")
            gevent.sleep(HEARTBEAT_INTERVAL_S)

    def _sink_loop(self, sink: Sink) -> None:
        delay = SINK_INTERVAL_S
        while True:
            gevent.sleep(delay)
            try:
                sink.sync()
                if delay != SINK_INTERVAL_S:
                    log.warning("[sink] %s recovered", sink.name)
                delay = SINK_INTERVAL_S
            except Exception as exc:  # noqa: BLE001 - retried with backoff, loudly
                backlog = getattr(sink, "backlog_bytes", None)
                log.error("[sink] %s failed: %s (backlog %s bytes); retrying in %.0f s",
                          sink.name, exc, "unknown" if backlog is None else backlog, min(delay * 2, 30.0))
                delay = min(delay * 2, 30.0)

    # -- the end ----------------------------------------------------------------------
    def finalize(self, stats_fn, thresholds: dict) -> int:
        """Compute the figures, complete every sink, write meta.json. Returns the process exit code."""
        if self.finalized:
            return self.exit_code
        self.finalized = True
        for g in self._greenlets:
            g.kill(block=False)
        log.info("[phase] finalizing run %s", self.run_id)
        self.collector.close()
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None
        records = rundir.read_records(self.run_path)
        metrics = list(rundir.iter_jsonl(self.run_path / rundir.METRICS))
        missing = self.collector.missing() if self.dispatch_complete else []
        complete = self.dispatch_complete and not missing and self.expected() > 0
        if self.interrupted_reason:
            status = "interrupted"  # even when every life ended: the holds were cut short
        elif complete and not self.refused:
            status = "done"
        else:
            status = "failed"
        figures = stats_fn(records, metrics, mode=self.schedule.kind)
        lost_workers, missing_by_host = self.missing_by_host(missing)
        meta = {
            **figures,
            **{k: v for k, v in self.identity.items() if k != "options"},
            "ended_at": iso(time.time()),
            "status": status,
            "interrupted_reason": self.interrupted_reason,
            "error_message": self.error_message,
            "users_requested": self.users_requested,
            "sandboxes_dispatched": self.expected(),
            "records_received": len(records),
            "missing_sandbox_idx": missing[:1000],
            "missing_count": len(missing),
            "missing_by_host": missing_by_host,
            "lost_workers": lost_workers,
            "worker_heartbeat_timeout_s": self.settings.worker_heartbeat_timeout_s,
            "duplicate_deliveries": self.collector.duplicates,
            "barrier": self.barrier.outcome(),
            "schedule": self.schedule.describe(self.users_requested, self.t0),
            "clock_offsets": self.clock_offsets,
            "options": self.identity.get("options", {}),
        }
        for key, figure in self.extra_meta.items():
            try:
                meta[key] = figure()
            except Exception as exc:  # noqa: BLE001 - a side figure must never stop the run from ending
                log.warning("could not read %s for meta.json: %s", key, exc)
        meta["cost"] = run_cost(records, self.users_requested, self.settings.sandbox_lifetime_s,
                                self.settings.price or price_for(self.identity["provider"]),
                                self.identity.get("target"))
        threshold_results = evaluate_thresholds(meta, thresholds)
        meta["thresholds"] = threshold_results
        meta["leak_count"] = meta.get("leak_count", len(meta.get("leaks") or []))
        for line in summary_lines(meta, self.run_path):
            log.info(line)
        # Sinks copy the run directory as it is now: nothing is logged after this
        # point unless a copy failed (which that copy could not carry anyway).
        reports = {}
        for sink in self.sinks:
            try:
                report = sink.finish(meta, status)
            except Exception as exc:  # noqa: BLE001 - finish must not raise; treat as incomplete
                report = SinkReport(sink.name, False, f"finish failed: {exc}")
            if sink.name in self.sink_failures and report.complete:
                report.detail = f"{report.detail} (recovered after: {self.sink_failures[sink.name]})".strip()
            reports[sink.name] = {"complete": report.complete, "detail": report.detail, **report.extra}
            if not report.complete:
                log.error("[sink] %s copy is INCOMPLETE: %s", sink.name, report.detail)
        meta["sinks"] = reports
        sinks_complete = all(r["complete"] for r in reports.values())
        meta["complete"] = complete and sinks_complete
        if status == "interrupted":
            code = EXIT_INTERRUPTED
        elif not meta["complete"]:
            code = EXIT_INCOMPLETE
        elif meta.get("measurement_compromised"):
            code = EXIT_COMPROMISED
        elif any(not t["passed"] for t in threshold_results.values()):
            code = EXIT_THRESHOLD
        else:
            code = EXIT_OK
        meta["exit_code"] = code
        rundir.atomic_write_json(self.run_path / rundir.META, meta)
        for sink in self.sinks:
            if reports[sink.name]["complete"]:
                try:
                    sink.store_final_meta(meta)
                except Exception as exc:  # noqa: BLE001 - the copy of meta.json only; the rows are in
                    log.error("[sink] %s could not store the final meta.json: %s", sink.name, exc)
        self.meta, self.exit_code = meta, code
        rundir.atomic_write_json(self.run_path / rundir.HEARTBEAT, self.heartbeat())
        if self._logfile is not None:
            self._logfile.close()
        print(f"loadgen: run {self.run_id} {status}; complete {meta['complete']}; exit code {code}"
              + "".join(f"; {name} copy {'complete' if r['complete'] else 'INCOMPLETE'}" for name, r in reports.items())
              + f"; results in {self.run_path}", flush=True)
        return code


def host_of(worker_id: str) -> str:
    """The host a worker ran on: Locust names each worker <hostname>_<random hex>."""
    host, sep, _ = worker_id.rpartition("_")
    return host if sep else worker_id


def evaluate_thresholds(meta: dict, thresholds: dict) -> dict:
    out = {}
    rate = thresholds.get("min_success_rate")
    if rate is not None:
        attempted = meta.get("provider_attempted", meta.get("sandboxes_attempted")) or 0
        success = (meta.get("status_histogram") or {}).get("success", 0)
        actual = success / attempted if attempted else 0.0
        out["min_success_rate"] = {"required": rate, "actual": round(actual, 6), "passed": actual >= rate}
    return out


def summary_lines(meta: dict, run_path: Path) -> list[str]:
    """The [summary] lines: the run's outcome in the same statuses and units as the report."""
    from loadgen.report.human import count, duration_ms, duration_s

    hist = meta.get("status_histogram") or {}
    lat = meta.get("latency_distribution") or {}
    tti = meta.get("tti_distribution") or {}
    conc = meta.get("concurrency_summary") or {}
    barrier = meta.get("barrier") or {}
    label = f" [{meta['label']}]" if meta.get("label") else ""
    target = meta.get("target") or "provider"
    if target == "emulator":
        target = f"emulator, {meta['emulator_profile']} profile" if meta.get("emulator_profile") else "emulator"
    else:
        target = "the real service"

    def percentiles(d: dict, what: str) -> str:
        if d.get("p50") is None:
            return f"{what}: none measured"
        return f"{what} p50 {duration_ms(d.get('p50'))}, p99 {duration_ms(d.get('p99'))}"

    released = (f"barrier released by {barrier.get('reason')} after {duration_s(barrier.get('waited_s'))}"
                if barrier.get("reason") else "barrier never released")
    lines = [
        f"[summary] run {meta.get('run_id')}{label} ({meta.get('provider')} on {target}) status {meta.get('status')}, "
        f"{count(meta.get('records_received'))} of {count(meta.get('sandboxes_dispatched'))} results received",
        *generator_lines(meta),
        *emulator_lines(meta),
        f"[summary] sandboxes: {count(meta.get('sandboxes_attempted', 0))} attempted, "
        + ", ".join(f"{k} {count(hist.get(k, 0))}" for k in ("success", "partial", "readiness_failed", "failed")),
        f"[summary] {percentiles(lat, 'create latency')}; {percentiles(tti, 'TTI')}",
        f"[summary] peak concurrent sandboxes {count(conc.get('peak_concurrent') or 0)}; {released}; "
        f"leaks {count(meta.get('leak_count', 0))}",
        f"[summary] results in {run_path}",
    ]
    lines[-1:-1] = (schedule_summary_lines(meta) + [time_to_live_line(meta), cost_line(meta)]
                    + leak_summary_lines(meta, run_path) + missing_summary_lines(meta, run_path))  # before "results in"
    if meta.get("generator_saturated"):  # before "results in", which stays the last line
        lines.insert(-1, f"[summary] WARNING: the load generator was saturated: {meta.get('generator_saturated_reason')}")
    return lines


def _describe_schedule(schedule: dict) -> str:
    from loadgen.report.human import count

    mode = schedule.get("mode")
    n = count(schedule.get("sandboxes"))
    if mode == "staggered":
        return f"staggered, {n} sandboxes {schedule['stagger_ms']:g} ms apart over {schedule['planned_span_s']:g} s"
    if mode == "arrival":
        ramp = f" after a {schedule['ramp_s']:g} s linear ramp" if schedule.get("ramp_s") else ""
        return (f"open arrivals, {schedule['arrival_rate_per_s']:g} creates/s{ramp}: {n} sandboxes over "
                f"{schedule['planned_span_s']:g} s")
    if mode == "sequential":
        k = schedule.get("concurrency") or 1
        return f"sequential, {n} sandboxes " + ("one at a time" if k == 1 else f"{k} at a time")
    return f"burst, {n} sandboxes at once"


def schedule_summary_lines(meta: dict) -> list[str]:
    """The schedule, how late the creates started against it, wall clock and time to first ready."""
    schedule = meta.get("schedule") or {}
    late = meta.get("lateness_distribution") or {}
    pacing = meta.get("lateness_summary") or {}
    lines = [
        f"[summary] schedule {_describe_schedule(schedule)}; creates started late by p50 {_ms(late.get('p50'))}, "
        f"p99 {_ms(late.get('p99'))}, max {_ms(late.get('max'))}; wall clock {_ms(meta.get('wall_clock_ms'))}; "
        f"first ready after {_ms(meta.get('time_to_first_ready_ms'))}"
    ]
    if meta.get("behind_schedule"):
        lines.append(f"[summary] WARNING: creates started behind their schedule: {pacing.get('reason')}")
    return lines


def generator_lines(meta: dict) -> list[str]:
    """What the generator's own load did to the run, said first: how much of each sandbox's
    phases it held, and the sandboxes it failed itself (never counted as the provider's)."""
    lines = []
    failed = meta.get("generator_failures") or 0
    if failed:
        lines.append(f"[summary] MEASUREMENT COMPROMISED: the generator itself failed {failed} sandboxes "
                     "(failure class generator_error: descriptors, ports, or requests it could not send in time); "
                     "they are left out of the provider's success rate")
    share = meta.get("generator_share") or {}
    held = share.get("held_ms") or {}
    if share.get("sandboxes_measured"):
        worst = share.get("worst") or {}
        wire, measured = share.get("wire_timed") or 0, share["sandboxes_measured"]
        if wire >= measured:
            where = "latencies are on the wire and leave it out"
        elif not wire:
            where = "latencies time the SDK's calls and include it"
        else:
            where = (f"{_count(wire)} of {_count(measured)} sandboxes' latencies are on the wire and leave it out; "
                     "the others time the SDK's calls and include it")
        lines.append(
            f"[summary] generator's own share: held phases p50 {_ms(held.get('p50'))}, p99 {_ms(held.get('p99'))}; "
            f"{_count(share.get('delayed', 0))} of {_count(share['sandboxes_measured'])} sandboxes delayed by more than "
            f"{share.get('limit_ms', 10):g} ms ({100.0 * (share.get('delayed_share') or 0):.1f}%); worst "
            f"{_ms(worst.get('held_ms'))} (sandbox {worst.get('sandbox_idx')}, {worst.get('phase')}); " + where)
    return lines


def _ms(value) -> str:
    from loadgen.report.human import duration_ms

    return duration_ms(value)


def _count(value) -> str:
    from loadgen.report.human import count

    return count(value)


def _duration_s(value) -> str:
    from loadgen.report.human import duration_s

    return duration_s(value)


LEAKS_LISTED = 20


def leak_summary_lines(meta: dict, run_path: Path) -> list[str]:
    """Destroy retries, and every sandbox left alive by id, with the command that destroys them."""
    lines = []
    leaks = meta.get("leaks") or []
    retried = meta.get("destroy_retried") or {}
    if retried.get("sandboxes"):
        lines.append(f"[summary] destroy retries: {_count(retried['sandboxes'])} sandboxes needed a retry, "
                     f"{_count(retried['destroyed_by_retry'])} of them destroyed by one")
    if leaks:
        ids = ", ".join(f"{leak.get('sandbox_id')} (idx {leak.get('sandbox_idx')})" for leak in leaks[:LEAKS_LISTED])
        more = f" and {len(leaks) - LEAKS_LISTED} more (all in meta.json, leaks)" if len(leaks) > LEAKS_LISTED else ""
        lines.append(f"[summary] LEAKED: {_count(len(leaks))} sandboxes no destroy removed, possibly still alive "
                     f"and billed: {ids}{more}")
        lines.append(f"[summary] destroy them with: loadgen reap {run_path}")
    return lines


def _idx_spans(idxs: list[int]) -> str:
    """3, 4, 5, 9 -> '3-5, 9'."""
    spans, start, prev = [], None, None
    for idx in idxs:
        if start is None:
            start = prev = idx
        elif idx == prev + 1:
            prev = idx
        else:
            spans.append((start, prev))
            start = prev = idx
    if start is not None:
        spans.append((start, prev))
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def missing_summary_lines(meta: dict, run_path: Path) -> list[str]:
    """Records that never came, by host, and the workers the master lost."""
    lines = []
    for worker in meta.get("lost_workers") or []:
        lines.append(f"[summary] LOST: worker {worker['worker_id']} on host {worker['host']}, silent from "
                     f"{worker['last_heard_at']} (noticed after {worker['noticed_after_s']:.1f} s); "
                     f"{worker['missing_count']} of its sandboxes have no record")
    for host, entry in (meta.get("missing_by_host") or {}).items():
        shown = _idx_spans(entry["sandbox_idx"])
        more = " ..." if entry["count"] > len(entry["sandbox_idx"]) else ""
        lines.append(f"[summary] MISSING: {entry['count']} records of host {host} (sandbox_idx {shown}{more})")
    if meta.get("lost_workers"):
        lines.append(f"[summary] what they created may still be alive: loadgen reap {run_path} destroys it "
                     "(from the lost host's journal, which bin/launch-shards.sh copies into journal/)")
    return lines


def time_to_live_line(meta: dict) -> str:
    ttl = meta.get("time_to_live") or {}
    return (f"[summary] time to live from the first create: 50% {_ms(ttl.get('to_50pct_ms'))}, "
            f"90% {_ms(ttl.get('to_90pct_ms'))}, 99% {_ms(ttl.get('to_99pct_ms'))}, "
            f"100% {_ms(ttl.get('to_100pct_ms'))} of {_count(ttl.get('ever_alive', 0))} ever alive; peak "
            f"{_count(ttl.get('peak_live', 0))} at {_ms(ttl.get('to_peak_ms'))}; peak live during the hold "
            f"{_count(ttl.get('peak_live_during_hold', 0))}")


def cost_line(meta: dict) -> str:
    cost = meta.get("cost") or {}
    price = cost.get("price") or {}
    worst = (cost.get("estimate") or {}).get("usd")
    if cost.get("usd") is None:
        money = f"no price known for {price.get('provider')}"
    else:
        money = (f"${cost['usd']:,.4f} at {price.get('provider')}'s price (${price.get('usd_per_sandbox_second'):.8f}"
                 f"/sandbox-second, as of {price.get('as_of')}); the worst case was ${worst:,.2f}")
    leaked = f"; {_count(cost['leaked'])} leaked counted at their lifetime" if cost.get("leaked") else ""
    emulator = "; the emulator billed nothing" if cost.get("target") == "emulator" else ""
    from loadgen.report.human import number

    return f"[summary] cost: {number(cost.get('sandbox_seconds', 0))} sandbox-seconds, {money}{leaked}{emulator}"
