"""The headline figures of a run's row: taken from meta.json, else counted in the table.

meta.json is the master's exact statistics over all results, so it wins.
A key it lacks (an older meta, a crashed master, a replay of a directory with
no meta.json) is computed from the rows already in sandbox_results; after a
complete copy those are the same records, so the answer is the same.

The definitions are loadgen.report.stats.compute's, so both paths agree (a test
checks): failure classes count non-success records, a missing class as
``other``. Latency percentiles are nearest-rank (the value at rank ceil(p/100 * n)) over
``latency_ms`` of the sandboxes whose create succeeded (status other than
``failed``): the time a provider took to hand out a sandbox, not the time it
took to fail. Computed with integer arithmetic so the rank is exact.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# runs / run_groups columns carrying a run's figures, in schema order.
FIGURE_COLUMNS = (
    "sandboxes_attempted",
    "sandboxes_succeeded",
    "partials",
    "readiness_failures",
    "timeouts",
    "http_errors",
    "network_errors",
    "other_errors",
    "p50_latency_ms",
    "p99_latency_ms",
    "failures",
    "leaks",
    # from meta.json only (time to N live and cost need the exact sweep and the price; a table-only
    # fallback leaves them null)
    "time_to_50pct_live_ms",
    "time_to_90pct_live_ms",
    "time_to_99pct_live_ms",
    "time_to_100pct_live_ms",
    "time_to_peak_live_ms",
    "peak_live",
    "peak_live_during_hold",
    "sandbox_seconds",
    "cost_usd",
    "cost_estimate_usd",
)

# column -> (meta key, key inside it or None)
META_SOURCES = {
    "sandboxes_attempted": ("sandboxes_attempted", None),
    "sandboxes_succeeded": ("status_histogram", "success"),
    "partials": ("status_histogram", "partial"),
    "readiness_failures": ("status_histogram", "readiness_failed"),
    "timeouts": ("failure_class_histogram", "timeout"),
    "http_errors": ("failure_class_histogram", "http_error"),
    "network_errors": ("failure_class_histogram", "network_error"),
    "other_errors": ("failure_class_histogram", "other"),
    "p50_latency_ms": ("latency_distribution", "p50"),
    "p99_latency_ms": ("latency_distribution", "p99"),
    "failures": ("status_histogram", "failed"),
    "leaks": ("leak_count", None),
    "time_to_50pct_live_ms": ("time_to_live", "to_50pct_ms"),
    "time_to_90pct_live_ms": ("time_to_live", "to_90pct_ms"),
    "time_to_99pct_live_ms": ("time_to_live", "to_99pct_ms"),
    "time_to_100pct_live_ms": ("time_to_live", "to_100pct_ms"),
    "time_to_peak_live_ms": ("time_to_live", "to_peak_ms"),
    "peak_live": ("time_to_live", "peak_live"),
    "peak_live_during_hold": ("time_to_live", "peak_live_during_hold"),
    "sandbox_seconds": ("cost", "sandbox_seconds"),
    "cost_usd": ("cost", "usd"),
    "cost_estimate_usd": ("cost", "estimate", "usd"),
}


def _number(value: Any):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def figures_from_meta(meta: Mapping | None) -> dict:
    """The figures meta.json states; a key it lacks (or holds no number for) is absent."""
    out = {}
    meta = meta or {}
    for column, (key, *path) in META_SOURCES.items():
        value = meta.get(key)
        for sub in path:
            if sub is not None:
                value = value.get(sub) if isinstance(value, Mapping) else None
        value = _number(value)
        if value is not None:
            out[column] = value
    return out


TABLE_FIGURES_SQL = """
WITH r AS (
    SELECT status, failure_class, latency_ms, sandbox_id, destroy_ok, destroy_retries
      FROM sandbox_results WHERE run_id = %(run_id)s
), l AS (
    SELECT latency_ms,
           row_number() OVER (ORDER BY latency_ms) AS rk,
           count(*) OVER () AS n
      FROM r
     WHERE status <> 'failed' AND latency_ms IS NOT NULL
)
SELECT (SELECT count(*) FROM r),
       (SELECT count(*) FROM r WHERE status = 'success'),
       (SELECT count(*) FROM r WHERE status = 'partial'),
       (SELECT count(*) FROM r WHERE status = 'readiness_failed'),
       (SELECT count(*) FROM r WHERE status <> 'success' AND failure_class = 'timeout'),
       (SELECT count(*) FROM r WHERE status <> 'success' AND failure_class = 'http_error'),
       (SELECT count(*) FROM r WHERE status <> 'success' AND failure_class = 'network_error'),
       (SELECT count(*) FROM r WHERE status <> 'success' AND COALESCE(failure_class, 'other') = 'other'),
       (SELECT latency_ms FROM l WHERE rk = (50 * n + 99) / 100),
       (SELECT latency_ms FROM l WHERE rk = (99 * n + 99) / 100),
       (SELECT count(*) FROM r WHERE status = 'failed'),
       (SELECT count(*) FROM r WHERE sandbox_id IS NOT NULL AND destroy_ok IS NOT TRUE
                                 AND NOT COALESCE(destroy_retries @> '[{"ok": true}]', false))
"""


def figures_from_table(cur, run_id: str) -> dict:
    """The counts and latency percentiles, from the rows (the FIGURE_COLUMNS before time_to_50pct_live_ms)."""
    cur.execute(TABLE_FIGURES_SQL, {"run_id": run_id})
    row = cur.fetchone()
    return dict(zip(FIGURE_COLUMNS, row))


def merge_figures(from_meta: Mapping, from_table: Mapping) -> dict:
    return {c: from_meta[c] if c in from_meta else from_table.get(c) for c in FIGURE_COLUMNS}
