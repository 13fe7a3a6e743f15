"""The leaderboard of several runs (`loadgen report --compare`), and its score.

A single number is what a reader asks for first when five providers are
benchmarked side by side, so the score exists; its formula is printed next
to every table that shows it, so nobody has to trust it blindly:

    score = 100 x success_rate x 1 s / (1 s + 0.5 x TTI_p50 + 0.3 x TTI_p95 + 0.2 x TTI_p99)

with TTI percentiles in seconds. A perfect provider (every sandbox succeeds,
instantly interactive) scores 100; one whose weighted TTI is 1 s scores at
most 50. Success rate multiplies, so failures cannot be bought back by
speed; the tail percentiles weigh in, so a fast median with a slow tail
ranks below a steady provider. It is absolute (a run's score does not
depend on which other runs are in the table).

The daily benchmark's tables (``loadgen leaderboard``) use the published
score instead, with a 10 s ceiling and 5% trimming; ``loadgen.report.scoring``
says why the two are kept apart.
"""

from __future__ import annotations

from html import escape
from typing import Optional

from loadgen.report.render import CSS, PERCENTILE_RULE, md_table, num, pct, seconds

WEIGHTS = (0.5, 0.3, 0.2)  # p50, p95, p99
SCORE_FORMULA = (
    "score = 100 x success_rate x 1 s / (1 s + 0.5 x TTI p50 + 0.3 x TTI p95 + 0.2 x TTI p99), "
    "TTI percentiles in seconds; higher is better, 100 is the maximum"
)


def score(success_rate: Optional[float], p50_ms: Optional[float], p95_ms: Optional[float],
          p99_ms: Optional[float]) -> Optional[float]:
    """The composite score (see module doc); None when the run has no TTI at all."""
    if success_rate is None or p50_ms is None or p95_ms is None or p99_ms is None:
        return None
    weighted_s = (WEIGHTS[0] * p50_ms + WEIGHTS[1] * p95_ms + WEIGHTS[2] * p99_ms) / 1000.0
    return round(100.0 * success_rate / (1.0 + weighted_s), 2)


def leaderboard(runs: list) -> list:
    """One row per run, best score first (runs without a score last, by success rate)."""
    rows = []
    for r in runs:
        s = r["stats"]
        tti = s["tti_distribution"]
        rows.append(
            {
                "label": r["label"],
                "name": r.get("name"),
                "target": r.get("target") or "-",
                "provider": r["provider"],
                "run_id": r["run_id"],
                "attempted": s["sandboxes_attempted"],
                "success_rate": s["success_rate"],
                "tti_p50_ms": tti["p50"],
                "tti_p95_ms": tti["p95"],
                "tti_p99_ms": tti["p99"],
                "peak_concurrent": s["concurrency_summary"]["peak_concurrent"],
                "generator_saturated": s["generator_saturated"],
                "score": score(s["success_rate"], tti["p50"], tti["p95"], tti["p99"]),
            }
        )
    rows.sort(key=lambda x: (x["score"] is None, -(x["score"] or 0), -(x["success_rate"] or 0), x["label"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def _cells(row: dict) -> list:
    return [
        row["rank"],
        row["name"] or "-",
        row["provider"],
        row["target"],
        row["run_id"],
        num(row["attempted"]),
        pct(row["success_rate"]),
        seconds(row["tti_p50_ms"]),
        seconds(row["tti_p95_ms"]),
        seconds(row["tti_p99_ms"]),
        num(row["score"], 2),
        "SATURATED" if row["generator_saturated"] else "ok",
    ]


HEAD = ["#", "label", "provider", "target", "run", "attempted", "success rate", "TTI p50", "TTI p95", "TTI p99",
        "score", "generator"]


def render_compare_md(board: list) -> str:
    md = ["## loadgen: provider leaderboard", ""]
    md += md_table(HEAD, [_cells(r) for r in board], left=5, text_cols=(11,))
    md += ["", f"Score: `{SCORE_FORMULA}`.", ""]
    if any(r["generator_saturated"] for r in board):
        md += ["> [!WARNING]", "> The load generator was saturated in a run marked SATURATED: its figures are "
               "upper bounds and its rank may be unfair.", ""]
    md += [f"<sub>{PERCENTILE_RULE}</sub>", ""]
    return "\n".join(md)


def render_compare_html(board: list, svg: str) -> str:
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         "<title>loadgen: provider leaderboard</title>", f"<style>{CSS}</style></head><body><main>",
         "<h1>loadgen: provider leaderboard</h1>",
         f'<p class="sub">{len(board)} runs, ranked by score.</p>']
    if any(r["generator_saturated"] for r in board):
        h.append('<div class="warn">The load generator was saturated in a run marked SATURATED: its figures are '
                 "upper bounds and its rank may be unfair.</div>")
    left = ' class="l"'
    h.append("<table><thead><tr>")
    text = (1, 2, 3, 4, 11)
    h += [f"<th{left if i in text else ''}>{escape(c)}</th>" for i, c in enumerate(HEAD)]
    h.append("</tr></thead><tbody>")
    for row in board:
        cells = "".join(f"<td{left if i in text else ''}>{escape(str(c))}</td>" for i, c in enumerate(_cells(row)))
        h.append(f"<tr>{cells}</tr>")
    h.append("</tbody></table>")
    h.append(f"<p><strong>Score:</strong> <code>{escape(SCORE_FORMULA)}</code>.</p>")
    h.append(f"<figure>{svg}</figure>")
    h.append(f'<p class="defs">{escape(PERCENTILE_RULE)}</p>')
    h.append("</main></body></html>")
    return "\n".join(h)
