"""The wiring into Locust's events and messages: where Locust meets loadgen.

A locustfile imports ``SandboxUser`` (``from loadgen import SandboxUser``),
whose module imports this one, which registers loadgen's options
(``loadgen.engine.options``) and its ``init`` listener once per process. The
listener builds one ``Controller`` per Locust environment. From then on:

- master / local: ``test_start`` opens a run (identity, run directory,
  coordinator, sinks); ``spawning_complete`` freezes dispatch and arms the
  barrier; ``test_stopping`` ends every hold and collects the last results;
  ``test_stop`` writes meta.json; ``quitting`` makes sure all of that happened
  even on SIGTERM and sets the exit code.
- worker: ``test_start`` (the first spawn message) builds the process's run
  from the options the master sent; custom messages carry results, counts,
  the barrier release, aborts and clock samples.

The module is longer than the others on purpose: the Controller is one state
machine over Locust's events for all three kinds of runner (master, worker,
single process), and each small message handler reads best beside the event
it answers. Options, identity and clocks live in their own modules.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import gevent
from locust import events
from locust import runners as locust_runners
from locust.runners import MasterRunner, WorkerRunner

from loadgen.engine.clocks import MasterClock, WorkerClock
from loadgen.engine.coordinator import Coordinator, EXIT_INCOMPLETE
from loadgen.engine.dispatch import IndexAllocator, install_master_dispatch
from loadgen.engine.embedded import embedded_emulator, processes_for
from loadgen.engine.health import HealthSampler
from loadgen.engine import limits
from loadgen.engine.identity import make_identity
from loadgen.engine.options import RunSettings, add_arguments, refusals
from loadgen.engine.process import ProcessRun
from loadgen.engine.target import emulator_health
from loadgen.engine.schedule import SANDBOXES_OPTION
from loadgen.net.wirehttp import http2_setting
from loadgen.providers import get_provider_class
from loadgen.providers.base import MissingCredentials
from loadgen.report.cost import describe_estimate
from loadgen.sinks import sink_refusals, sinks_for

log = logging.getLogger("loadgen.run")

MSG_RESULTS = "loadgen_results"
MSG_ACK = "loadgen_ack"
MSG_REPORT = "loadgen_report"
MSG_RELEASE = "loadgen_release"
MSG_ABORT = "loadgen_abort"
MSG_METRICS = "loadgen_metrics"
MSG_SCHEDULE = "loadgen_schedule"
MSG_LIMITS = "loadgen_limits"
LIMITS_WAIT_S = 5.0  # how long the master waits for a worker's limits before judging without them


def set_worker_heartbeat_timeout(seconds: float) -> None:
    """How long the master waits for a silent worker before it counts it lost (--worker-heartbeat-timeout).

    Locust's master counts down each worker's heartbeats once a second from
    ``HEARTBEAT_LIVENESS``, which it reads each time a heartbeat arrives or a
    worker joins; setting the module's value before any worker connects sets
    it for the run."""
    locust_runners.HEARTBEAT_LIVENESS = max(3, math.ceil(seconds))


def provider_name_of(environment) -> str:
    """The provider of the locustfile's loadgen user classes (those that name one in ``provider_name``)."""
    names = {getattr(u, "provider_name", "") for u in environment.user_classes}
    names.discard("")
    if len(names) != 1:
        raise ValueError(f"a loadgen locustfile needs exactly one provider's user class (found {sorted(names) or 'none'})")
    return names.pop()


