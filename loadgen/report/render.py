"""One run's report as a self-contained HTML page and as Markdown.

The HTML page inlines its SVGs and its CSS so it can be mailed, attached to
a CI run or opened from object storage with no other file beside it. The
Markdown is for a GitHub job summary or a PR comment, where images cannot be
inlined; it carries the numbers a reviewer compares. Both read the figures
of loadgen.report.stats.compute, never their own.
"""

from __future__ import annotations

from html import escape
from typing import Optional

from loadgen.report import human, stats
from loadgen.result import FAILURE_CLASSES, PHASES, STATUSES

DISTRIBUTIONS = (
    ("latency_distribution", "create latency"),
    ("first_command_distribution", "first command (node -v)"),
    ("tti_distribution", "TTI (create + first command)"),
    ("liveness_distribution", "liveness (node -v after hold)"),
    ("destroy_distribution", "destroy"),
)
DIST_COLUMNS = ("count", "min", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99_9", "max", "mean")

PERCENTILE_RULE = (
    "Percentiles are nearest rank: over n sorted values, the p-th percentile is the value at rank "
    "ceil(p/100 x n) (1-based; p = 0 is the minimum). Every figure is an observed value. Distributions "
    "cover only phases that succeeded."
)
CONCURRENCY_RULE = (
    "A sandbox exists from create_ended_at to destroy_ended_at (closed interval; a sandbox whose destroy "
    "never ended counts until the run's end). A request is in flight from a phase's start to its end "
    "(half-open). Timelines give, for each second since the run's start, the maximum count within it."
)
SATURATION_RULE = (
    f"A process is saturated when its hub lag p99 (nearest rank over its per-second p99 samples) exceeds "
    f"{stats.HUB_LAG_P99_LIMIT_MS:.0f} ms, or its CPU is at or above {stats.CPU_BUSY_PERCENT:.0f}% of one core in "
    f"more than {stats.CPU_BUSY_FRACTION_LIMIT * 100:.0f}% of its samples."
)

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d1f23}
main{max-width:1060px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:34px 0 10px;padding-bottom:4px;border-bottom:1px solid #e3e5e8}
.sub{color:#5a5f66;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;margin:16px 0}
.card{border:1px solid #e3e5e8;border-radius:8px;padding:10px 14px;background:#fafbfc}
.card .k{font-size:12px;color:#5a5f66;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:600;margin-top:4px}
.warn{border-left:6px solid #c8342f;background:#fdecea;padding:12px 16px;margin:14px 0;border-radius:4px}
.info{border-left:6px solid #8a8f98;background:#f0f1f3;padding:12px 16px;margin:14px 0;border-radius:4px}
.ok{border-left:6px solid #2e9d5b;background:#eaf6ee;padding:12px 16px;margin:14px 0;border-radius:4px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #e3e5e8;padding:4px 8px;text-align:right}
th{background:#f3f4f6;font-weight:600}
td.l,th.l{text-align:left}
td.msg{text-align:left;max-width:520px;word-break:break-word}
figure{margin:14px 0}
figure svg{max-width:100%;height:auto;border:1px solid #eceef1;border-radius:6px}
.defs{color:#5a5f66;font-size:13px}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
"""


# ---------------------------------------------------------------------------
# Formatting


def num(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def pct(x: Optional[float]) -> str:
    return human.percent(x)


def seconds(ms: Optional[float]) -> str:
    """A duration in milliseconds, in the unit that fits its size (8.8 ms, 1.23 s)."""
    return human.duration_ms(ms)


def headline(run: dict) -> list:
    """(label, value) pairs shown first in both formats."""
    s = run["stats"]
    c = s["concurrency_summary"]
    tti = s["tti_distribution"]
    return [
        ("attempted", num(s["sandboxes_attempted"])),
        ("success rate", pct(s["success_rate"])),
        ("TTI p50", seconds(tti["p50"])),
        ("TTI p99", seconds(tti["p99"])),
        ("peak concurrent", num(c["peak_concurrent"])),
        ("leaks", num(s["leak_count"])),
    ]


def health_notes(run: dict) -> list:
    """(kind, text) pairs said before any figure: whether the figures are the provider's.

    kind is warn, info or ok. In order: sandboxes the generator itself failed
    (left out of the success rate); the generator's load, which for wire-timed
    records shifts when requests went out but not what they measured; an
    emulator target's own overload."""
    s = run["stats"]
    notes = []
    failed = s.get("generator_failures") or 0
    if failed:
        notes.append(("warn", f"Measurement compromised: the generator itself failed {failed} sandboxes (failure "
                              "class generator_error: out of descriptors, ports or buffers, or a request it could not "
                              "send in time). They are left out of the provider's success rate."))
    share = s.get("generator_share") or {}
    wire = share.get("wire_timed") or 0
    held = share.get("held_ms") or {}
    if wire and wire == s.get("sandboxes_attempted"):
        busy = f" It was busy ({s['generator_saturated_reason']})." if s.get("generator_saturated") else ""
        notes.append((
            "ok" if not failed else "info",
            "Every latency here was taken on the wire (the request's first byte, the kernel's stamp of the answer) "
            "and every timeout judged there, so the figures are the provider's however busy the generator was."
            f"{busy} The generator held each sandbox's phases for p50 {seconds(held.get('p50'))}, "
            f"p99 {seconds(held.get('p99'))} (worst {seconds((share.get('worst') or {}).get('held_ms'))}): "
            f"{share.get('delayed', 0)} of {share.get('sandboxes_measured', 0)} sandboxes went out more than "
            f"{share.get('limit_ms', 10):g} ms later than the lifecycle asked."))
    elif s["generator_saturated"]:
        notes.append((
            "warn",
            "The load generator was saturated, so part of the latency measured here is the generator's own "
            f"delay; treat the figures as upper bounds. Why: {s['generator_saturated_reason']}."))
    elif not s["metrics_summary"]["samples"]:
        notes.append(("info", "No generator health samples (metrics.jsonl missing or empty): it cannot be told "
                              "whether the load generator was the bottleneck."))
    else:
        notes.append(("ok", "The load generator was not saturated: the figures measure the provider."))
    emulator = (run.get("meta") or {}).get("emulator") or {}
    if emulator.get("overloaded"):
        overload = emulator.get("overload") or {}
        notes.append(("warn", "The emulator standing in for the provider was overloaded (loop lag max "
                              f"{(overload.get('loop_lag_ms') or {}).get('max', 0):.0f} ms, listen overflows "
                              f"{overload.get('listen_overflows', 0)}): slow or failed sandboxes may be its doing."))
    return notes


def time_to_live_rows(s: dict) -> list:
    t = s["time_to_live"]
    rows = [(f"to {label} live ({num(t[f'live_{key}'])})", seconds(t[f"to_{key}_ms"]))
            for key, label in (("50pct", "50%"), ("90pct", "90%"), ("99pct", "99%"), ("100pct", "100%"))]
    rows += [(f"to the peak ({num(t['peak_live'])})", seconds(t["to_peak_ms"])),
             ("peak live during the hold", num(t["peak_live_during_hold"]))]
    return rows


def schedule_rows(s: dict, meta: dict) -> list:
    sched = meta.get("schedule") or {}
    late = s["lateness_distribution"]
    mode = sched.get("mode") or "-"
    if mode == "staggered":
        mode += f", {num(sched.get('stagger_ms'))} ms apart"
    elif mode == "arrival":
        mode += f", {sched.get('arrival_rate_per_s')} creates/s" + (
            f" after a {sched.get('ramp_s')} s ramp" if sched.get("ramp_s") else "")
    elif mode == "sequential" and (sched.get("concurrency") or 1) > 1:
        mode += f", {sched['concurrency']} at a time"
    return [("mode", mode),
            ("start lateness p50 / p99 / max", f"{seconds(late['p50'])} / {seconds(late['p99'])} / "
                                                f"{seconds(late['max'])}"),
            ("behind schedule (p99 > 100 ms)", "YES" if s.get("behind_schedule") else "no"),
            ("wall clock", seconds(s.get("wall_clock_ms"))),
            ("time to first ready", seconds(s.get("time_to_first_ready_ms")))]


def cost_rows(meta: dict) -> list:
    """What the run cost (meta.json's ``cost``: it needs the price, so a report cannot recompute it)."""
    cost = meta.get("cost")
    if not cost:
        return []
    price = cost.get("price") or {}
    usd = cost.get("usd")
    worst = (cost.get("estimate") or {}).get("usd")
    rows = [("sandbox-seconds", human.number(cost.get("sandbox_seconds"))),
            ("cost", "-" if usd is None else f"${usd:,.4f}"),
            ("worst case (before the run)", "-" if worst is None else f"${worst:,.2f}"),
            ("price", ("unknown" if price.get("usd_per_sandbox_second") is None
                       else f"${price['usd_per_sandbox_second']:.8f}") + f" per sandbox-second, {price.get('provider')} "
                      f"{price.get('size')}, as of {price.get('as_of')}")]
    if cost.get("leaked"):
        rows.append(("leaked, counted at their lifetime", num(cost["leaked"])))
    if cost.get("target") == "emulator":
        rows.append(("billed", "nothing: the run used the emulator"))
    return rows


# ---------------------------------------------------------------------------
# HTML


def _table(head: list, rows: list, left: int = 1, text_cols: tuple = (), msg_col: Optional[int] = None) -> str:
    """An HTML table: the first `left` columns and `text_cols` left-aligned, numbers right-aligned."""
    def cls(i: int, cell: str = "td") -> str:
        if i == msg_col:
            return ' class="msg"' if cell == "td" else ' class="l"'
        return ' class="l"' if i < left or i in text_cols else ""

    out = ["<table><thead><tr>"]
    out += [f"<th{cls(i, 'th')}>{escape(str(h))}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure(svg: str) -> str:
    # the SVG's XML prologue-free text is valid inline HTML5
    return f"<figure>{svg}</figure>"


# Identity fields in the order a reader looks for them; the rest follow alphabetically.
IDENTITY_ORDER = (
    "run_id", "label", "provider", "target", "emulator_profile", "status", "exit_code", "complete",
    "interrupted_reason", "error_message", "started_at", "ended_at", "users_requested", "sandboxes_dispatched",
    "records_received", "missing_count", "duplicate_deliveries", "commit_sha", "host", "loadgen_version",
    "group_id", "shard_index", "shard_count", "tigris_prefix", "barrier", "sinks", "thresholds", "clock_offsets",
)
# Options given in seconds (by how their names end), shown as durations.
SECONDS_OPTIONS = ("_timeout", "_window", "hold", "_spread", "_lifetime")
# Locust's own options worth showing beside loadgen's.
LOCUST_OPTIONS = ("num_users", "spawn_rate", "run_time", "headless", "autostart", "master", "expect_workers",
                  "locustfile")


def _barrier_text(b: dict) -> str:
    if not b.get("released"):
        return f"never released ({b.get('arrived')}/{b.get('expected')} arrived; deadline {human.duration_s(b.get('deadline_s'))})"
    return (f"released by {b.get('reason')} after {human.duration_s(b.get('waited_s'))}; "
            f"{human.count(b.get('arrived'))}/{human.count(b.get('expected'))} finished phase 1; "
            f"deadline {human.duration_s(b.get('deadline_s'))}")


def _identity_value(key: str, v) -> str:
    if key == "barrier" and isinstance(v, dict):
        return _barrier_text(v)
    if key == "sinks" and isinstance(v, dict):
        return "; ".join(f"{name}: {'complete' if r.get('complete') else 'INCOMPLETE'}"
                         + (f" ({r['detail']})" if r.get("detail") else "") for name, r in v.items()) or "none"
    if key == "clock_offsets" and isinstance(v, dict):
        return "; ".join(f"{w}: {human.duration_s(o.get('offset_s'))} ± {human.duration_s(o.get('uncertainty_s'))}"
                         if isinstance(o, dict) else f"{w}: {human.value(o)}" for w, o in v.items()) or "none"
    if key == "thresholds" and isinstance(v, dict):
        return "; ".join(f"{name}: required {human.value(t.get('required'))}, actual {human.value(t.get('actual'))}, "
                         f"{'passed' if t.get('passed') else 'MISSED'}" for name, t in v.items()) or "none"
    if key == "target":
        return "the real service" if v == "provider" else human.value(v)
    return human.value(v, key)


def _identity_rows(meta: dict) -> list:
    skip = set(stats.compute([]).keys()) | {"options", "missing_sandbox_idx"}
    keys = [k for k in IDENTITY_ORDER if k in meta] + sorted(k for k in meta if k not in IDENTITY_ORDER and k not in skip)
    return [(k, _identity_value(k, meta[k])) for k in keys if k not in skip]


def _option_rows(meta: dict) -> list:
    """(option as typed, value) for loadgen's options, then a few of Locust's, with human values."""
    from loadgen.engine.options import option_names

    options = meta.get("options") or {}
    rows = []
    for name in [*option_names(), *LOCUST_OPTIONS]:
        if name not in options:
            continue
        v = options[name]
        if name == "sandbox_lifetime" and not v:
            text = "default (outlasts the run)"
        elif name.endswith(SECONDS_OPTIONS) and isinstance(v, (int, float)) and not isinstance(v, bool):
            text = human.duration_s(v)
        else:
            text = human.value(v, name)
        flag = {"num_users": "-u/--users", "spawn_rate": "-r/--spawn-rate"}.get(name, f"--{name.replace('_', '-')}")
        rows.append((flag, text))
    return rows


def render_html(run: dict, svgs: dict) -> str:
    s = run["stats"]
    c = s["concurrency_summary"]
    notes = health_notes(run)
    h = []
    h.append("<!DOCTYPE html>")
    h.append('<html lang="en"><head><meta charset="utf-8">')
    h.append('<meta name="viewport" content="width=device-width, initial-scale=1">')
    h.append(f"<title>loadgen report: {escape(run['label'])}</title>")
    h.append(f"<style>{CSS}</style></head><body><main>")
    h.append(f"<h1>loadgen report: {escape(run['provider'])}" + (f" on {escape(run['target'])}" if run.get("target") else "")
             + (f" &middot; {escape(run['name'])}" if run.get("name") else "") + "</h1>")
    h.append(
        f'<p class="sub">run <code>{escape(str(run["run_id"]))}</code> &middot; '
        f"{escape(str(c['run_started_at'] or '-'))} to {escape(str(c['run_ended_at'] or '-'))} &middot; "
        f"{escape(seconds(c['total_run_ms']))}</p>"
    )
    for kind, note in notes:
        h.append(f'<div class="{kind}"><strong>Generator health.</strong> {escape(note)}</div>')
    h.append('<div class="cards">')
    for k, v in headline(run):
        h.append(f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>')
    h.append("</div>")

    h.append("<h2>Status along submission order</h2>")
    h.append(_figure(svgs["status_strip"]))
    h.append(_table(["status", "sandboxes", "share"], [
        (st, num(n), pct(n / s["sandboxes_attempted"]) if s["sandboxes_attempted"] else "-")
        for st, n in s["status_histogram"].items()
    ]))

    h.append("<h2>Latency distributions (ms)</h2>")
    rows = []
    for key, label in DISTRIBUTIONS:
        d = s[key]
        rows.append([label] + [num(d[col], 1) if col != "count" else num(d[col]) for col in DIST_COLUMNS])
    h.append(_table(["phase"] + [col.replace("_", ".") for col in DIST_COLUMNS], rows))
    h.append(_figure(svgs["latency_hist"]))
    h.append(_figure(svgs["latency_cdf"]))
    h.append(_figure(svgs["tti_cdf"]))

    h.append("<h2>Failures</h2>")
    h.append("<p>Failure class of every non-success record (destroy failures are counted under destroy only).</p>")
    h.append(_table(["failure class", "non-success records"],
                    [(k, num(v)) for k, v in s["failure_class_histogram"].items()]))
    fbp = s["failure_class_by_phase"]
    h.append(_table(["phase"] + list(FAILURE_CLASSES) + ["total"],
                    [[p] + [num(fbp[p][fc]) for fc in FAILURE_CLASSES] + [num(sum(fbp[p].values()))] for p in PHASES]))
    if s["top_errors"]:
        h.append("<h3>Most frequent errors</h3>")
        h.append(_table(
            ["phase", "count", "class", "type", "HTTP", "message"],
            [(e["phase"], num(e["count"]), e["failure_class"] or "-", e["error_type"] or "-",
              e["http_status"] if e["http_status"] is not None else "-", e["message"] or "(no message)")
             for e in s["top_errors"]],
            text_cols=(2, 3), msg_col=5,
        ))
    else:
        h.append("<p>No errors.</p>")

    h.append("<h2>Submission segments</h2>")
    h.append("<p>Records in sandbox_idx (submission) order, split into the first 25%, the middle 50% and the "
             "last 25%; create latency in ms.</p>")
    h.append(_table(
        ["segment", "sandbox_idx", "count", "success", "success rate", "p50", "p95", "p99", "max"],
        [(g["segment"], f"{g['idx_from']}..{g['idx_to']}" if g["count"] else "-", num(g["count"]),
          num(g["success"]), pct(g["success_rate"]), num(g["p50"]), num(g["p95"]), num(g["p99"]), num(g["max"]))
         for g in s["submission_segments"]],
    ))

    h.append("<h2>Concurrency</h2>")
    h.append(_table(["figure", "value"], [
        ("peak concurrent sandboxes", num(c["peak_concurrent"])),
        ("time of peak (since run start)", seconds(c["peak_t_ms"])),
        ("mean concurrent (time-weighted)", num(c["mean_concurrent"], 1)),
        ("peak requests in flight", num(c["peak_in_flight"])),
        ("total run time", seconds(c["total_run_ms"])),
        ("sandboxes whose destroy never ended (counted to run end)", num(c["open_ended"])),
    ]))
    h.append(_figure(svgs["concurrency"]))
    h.append("<h3>Time to N live</h3>")
    h.append("<p>From the first create's start until that many sandboxes existed at once (of all that ever "
             "existed), by the same exact sweep.</p>")
    h.append(_table(["figure", "value"], time_to_live_rows(s)))

    h.append("<h2>Schedule</h2>")
    h.append(_table(["figure", "value"], schedule_rows(s, run["meta"])))
    if s.get("behind_schedule"):
        h.append(f'<div class="warn">Creates started behind their schedule: '
                 f'{escape(str(s["lateness_summary"]["reason"]))}.</div>')

    if cost_rows(run["meta"]):
        h.append("<h2>Cost</h2>")
        h.append(_table(["figure", "value"], cost_rows(run["meta"])))

    h.append("<h2>Generator health</h2>")
    h.append(f'<div class="{kind}">{escape(note)}</div>')
    procs = s["metrics_summary"]["processes"]
    if procs:
        h.append(_table(
            ["process", "samples", "CPU max %", "CPU busy", "hub lag p99 ms", "hub lag max ms", "RSS max MB",
             "open fds max", "saturated"],
            [(name, num(p["samples"]), num(p["cpu_percent_max"]), pct(p["cpu_busy_fraction"]),
              num(p["hub_lag_p99_ms"]), num(p["hub_lag_max_ms"]),
              num(p["rss_bytes_max"] / 1e6 if p["rss_bytes_max"] is not None else None),
              num(p["open_fds_max"]), "YES" if p["saturated"] else "no")
             for name, p in procs.items()],
        ))
        h.append(_figure(svgs["hub_lag"]))
        h.append(_figure(svgs["cpu"]))
    h.append(f'<p class="defs">{escape(SATURATION_RULE)}</p>')

    h.append("<h2>Leaks</h2>")
    leaks = s["leaks"]
    if leaks:
        h.append(f'<div class="warn">{len(leaks):,} created sandboxes were not confirmed destroyed; '
                 "<code>loadgen reap</code> can find them by sandbox_id.</div>")
        h.append(_table(["sandbox_idx", "sandbox_id", "worker", "destroy class", "message"],
                        [(x["sandbox_idx"], x["sandbox_id"], x["worker_id"] or "-",
                          x["destroy_failure_class"] or "-", x["destroy_error_message"] or "(destroy did not finish)")
                         for x in leaks[:50]], left=0, text_cols=(1, 2, 3), msg_col=4))
        if len(leaks) > 50:
            h.append(f"<p>... and {len(leaks) - 50:,} more (see stats.json).</p>")
    else:
        h.append('<div class="ok">Every created sandbox was destroyed.</div>')

    ident = _identity_rows(run["meta"])
    if ident:
        h.append("<h2>Run identity and options</h2>")
        h.append(_table(["field", "value"], ident, left=2))
    option_rows = _option_rows(run["meta"])
    if option_rows:
        h.append(_table(["option", "value"], option_rows, left=2))

    h.append("<h2>Definitions</h2>")
    h.append(f'<p class="defs">{escape(PERCENTILE_RULE)}</p>')
    h.append(f'<p class="defs">{escape(CONCURRENCY_RULE)}</p>')
    h.append(f'<p class="defs">Statistics schema version {s["schema_version"]}; recomputed from raw.jsonl by '
             "<code>loadgen report</code>.</p>")
    h.append("</main></body></html>")
    return "\n".join(h)


# ---------------------------------------------------------------------------
# Markdown


def md_cell(v) -> str:
    """A table cell: pipes and HTML escaped (error text reaches PR comments), newlines flattened, long text cut."""
    text = str(v).replace("\n", " ").replace("\r", " ")
    text = text if len(text) <= 160 else text[:157] + "..."
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_table(head: list, rows: list, left: int = 1, text_cols: tuple = ()) -> list:
    """GitHub table: the first `left` columns and `text_cols` left-aligned, numbers right-aligned."""
    out = ["| " + " | ".join(md_cell(h) for h in head) + " |",
           "|" + "|".join(" --- " if i < left or i in text_cols else " ---: " for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return out


def render_md(run: dict) -> str:
    s = run["stats"]
    c = s["concurrency_summary"]
    notes = health_notes(run)
    md = [f"## loadgen: {run['provider']}" + (f" on {run['target']}" if run.get("target") else "")
          + (f" ({run['name']})" if run.get("name") else "")
          + f" `{run['run_id']}`", ""]
    for kind, note in notes:
        if kind == "warn":
            md += [f"> [!WARNING]\n> {note}", ""]
        elif kind == "info":
            md += [f"> [!NOTE]\n> {note}", ""]
        else:
            md += [f"> {note}", ""]
    md += md_table([k for k, _ in headline(run)], [[v for _, v in headline(run)]])
    md += ["", "**Statuses**", ""]
    md += md_table(list(STATUSES), [[num(s["status_histogram"].get(k, 0)) for k in STATUSES]])
    md += ["", "**Latency (ms)**", ""]
    cols = ("count", "p50", "p90", "p95", "p99", "p99_9", "max", "mean")
    md += md_table(["phase"] + [x.replace("_", ".") for x in cols],
                   [[label] + [num(s[key][x]) if x != "count" else num(s[key][x]) for x in cols]
                    for key, label in DISTRIBUTIONS])
    md += ["", "**Failure classes by phase**", ""]
    fbp = s["failure_class_by_phase"]
    md += md_table(["phase"] + list(FAILURE_CLASSES), [[p] + [num(fbp[p][fc]) for fc in FAILURE_CLASSES] for p in PHASES])
    md += ["", "**Submission segments** (create latency, ms)", ""]
    md += md_table(["segment", "count", "success rate", "p50", "p95", "p99", "max"],
                   [[g["segment"], num(g["count"]), pct(g["success_rate"]), num(g["p50"]), num(g["p95"]),
                     num(g["p99"]), num(g["max"])] for g in s["submission_segments"]])
    md += ["", f"**Concurrency**: peak {num(c['peak_concurrent'])} sandboxes at {seconds(c['peak_t_ms'])}, "
               f"mean {num(c['mean_concurrent'])}, peak requests in flight {num(c['peak_in_flight'])}, "
               f"run time {seconds(c['total_run_ms'])}"
               + (f", {num(c['open_ended'])} destroys never ended (counted to run end)" if c["open_ended"] else "")
               + "."]
    ttl = dict(time_to_live_rows(s))
    md += ["", "**Time to N live** (from the first create): " + ", ".join(f"{k} {v}" for k, v in ttl.items()) + "."]
    md += ["", "**Schedule**: " + ", ".join(f"{k} {v}" for k, v in schedule_rows(s, run["meta"])) + "."]
    if cost_rows(run["meta"]):
        md += ["", "**Cost**: " + ", ".join(f"{k} {v}" for k, v in cost_rows(run["meta"])) + "."]
    if s["top_errors"]:
        md += ["", "**Top errors**", ""]
        md += md_table(["phase", "count", "class", "message"], text_cols=(2, 3), rows=
                       [[e["phase"], num(e["count"]), e["failure_class"] or "-", e["message"] or "(no message)"]
                        for e in s["top_errors"][:5]])
    md += ["", f"**Generator health**: {note}"]
    if s["leak_count"]:
        md += ["", f"**Leaks**: {s['leak_count']:,} created sandboxes not confirmed destroyed (run `loadgen reap`)."]
    md += ["", f"<sub>{PERCENTILE_RULE}</sub>", ""]
    return "\n".join(md)
