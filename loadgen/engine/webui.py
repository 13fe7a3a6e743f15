"""The Sandboxes tab of the Locust web UI, on the master (or the single process).

Locust's request table shows calls; it cannot show what a burst benchmark is
about: how many sandboxes exist right now, how many are held at the barrier,
whether the barrier has released, how each sandbox ended along submission
order, and whether the generator itself kept up. The tab is a live page of
its own (``/loadgen/panel``: counts, barrier, generator health, three charts
redrawn while the run goes on, then the final summary and a link to the HTML
report), shown inside Locust's UI under a "Sandboxes" tab: Locust's
``extended_tabs`` adds the tab, and a small script injected into Locust's
page (``webui_static/tab.js``) lays the panel over the tab's body while the
tab is selected. The page also gets a banner naming the run's target (an
emulator, or the real, billed service) above the start form.

Routes: ``/loadgen/sandboxes`` (everything the panel shows, as JSON),
``/loadgen/panel``, ``/loadgen/concurrency.svg``, ``/loadgen/status.svg``,
``/loadgen/latency.svg`` and ``/loadgen/report/`` (the finished run's HTML
report, rendered on first request).

Why Locust's own RPS chart reads 0 during a burst: Locust computes the
current RPS over the seconds between 12 and 2 seconds before the *last*
request, and never before the stats' start. A burst's creates all complete
in its first second or two, and during the hold no request completes, so
that window stays empty. The tab's concurrency chart (sandboxes alive,
requests in flight) is the picture to read instead.
"""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path

from flask import Response, jsonify, request, send_from_directory
from werkzeug.datastructures import ImmutableMultiDict

from loadgen.engine.collector import STATUSES
from loadgen.engine.webform import guard_start, host_text, target_line

TAB_KEY = "sandboxes"
STATIC = Path(__file__).with_name("webui_static")
SWARM_ENDPOINT = "locust.swarm"
INDEX_ENDPOINT = "locust.index"
_report_lock = threading.Lock()


def _health(coord) -> list[dict]:
    from loadgen.report.generator import CPU_BUSY_PERCENT, HUB_LAG_P99_LIMIT_MS

    rows = []
    for name, sample in sorted(coord.health.items()):
        lag = sample.get("hub_lag_ms") or {}
        cpu = sample.get("cpu_percent")
        rows.append({
            "process": name,
            "cpu_percent": None if cpu is None else round(cpu),
            "hub_lag_p99_ms": lag.get("p99"),
            "hub_lag_max_ms": lag.get("max"),
            "rss_mib": round((sample.get("rss_bytes") or 0) / 2**20, 1),
            "open_fds": sample.get("open_fds"),
            "busy": bool((cpu or 0) >= CPU_BUSY_PERCENT or (lag.get("p99") or 0) > HUB_LAG_P99_LIMIT_MS),
        })
    return rows


def snapshot(controller) -> dict:
    """Everything the tab shows, from the current run's coordinator (and the target before any run)."""
    target = {**controller.target(), "line": target_line(controller)}
    coord = getattr(controller, "coordinator", None)
    if coord is None:
        return {"run_id": None, "state": "no run yet", "target": target}
    c = coord.collector
    reports = coord.live_reports()
    point = coord.live_point() if not coord.finalized else None
    barrier = coord.barrier
    expected = coord.expected()
    meta = coord.meta or {}
    snap = {
        "run_id": coord.run_id,
        "label": coord.identity.get("label"),
        "state": "finished" if coord.finalized else "running",
        "target": target,
        "dispatched": expected,
        "created": sum(r.get("created", 0) for r in reports),
        "live": point["live"] if point else 0,
        # sampled while the run goes on; once it has ended, the exact sweep over the records
        "peak_live": ((meta.get("concurrency_summary") or {}).get("peak_concurrent") or 0) if coord.finalized
        else coord.peak_live,
        "in_flight": point["in_flight"] if point else 0,
        "held": sum(r.get("held", 0) for r in reports),
        "phase1_done": barrier.arrived,
        "done": c.received if c else 0,
        "by_status": {k: (c.by_status.get(k, 0) if c else 0) for k in STATUSES},
        "status_order": list(STATUSES),
        "barrier": {"released": barrier.released, "reason": barrier.reason, "arrived": barrier.arrived,
                    "expected": expected, "timeout_s": barrier.deadline_s,
                    "waited_s": None if not barrier.released else round(barrier.released_at - barrier.started_at, 1)},
        "waiting_for": coord.waiting_for(),
        "health": _health(coord),
        "timeline": list(coord.timeline) + ([point] if point else []),
        "waiting": sum(r.get("waiting", 0) for r in reports),
        "schedule": coord.schedule.describe(coord.users_requested, coord.t0),
        # the exact figures exist once the run is over (meta.json's)
        "time_to_live": (coord.meta or {}).get("time_to_live"),
        "cost": (coord.meta or {}).get("cost"),
    }
    if coord.finalized:
        from loadgen.engine.coordinator import summary_lines

        snap.update(status=meta.get("status"), exit_code=coord.exit_code, complete=meta.get("complete"),
                    summary=[line.removeprefix("[summary] ") for line in summary_lines(meta, coord.run_path)],
                    report_url="loadgen/report/report.html")
    return snap