class Controller:
    def __init__(self, environment):
        self.environment = environment
        self.runner = environment.runner
        self.options = environment.parsed_options
        self.provider_name = provider_name_of(environment)
        self.provider_class = get_provider_class(self.provider_name)
        self.settings = RunSettings.from_options(self.options, self.provider_name)
        self.is_master = isinstance(self.runner, MasterRunner)
        self.is_worker = isinstance(self.runner, WorkerRunner)
        self.coordinator: Optional[Coordinator] = None
        self._proc: Optional[ProcessRun] = None
        self.allocator = IndexAllocator()
        self.clock_offset = 0.0
        self._ending = False
        self._reporter: Optional[gevent.Greenlet] = None
        self._report_pending = False
        self._master_sampler: Optional[HealthSampler] = None
        self._ticker: Optional[gevent.Greenlet] = None
        self.exit_code: Optional[int] = None

        ev = environment.events
        ev.test_start.add_listener(self.on_test_start)
        ev.spawning_complete.add_listener(self.on_spawning_complete)
        ev.test_stopping.add_listener(self.on_test_stopping)
        ev.test_stop.add_listener(self.on_test_stop)
        ev.quitting.add_listener(self.on_quitting)
        self.limits = limits.process_limits()  # raises this process's descriptor limit first
        self.worker_limits: dict[str, dict] = {}
        self._worker_slots: dict[str, int] = {}  # worker -> its emulator, when the run spreads over several
        self.refusal: Optional[str] = None
        if self.is_master:
            set_worker_heartbeat_timeout(self.settings.worker_heartbeat_timeout_s)
            install_master_dispatch(self.runner, lambda: self.allocator, self._options_for_worker)
            self.runner.register_message(MSG_RESULTS, self._m_results)
            self.runner.register_message(MSG_REPORT, self._m_report)
            self.runner.register_message(MSG_METRICS, self._m_metrics)
            self.runner.register_message(MSG_LIMITS, self._m_limits)
            self.master_clock = MasterClock(self.runner)
        elif self.is_worker:
            self.runner.register_message(MSG_ACK, self._w_ack)
            self.runner.register_message(MSG_RELEASE, self._w_release)
            self.runner.register_message(MSG_ABORT, self._w_abort)
            self.runner.register_message(MSG_SCHEDULE, self._w_schedule)
            self.worker_clock = WorkerClock(self.runner, self._on_clock_offset)
            self.runner.send_message(MSG_LIMITS, {"worker_id": self.runner.client_id, **self.limits,
                                                  "destination": self.destination()})

    # -- helpers ---------------------------------------------------------------------
    @property
    def headless(self) -> bool:
        return bool(getattr(self.options, "headless", False))

    def emulator_urls(self) -> list[str]:
        """The emulator URLs of --emulator-url (a comma-separated list spreads the workers over them).

        A locustfile with an embedded emulator (local.py) always gets that emulator (or the ones
        --emulator-url named on the command line) on the master or single process, whatever the
        options say by the time the run starts."""
        embedded = embedded_emulator()
        if embedded is not None and not self.is_worker:
            value = embedded.url or ""
        else:
            value = getattr(self.environment.parsed_options, "emulator_url", None) or ""
        return [url.strip() for url in value.split(",") if url.strip()]

    def base_url(self) -> Optional[str]:
        """Where this process's adapter is pointed: its emulator (a worker's own, when the master
        spread the workers over several; the first of them in a single process), or None."""
        urls = self.emulator_urls()
        return urls[0] if urls else None

    def worker_emulator_url(self, worker_id: str) -> Optional[str]:
        urls = self.emulator_urls()
        if len(urls) < 2:
            return None
        slot = self._worker_slots.setdefault(worker_id, len(self._worker_slots))
        return urls[slot % len(urls)]

    def _options_for_worker(self, worker_id: str) -> dict:
        url = self.worker_emulator_url(worker_id)
        return {"emulator_url": url} if url else {}

    def destination(self) -> str:
        """Where this process's sandboxes connect: the emulator's address, else the provider's API."""
        return self.base_url() or f"{self.provider_name} API"

    # -- limits -------------------------------------------------------------------------
    def _m_limits(self, environment, msg, **kw) -> None:
        self.worker_limits[msg.data.get("worker_id") or msg.node_id] = msg.data

    def check_limits(self, users: int) -> tuple[list[str], dict]:
        """Problems with this run's size against every process's limits, and what was found (for run.json)."""
        provider = self.provider_class
        if self.is_master:
            workers = [c.id for c in self.runner.clients.all if c.state != "missing"]
            deadline = time.time() + LIMITS_WAIT_S
            while any(w not in self.worker_limits for w in workers) and time.time() < deadline:
                gevent.sleep(0.05)
            processes = {w: self.worker_limits.get(w, {}) for w in workers}
            shares = limits.even_shares(users, workers)
            self._worker_slots = {w: i for i, w in enumerate(sorted(workers))}
            destination_of = {w: self.worker_emulator_url(w) or processes[w].get("destination", "") for w in workers}
            processes["master"] = self.limits
        else:
            processes = {"local": self.limits}
            shares = {"local": users}
            destination_of = {"local": self.destination()}
        per_destination = provider.connections_per_destination(self.base_url())
        problems = limits.check(processes, shares, provider.fds_per_sandbox, per_destination, destination_of)
        found = {"processes": processes, "sandboxes_per_process": shares, "fds_per_sandbox": provider.fds_per_sandbox,
                 "base_fds": limits.BASE_FDS, "connections_per_destination_per_sandbox": per_destination}
        return problems, found

    def _refuse(self, problems: list[str]) -> None:
        """Nothing is created: no run starts, workers get no run id; headless, the process exits 2."""
        self.refusal = "; ".join(problems)
        self.environment.parsed_options.loadgen_run_id = None
        for problem in problems:
            sys.stderr.write(f"loadgen: error: {problem}\n")
        sys.stderr.flush()
        self.exit_code = 2
        self.environment.process_exit_code = 2
        gevent.spawn(self.runner.quit if self.headless else self.runner.stop)

    def target(self) -> dict:
        """What this run's sandboxes are created on: an emulator (URL, profile) or the real provider."""
        url = ", ".join(self.emulator_urls()) or None
        embedded = embedded_emulator()
        return {"provider": self.provider_name, "kind": "emulator" if url else "provider", "url": url,
                "emulator_profile": embedded.profile if embedded is not None and url else None}

    @property
    def proc(self) -> Optional[ProcessRun]:
        """This process's run, if it runs sandbox lives (a worker, or the single local process)."""
        return self._proc

    @proc.setter
    def proc(self, proc: Optional[ProcessRun]) -> None:
        # Handed to every user through the environment Locust gives each user
        # (loadgen.engine.user reads it); the user never imports this module back.
        self._proc = proc
        self.environment.loadgen_process = proc

    def _new_process_run(self, run_id: str, run_path: Path, worker_id: str, send_results, send_metrics,
                         ticket_limit: Optional[int]) -> ProcessRun:
        users = max(1, int(getattr(self.environment.parsed_options, "num_users", None) or 1))
        base_url = self.base_url()
        if embedded_emulator() is not None and not base_url:
            raise RuntimeError("this locustfile's target is an emulator, and no emulator URL is known: "
                               "refusing to create anything (a real provider must never be reached by accident)")
        provider = self.provider_class(self.settings.provider_settings(users, base_url))
        provider.prepare()
        proc = ProcessRun(self.environment, run_id, worker_id, provider, self.settings, run_path, send_results,
                          send_metrics, ticket_limit=ticket_limit, clock_offset=self.clock_offset)
        proc.start()
        return proc

    def print_cost(self, users: int) -> None:
        """Print the run's worst case (loadgen.report.cost) before it starts."""
        price = self.settings.price
        print(f"loadgen: cost: {describe_estimate(self.settings.cost_estimate(users), price, self.settings.max_cost_usd)}"
              + ("; this run uses the emulator: nothing is billed" if self.base_url() else ""), flush=True)

    def check_cost(self, users: int) -> None:
        """Print the worst case; raise ValueError when --max-cost refuses it (nothing is created)."""
        self.print_cost(users)
        refusal = self.settings.cost_refusal(users)
        if refusal:
            raise ValueError(f"refusing to start: {refusal}")

    # -- test start --------------------------------------------------------------------
    def on_test_start(self, environment, **kw) -> None:
        if self.is_worker:
            self._start_worker_run()
            return
        options = self.environment.parsed_options
        # a new run: identity, run directory, dispatch state
        setattr(options, SANDBOXES_OPTION, int(getattr(options, "num_users", 0) or 0))
        self.settings = RunSettings.from_options(options, self.provider_name)
        users = int(self.runner.target_user_count or getattr(options, "num_users", 0) or 0)
        problems, found_limits = self.check_limits(users)
        if problems:
            self._refuse(problems)
            return
        self.refusal = None
        if embedded_emulator() is not None:
            options.emulator_url = ",".join(self.emulator_urls())  # what the workers and run.json see
        identity = make_identity(options, self.provider_name, self.target())
        identity["limits"] = found_limits
        run_path = Path(options.run_dir) / identity["run_id"]
        options.loadgen_run_id = identity["run_id"]
        self.allocator = IndexAllocator()
        self._ending = False
        users = int(getattr(options, "num_users", 0) or 0)
        if self.is_master:
            expected = lambda: self.allocator.allocated  # noqa: E731
        else:
            expected = lambda: (self.proc.tickets.issued if self.proc else 0)  # noqa: E731
        self.coordinator = Coordinator(identity, self.settings, run_path, sinks_for(options), expected, users)
        if not self.headless:  # headless runs were checked (and the cost printed) before anything started
            try:
                self.check_cost(users)
            except ValueError as exc:  # the web UI's run: refused before its schedule can start
                self.coordinator.refused = str(exc)
        self.coordinator.start()
        self.coordinator.extra_meta["emulator"] = lambda: emulator_health(self.emulator_urls())
        self.coordinator.collector.on_complete = self._on_all_results
        print(f"loadgen: run {identity['run_id']} (provider {self.provider_name}, commit {identity['commit_sha'][:12]}, "
              f"host {identity['host']}), results in {run_path}", flush=True)
        if self.is_master:
            self._master_sampler = HealthSampler("master", self.coordinator.on_metrics,
                                                 lambda: {"workers": len(self.runner.clients.all)})
            self._master_sampler.start()
            self.coordinator.clock_offsets.update(self.master_clock.measure())
            self.coordinator.sandbox_lost = self._sandbox_lost
            self.coordinator.worker_ranges = lambda: self.allocator.ranges
        else:
            target = self.runner.target_user_count or users
            try:
                self.proc = self._new_process_run(
                    identity["run_id"], run_path, "local",
                    send_results=self._local_results, send_metrics=self.coordinator.on_metrics, ticket_limit=target,
                )
            except Exception as exc:  # noqa: BLE001 - no sandbox exists yet: end the run, failed, at once
                self._adapter_failed(exc)
                return
            self.proc.gate.on_change = self._local_report
            self.coordinator.live_reports = lambda: [self.proc.report()] if self.proc else []
        self._ticker = gevent.spawn(self._tick)

    def _start_worker_run(self) -> None:
        options = self.environment.parsed_options
        run_id = getattr(options, "loadgen_run_id", None)
        if not run_id:
            log.error("the master sent no run id; is the master running loadgen?")
            return
        run_path = Path(options.run_dir) / run_id
        worker_id = self.runner.client_id
        self.settings = RunSettings.from_options(options, self.provider_name)

        def send_results(data):
            self.runner.send_message(MSG_RESULTS, data)

        def send_metrics(sample):
            self.runner.send_message(MSG_METRICS, sample)

        try:
            self.proc = self._new_process_run(run_id, run_path, worker_id, send_results, send_metrics,
                                              ticket_limit=None)
        except Exception as exc:  # noqa: BLE001 - tell the master this worker is done, then leave
            log.error("[phase] the %s adapter could not start on this worker: %s", self.provider_name, exc)
            send_results({"worker_id": worker_id, "seq": 0, "records": [], "final": True})
            gevent.spawn_later(0.5, self.runner.quit)
            return
        self.proc.gate.on_change = self._schedule_report
        self._reporter = gevent.spawn(self._report_loop)
        gevent.spawn(self._watch_master, self.proc)

    def _start_schedule(self) -> None:
        """t0 of the run's schedule (loadgen.engine.schedule): now, once every process has started the
        users it was given, so that no process's start-up delays the creates or counts against the
        schedule. Called on every worker report and tick until then."""
        coord = self.coordinator
        if coord is None or coord.t0 is not None or not coord.dispatch_complete:
            return
        if coord.refused:  # no life ever starts: every one ends not_started, nothing is created
            if not self._ending:
                log.error("[phase] %s", coord.refused)
                coord.error_message = coord.refused
                self._end_run()
            return
        if self.is_master:
            live = {c.id for c in self.runner.clients.all if c.state != "missing"}
            if not coord.ready_to_start(dict(self.allocator.counts), live):
                return
        coord.set_schedule_origin(time.time())
        self._send_schedule()

    def _send_schedule(self) -> None:
        """t0 and, in a sequential run, whose turn it is: to every process (repeated each tick)."""
        coord = self.coordinator
        if coord is None or coord.t0 is None:
            return
        message = {"t0": coord.t0, **(coord.sequencer.message() if coord.sequencer is not None else {})}
        if self.proc is not None:  # local
            self._apply_schedule(message)
            return
        for worker_id in self._granted_workers():
            self.runner.send_message(MSG_SCHEDULE, message, client_id=worker_id)

    def _apply_schedule(self, message: dict) -> None:
        starts = self.proc.starts
        starts.set_origin(float(message["t0"]))
        if "turn" in message:
            starts.grant(int(message["turn"]), float(message["granted_at"]))

    # -- local mode: direct calls instead of messages -----------------------------------
    def _local_results(self, data: dict) -> None:
        if self.coordinator.on_results(data):
            self._send_schedule()
        self.proc.outbox.ack(data["seq"])

    def _local_report(self) -> None:
        release = self.coordinator.on_report({**self.proc.report(), "phase1": self.proc.take_phase1()})
        if release is not None:
            self.proc.gate.release(release)

    # -- worker side ------------------------------------------------------------------------
    def _schedule_report(self) -> None:
        # arrivals come in bursts; one report per 50 ms is plenty and stays level-triggered
        if not self._report_pending:
            self._report_pending = True
            gevent.spawn_later(0.05, self._send_report)

    def _send_report(self) -> None:
        self._report_pending = False
        if self.proc is not None:
            try:
                # phase-1 latencies go once (a lost one is filled in by the record at the life's end)
                self.runner.send_message(MSG_REPORT, {**self.proc.report(), "phase1": self.proc.take_phase1()})
            except Exception:  # noqa: BLE001 - the next periodic report repeats it
                log.exception("could not send a report to the master")

    def _report_loop(self) -> None:
        while True:
            self._send_report()
            gevent.sleep(1.0)

    def _watch_master(self, proc: ProcessRun) -> None:
        """A worker whose master has been silent for --master-heartbeat-timeout ends the run on its own.

        Locust's worker would wait 60 s, then quit. Sooner, and on purpose: every
        hold ends, each sandbox still gets its probe and its destroy, so nothing
        this worker created is left alive; every result is in its journal, which
        `loadgen recover RUN_DIR` turns back into the run's raw.jsonl and meta.json."""
        limit = self.settings.master_heartbeat_timeout_s
        while self.proc is proc and not proc.abort.is_set():
            gevent.sleep(1.0)
            heard = getattr(self.runner, "last_heartbeat_timestamp", None)  # Locust's: the master's last heartbeat
            if heard is None or time.time() - heard <= limit:
                continue
            if self.proc is not proc or proc.abort.is_set():
                return
            log.error("[phase] the master has been silent for %.0f s (--master-heartbeat-timeout %g s): it is lost. Ending every "
                      "hold here; each sandbox gets its liveness probe and its destroy, and every result stays in "
                      "this worker's journal (%s) for loadgen recover", time.time() - heard, limit,
                      proc.outbox.results_path)
            proc.abort_all(f"the master was lost (silent for more than {limit:g} s)")
            proc.drain(proc.max_life_s())
            log.info("[phase] this worker's sandboxes have all ended (%d created, %d destroyed); quitting",
                     proc.created_count, proc.destroyed_count)
            self.runner.stop()  # as Locust's own "quit" message does: test_stop closes the journal
            self.runner.greenlet.kill(block=True)
            return

    def _w_ack(self, environment, msg, **kw) -> None:
        if self.proc is not None:
            self.proc.outbox.ack(msg.data["seq"])

    def _w_release(self, environment, msg, **kw) -> None:
        if self.proc is not None:
            self.proc.gate.release(msg.data)
            self._schedule_report()

    def _w_abort(self, environment, msg, **kw) -> None:
        proc = self.proc
        if proc is None:
            self.runner.send_message(MSG_RESULTS, {"worker_id": self.runner.client_id, "seq": 0, "records": [],
                                                   "final": True})
            return
        proc.abort_all((msg.data or {}).get("reason", "aborted by the master"))
        proc.drain(proc.max_life_s(), block=False)

    def _w_schedule(self, environment, msg, **kw) -> None:
        if self.proc is not None:
            self._apply_schedule(msg.data)

    def _on_clock_offset(self, offset_s: float) -> None:
        self.clock_offset = offset_s
        if self.proc is not None:
            self.proc.clock_offset = self.clock_offset

    # -- master side -------------------------------------------------------------------------
    def _m_results(self, environment, msg, **kw) -> None:
        if self.coordinator is None or self.coordinator.finalized:
            return
        moved = self.coordinator.on_results(msg.data)
        if msg.data.get("records"):
            self.runner.send_message(MSG_ACK, {"seq": msg.data["seq"]}, client_id=msg.node_id)
        if moved:
            self._send_schedule()

    def _sandbox_lost(self, idx: int) -> bool:
        """Whether sandbox ``idx`` belongs to a worker that is gone (its record will never come)."""
        for worker_id, ranges in self.allocator.ranges.items():
            if any(start <= idx < end for start, end in ranges):
                live = {c.id for c in self.runner.clients.all if c.state != "missing"}
                return worker_id not in live
        return False

    def _m_report(self, environment, msg, **kw) -> None:
        if self.coordinator is None or self.coordinator.finalized:
            return
        release = self.coordinator.on_report(msg.data)
        if release is not None:
            self.runner.send_message(MSG_RELEASE, release, client_id=msg.node_id)
        self._start_schedule()

    def _m_metrics(self, environment, msg, **kw) -> None:
        if self.coordinator is not None and not self.coordinator.finalized:
            self.coordinator.on_metrics(msg.data)

    def _granted_workers(self) -> set[str]:
        return {w for w, n in self.allocator.counts.items() if n > 0}

    # -- shared master/local: ticking, the end ---------------------------------------------------
    def _tick(self) -> None:
        """Local mode's report, barrier deadline, release re-broadcast, and lost-worker detection, twice a second."""
        while self.coordinator is not None and not self.coordinator.finalized:
            coord = self.coordinator
            if not self.is_master and self.proc is not None:
                # local mode's report, as often as a worker's (heartbeat.json's last_report_at, so that
                # `loadgen watch` never calls the one process stale during a long hold)
                self._local_report()
            coord.tick_barrier()
            self._start_schedule()
            coord.advance_turn()
            self._send_schedule()
            if coord.barrier.released:
                if self.is_master:
                    for worker_id, report in coord.reports.items():
                        if not report.get("seen_release"):
                            self.runner.send_message(MSG_RELEASE, coord.barrier.message(), client_id=worker_id)
                elif self.proc is not None and not self.proc.gate.released:
                    self.proc.gate.release(coord.barrier.message())
            if self.is_master and coord.dispatch_complete and not self._ending:
                granted = self._granted_workers()
                live = {c.id for c in self.runner.clients.all if c.state != "missing"}
                coord.check_lost(granted, granted - live)
                # (with nobody lost, the records' arrival ends the run: see _on_all_results)
                if granted and not coord.collector.complete and (coord.lost or coord.final_from >= granted) \
                        and all(coord.nothing_left_from(w) for w in granted):
                    log.error("[phase] every worker has ended or been lost, but %d results are missing; "
                              "ending the run", len(coord.collector.missing()))
                    self._end_run()
            gevent.sleep(0.5)

    def on_spawning_complete(self, user_count, **kw) -> None:
        if self.coordinator is not None and not self.is_worker:
            self.coordinator.mark_dispatch_complete()
            self._start_schedule()
            if self.proc is not None:
                self._local_report()
            if self.coordinator.collector.complete:
                self._on_all_results()

    def _adapter_failed(self, exc: BaseException) -> None:
        log.error("[phase] the %s adapter could not start: %s; ending the run before any create",
                  self.provider_name, exc)
        self.coordinator.error_message = f"adapter setup failed: {type(exc).__name__}: {exc}"
        self._end_run()

    def _on_all_results(self) -> None:
        log.info("[phase] every sandbox's life is over; ending the run")
        self._end_run()

    def _end_run(self) -> None:
        """Stop Locust: quit when headless, stop (and keep the web UI) otherwise."""
        if self._ending:
            return
        self._ending = True

        def end():
            if self.headless:
                self.runner.quit()
            else:
                self.runner.stop()

        gevent.spawn(end)

    def on_test_stopping(self, environment, **kw) -> None:
        """End every hold, then wait (bounded) until every process has sent its last result."""
        if self.is_worker:
            if self.proc is not None:
                self.proc.abort_all("test stopping")
            return
        coord = self.coordinator
        if coord is None or coord.finalized:
            return
        complete = coord.collector.complete
        if not complete and not self._ending and coord.interrupted_reason is None:
            silent = self._granted_workers() - coord.final_from
            if self.is_master and silent and self.runner.worker_count <= 0:
                # Locust stops the test itself when its last worker goes missing: they are lost, not stopped
                for worker in sorted(silent - set(coord.lost)):
                    coord.mark_lost(worker, time.time(), "Locust stopped the test: its last worker went missing")
            else:
                # stopped from outside (--run-time, the web UI, a signal), not by the run's own end
                coord.interrupted_reason = "stopped before every sandbox finished"
        coord.barrier.abort()
        if self.proc is not None:  # local
            self.proc.abort_all("test stopping")
            self.proc.drain(self.proc.max_life_s())
            return
        granted = self._granted_workers()
        if complete or not granted:
            return
        for worker_id in granted:
            self.runner.send_message(MSG_ABORT, {"reason": coord.interrupted_reason}, client_id=worker_id)
        timeout = self.settings.create_timeout_s + self.settings.late_create_window_s + \
            self.settings.commands_per_life * (self.settings.command_timeout_s + 1) + self.settings.destroy_budget_s + 15
        deadline = time.time() + timeout
        log.info("[phase] waiting up to %.0f s for %d workers to destroy their sandboxes and send their last results",
                 timeout, len(granted))
        while time.time() < deadline and not coord.collector.complete:
            live = {c.id for c in self.runner.clients.all if c.state != "missing"}
            if all(w in coord.final_from or w not in live for w in granted):
                break
            gevent.sleep(0.1)

    def on_test_stop(self, environment, **kw) -> None:
        if self.is_worker:
            if self.proc is not None:
                self.proc.abort_all("test stopped")
                self.proc.drain(self.proc.max_life_s())
                self.proc.close()
                self.proc = None
            if self._reporter is not None:
                self._reporter.kill(block=False)
            return
        self.finalize()

    def finalize(self) -> None:
        coord = self.coordinator
        if coord is None or coord.finalized:
            return
        if self._master_sampler is not None:
            self._master_sampler.stop()
        from loadgen.report.stats import compute

        thresholds = {"min_success_rate": self.settings.min_success_rate}
        try:
            self.exit_code = coord.finalize(compute, thresholds)
        except Exception:  # noqa: BLE001 - a crash here must still be a failed exit
            log.exception("finalizing the run failed")
            self.exit_code = EXIT_INCOMPLETE
        if self.proc is not None:
            self.proc.close()
        self.environment.process_exit_code = self.exit_code

    def on_quitting(self, environment, **kw) -> None:
        if self.is_worker:
            if self.proc is not None:
                self.proc.abort_all("worker quitting")
                self.proc.drain(self.proc.max_life_s())
            return
        coord = self.coordinator
        if coord is not None and not coord.finalized:
            if coord.interrupted_reason is None and not coord.collector.complete:
                coord.interrupted_reason = "interrupted (signal or quit)"
            if self.runner.state not in ("stopped", "init"):
                self.runner.stop()  # fires test_stopping / test_stop: holds end, sandboxes are destroyed
            self.finalize()
        if self.exit_code is not None:
            environment.process_exit_code = self.exit_code


