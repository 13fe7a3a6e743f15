"""The Sandboxes tab of the Locust web UI, on the master (or the single process).

Locust's request table shows calls; it cannot show what a burst benchmark is
about: how many sandboxes exist right now, how many are held at the barrier,
whether the barrier has released, and how concurrency evolved. The tab uses
Locust's own extension points (``extended_tabs`` / ``extended_tables`` and an
``extended_stats`` entry in ``/stats/requests``), and two routes serve the
same data as JSON and the timeline as a picture.
"""

from __future__ import annotations

import json

from flask import Response, jsonify, request

TAB_KEY = "sandboxes"


def snapshot(controller) -> dict:
    """Everything the tab shows, from the current run's coordinator."""
    coord = getattr(controller, "coordinator", None)
    if coord is None:
        return {"run_id": None, "state": "no run yet"}
    c = coord.collector
    reports = list(coord.reports.values())
    if controller.proc is not None:  # local mode: the one process reports directly
        reports = [controller.proc.report()]
    barrier = coord.barrier
    return {
        "run_id": coord.run_id,
        "state": "finished" if coord.finalized else "running",
        "dispatched": coord.expected(),
        "created": sum(r.get("created", 0) for r in reports),
        "live": sum(r.get("live", 0) for r in reports),
        "in_flight": sum(r.get("in_flight", 0) for r in reports),
        "held": sum(r.get("held", 0) for r in reports),
        "phase1_done": barrier.arrived,
        "done": c.received if c else 0,
        "by_status": dict(c.by_status) if c else {},
        "barrier": {"released": barrier.released, "reason": barrier.reason,
                    "waited_s": None if not barrier.released else round(barrier.released_at - barrier.started_at, 3)},
        "timeline": list(coord.timeline),
        "waiting": sum(r.get("waiting", 0) for r in reports),
        "schedule": coord.schedule.describe(coord.users_requested, coord.t0),
        # the exact figures exist once the run is over (meta.json's)
        "time_to_live": (coord.meta or {}).get("time_to_live"),
        "cost": (coord.meta or {}).get("cost"),
    }


def table_rows(snap: dict) -> list[dict]:
    if snap.get("run_id") is None:
        return [{"name": "run", "value": snap["state"]}]
    barrier = snap["barrier"]
    rows = [
        ("run", f"{snap['run_id']} ({snap['state']})"),
        ("sandboxes dispatched", snap["dispatched"]),
        ("created so far", snap["created"]),
        ("alive now", snap["live"]),
        ("requests in flight", snap["in_flight"]),
        ("held at the barrier", snap["held"]),
        ("finished phase 1 (create + readiness)", snap["phase1_done"]),
        ("lives over (results received)", snap["done"]),
    ]
    rows += [(f"status: {k}", v) for k, v in sorted(snap["by_status"].items())]
    rows.append(("barrier", f"released by {barrier['reason']} after {barrier['waited_s']} s"
                 if barrier["released"] else "holding"))
    rows += schedule_and_figure_rows(snap)
    if snap["timeline"]:
        peak = max(p["live"] for p in snap["timeline"])
        rows.append(("peak alive (1 s samples)", peak))
        rows.append(("concurrency timeline", "/loadgen/concurrency.svg"))
    return [{"name": k, "value": v} for k, v in rows]


def schedule_and_figure_rows(snap: dict) -> list:
    """The run's schedule, and after the run its time to N live and its cost."""
    schedule = snap.get("schedule") or {}
    rows = [("schedule", schedule.get("mode") or "-"),
            ("waiting for their scheduled start", snap.get("waiting", 0))]
    ttl = snap.get("time_to_live")
    if ttl:
        for key, label in (("50pct", "50%"), ("90pct", "90%"), ("99pct", "99%"), ("100pct", "100%")):
            ms = ttl.get(f"to_{key}_ms")
            rows.append((f"time to {label} live", "never" if ms is None else f"{ms / 1000:.3f} s"))
        rows.append(("peak live during the hold", ttl.get("peak_live_during_hold")))
    cost = snap.get("cost")
    if cost:
        usd = cost.get("usd")
        rows.append(("sandbox-seconds", round(cost.get("sandbox_seconds") or 0, 1)))
        rows.append(("cost", "no price known" if usd is None else f"${usd:,.4f}"))
    return rows


def install(environment, controller) -> None:
    web_ui = environment.web_ui
    if web_ui is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "Sandboxes", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{
        "key": TAB_KEY,
        "structure": [{"key": "name", "title": "Measure"}, {"key": "value", "title": "Value"}],
    }]
    app = web_ui.app

    @app.after_request
    def add_sandboxes(response):
        if request.path != "/stats/requests" or not response.is_json:
            return response
        body = response.get_json()
        body.setdefault("extended_stats", []).append({"key": TAB_KEY, "data": table_rows(snapshot(controller))})
        response.set_data(json.dumps(body))
        return response

    @app.route("/loadgen/sandboxes")
    def sandboxes_json():
        return jsonify(snapshot(controller))

    @app.route("/loadgen/concurrency.svg")
    def concurrency_svg():
        from loadgen.report.charts import lines_svg

        timeline = snapshot(controller).get("timeline") or []
        svg = lines_svg(
            [("sandboxes alive", [(p["t_s"], p["live"]) for p in timeline]),
             ("requests in flight", [(p["t_s"], p["in_flight"]) for p in timeline])],
            "Concurrency (live)", "seconds since start", "count")
        return Response(svg, mimetype="image/svg+xml")