def concurrency_chart(controller) -> str:
    from loadgen.report.charts import lines_svg

    timeline = snapshot(controller).get("timeline") or []
    return lines_svg(
        [("sandboxes alive", [(p["t_s"], p["live"]) for p in timeline]),
         ("requests in flight", [(p["t_s"], p["in_flight"]) for p in timeline])],
        "Sandboxes alive and requests in flight", "seconds since the start", "count")


def status_chart(controller) -> str:
    from loadgen.report.charts import status_strip_svg

    coord = getattr(controller, "coordinator", None)
    if coord is None or coord.collector is None:
        return status_strip_svg([], "Status along submission order")
    return status_strip_svg(coord.collector.live.statuses(coord.expected()),
                            "Status along submission order (grey: life not over yet)")


def latency_chart(controller) -> str:
    from loadgen.report.charts import cdf_svg

    coord = getattr(controller, "coordinator", None)
    live = coord.collector.live if coord is not None and coord.collector is not None else None
    return cdf_svg([("create", list(live.create_ms) if live else []), ("TTI", list(live.tti_ms) if live else [])],
                   "Create and time to interactive so far", "milliseconds")


def report_dir(controller):
    """The finished run's report folder, rendered the first time it is asked for."""
    coord = getattr(controller, "coordinator", None)
    if coord is None or not coord.finalized:
        return None
    out = coord.run_path / "report"
    with _report_lock:
        if not (out / "report.html").exists():
            from loadgen.report.command import report_run

            report_run(coord.run_path, out)
    return out


def _inject(html: str, controller) -> str:
    """Locust's page plus the target banner and the tab script."""
    real = controller.target()["kind"] != "emulator"
    colours = "background:#b3261e;color:#fff" if real else "background:#e8f3ec;color:#1d4d2f"
    banner = (f'<div id="loadgen-target" data-target="{"provider" if real else "emulator"}" '
              f'style="{colours};font:14px -apple-system,Segoe UI,Helvetica,Arial,sans-serif;'
              f'padding:8px 16px;text-align:center">Target: {escape(target_line(controller))}</div>')
    script = '<script src="./loadgen/static/tab.js"></script>'
    return html.replace("<body>", "<body>" + banner, 1).replace("</body>", script + "</body>", 1)


def install(environment, controller) -> None:
    web_ui = environment.web_ui
    if web_ui is None:
        return
    environment.host = host_text(controller)
    web_ui.template_args["extended_tabs"] = [{"title": "Sandboxes", "key": TAB_KEY}]
    app = web_ui.app
    locust_swarm = app.view_functions[SWARM_ENDPOINT]

    def swarm():
        refusal, handled = guard_start(controller, request.form)
        if refusal:
            return jsonify({"success": False, "message": f"loadgen refused to start: {refusal}",
                            "host": environment.host})
        # Locust's handler gets the form without loadgen's fields (already applied above).
        form = request._get_current_object()  # noqa: SLF001 - werkzeug caches the parsed form here
        form.__dict__["form"] = ImmutableMultiDict([(k, v) for k, v in request.form.items(multi=True)
                                                    if k not in handled])
        return locust_swarm()

    app.view_functions[SWARM_ENDPOINT] = web_ui.auth_required_if_enabled(swarm)

    @app.after_request
    def add_banner(response):
        if request.endpoint == INDEX_ENDPOINT and response.mimetype == "text/html" and not response.direct_passthrough:
            response.set_data(_inject(response.get_data(as_text=True), controller))
        return response

    charts = {"concurrency": concurrency_chart, "status": status_chart, "latency": latency_chart}

    @app.route("/loadgen/sandboxes")
    @web_ui.auth_required_if_enabled
    def sandboxes_json():
        return jsonify(snapshot(controller))

    @app.route("/loadgen/panel")
    @web_ui.auth_required_if_enabled
    def panel():
        return send_from_directory(STATIC, "panel.html")

    @app.route("/loadgen/static/<path:name>")
    def static_file(name):
        return send_from_directory(STATIC, name)

    @app.route("/loadgen/<name>.svg")
    @web_ui.auth_required_if_enabled
    def chart(name):
        if name not in charts:
            return Response("no such chart", status=404)
        return Response(charts[name](controller), mimetype="image/svg+xml",
                        headers={"Cache-Control": "no-store"})

    @app.route("/loadgen/report/<path:name>")
    @web_ui.auth_required_if_enabled
    def report(name):
        folder = report_dir(controller)
        if folder is None:
            return Response("the run has not ended yet", status=404)
        return send_from_directory(folder, name)