def refuse(message: str) -> None:
    """Refuse to start: one line per reason, exit code 2, before any sandbox exists."""
    for line in message.splitlines():
        sys.stderr.write(f"loadgen: error: {line}\n")
    sys.stderr.flush()
    os._exit(2)  # Locust would otherwise carry on


events.init_command_line_parser.add_listener(add_arguments)


@events.init.add_listener
def on_init(environment, **kw) -> None:
    if environment.parsed_options is None:
        return
    options = environment.parsed_options
    try:
        controller = Controller(environment)
        missing = controller.provider_class.missing_env()
        if missing:
            raise MissingCredentials(controller.provider_name, missing)
        http2_setting()  # a LOADGEN_WIRE_HTTP2 it cannot read is refused here, not at the first create
        starts_now = bool(getattr(options, "headless", False) or getattr(options, "autostart", False))
        if not controller.is_worker:
            users = getattr(options, "num_users", None) if starts_now else None
            if users:
                controller.print_cost(int(users))  # the worst case, before anything (--max-cost is a refusal)
            errors = refusals(options, controller.provider_name, users)
            errors = errors or sink_refusals(options)
            if errors:
                raise ValueError("\n".join(errors))
    except (ValueError, KeyError, MissingCredentials) as exc:
        refuse(exc.args[0] if isinstance(exc, KeyError) else str(exc))
    embedded = embedded_emulator()
    if embedded is not None and not controller.is_worker:
        try:
            embedded.start(options.emulator_profile, options.emulator_url, processes_for(options))
        except Exception as exc:  # noqa: BLE001 - nothing is created without it
            refuse(f"the emulator could not start: {exc}")
    environment.loadgen = controller
    if environment.web_ui is not None and not controller.is_worker:
        from loadgen.engine import webui

        webui.install(environment, controller)
