"""The leaderboard as people read it: one SVG table per mode, and Markdown.

The SVG follows the daily benchmark's published layout: 1,200 px wide;
columns #, Provider, Score, Median, P95, P99, Status (ok/total); the median
green up to 1 s, amber up to 2 s, red beyond; ranks 1-3 on gold, silver and
bronze; a footer with N, each provider's wall clock and time to first ready,
the formula, and when the table was last updated. The storage table has its
own columns (download and upload times, throughput). Plain SVG 1.1 text like
the report's charts (loadgen.report.charts): it opens alone in a browser,
in a README or in a CI artifact.
"""

from __future__ import annotations

from html import escape
from typing import Callable, Optional

from loadgen.report.charts import FONT
from loadgen.report.render import md_table
from loadgen.report.scoring import MIB, STORAGE_FORMULA, STORAGE_SIZES_MIB, TTI_FORMULA

WIDTH = 1200
MARGIN = 40
ROW_H = 44
HEAD_H = 38
TITLE_H = 78
FOOT_LINE_H = 19
FOOT_CHARS = 172  # characters per footer line at 12.5 px

MEDIAN_COLOURS = ((1000.0, "#1a7f37"), (2000.0, "#b26b00"), (float("inf"), "#c8342f"))  # green, amber, red
RANK_COLOURS = {1: "#e8b923", 2: "#b8bcc4", 3: "#c8834a"}  # gold, silver, bronze
MUTED = "#6a7078"

MODE_TITLES = {
    "sequential": "Sequential: time to interactive, {n} iterations one at a time",
    "staggered": "Staggered: time to interactive, {n} sandboxes started {stagger} apart",
    "burst": "Burst: time to interactive, {n} sandboxes at once",
    "storage": "Storage: upload, download and delete of {sizes} MiB objects, {n} iterations",
}


def label(entry: dict) -> str:
    """The provider as a table names it; results from the emulator say so."""
    return entry["provider"] + (" (emulated)" if entry.get("target") == "emulator" else "")


def formula(mode: str) -> str:
    return STORAGE_FORMULA if mode == "storage" else TTI_FORMULA


def ms_text(ms: Optional[float]) -> str:
    if ms is None:
        return "–"
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def seconds_text(ms: Optional[float]) -> str:
    return "–" if ms is None else f"{ms / 1000:,.2f} s"


def median_colour(ms: Optional[float]) -> Optional[str]:
    if ms is None:
        return None
    return next(colour for limit, colour in MEDIAN_COLOURS if ms <= limit)


def status_text(e: dict) -> str:
    if e["status"] == "skipped":
        return "skipped"
    if e["status"] == "failed" and not e.get("iterations"):
        return "failed"
    return f"{e.get('ok', 0)}/{e.get('iterations', 0)}" + (" failed" if e["status"] == "failed" else "")


def _ok(e: dict, value):
    return value if e["status"] == "ok" else None


# (header, width px, align, cell text, text colour or None)
Column = tuple[str, int, str, Callable[[dict], str], Callable[[dict], Optional[str]]]
_NONE: Callable[[dict], Optional[str]] = lambda e: None  # noqa: E731

TTI_COLUMNS: list = [
    ("#", 70, "middle", lambda e: str(e["rank"]), _NONE),
    ("Provider", 330, "start", label, _NONE),
    ("Score", 130, "end", lambda e: f"{e['score']:.1f}", _NONE),
    ("Median", 150, "end", lambda e: ms_text(_ok(e, e.get("median_ms"))),
     lambda e: median_colour(_ok(e, e.get("median_ms")))),
    ("P95", 150, "end", lambda e: ms_text(_ok(e, e.get("p95_ms"))), _NONE),
    ("P99", 150, "end", lambda e: ms_text(_ok(e, e.get("p99_ms"))), _NONE),
    ("Status", 140, "end", status_text, lambda e: None if e["status"] == "ok" else MUTED),
]
STORAGE_COLUMNS: list = [
    ("#", 60, "middle", lambda e: str(e["rank"]), _NONE),
    ("Provider", 220, "start", label, _NONE),
    ("Score", 100, "end", lambda e: f"{e['score']:.1f}", _NONE),
    ("Download p50", 130, "end", lambda e: ms_text(_ok(e, e.get("download_median_ms"))), _NONE),
    ("Download p95", 125, "end", lambda e: ms_text(_ok(e, e.get("download_p95_ms"))), _NONE),
    ("Upload p50", 120, "end", lambda e: ms_text(_ok(e, e.get("upload_median_ms"))), _NONE),
    ("Upload p95", 115, "end", lambda e: ms_text(_ok(e, e.get("upload_p95_ms"))), _NONE),
    ("Throughput", 125, "end", lambda e: "–" if _ok(e, e.get("throughput_median_mbps")) is None
     else f"{e['throughput_median_mbps']:,.0f} Mbps", _NONE),
    ("Status", 125, "end", status_text, lambda e: None if e["status"] == "ok" else MUTED),
]


def columns(mode: str) -> list:
    return STORAGE_COLUMNS if mode == "storage" else TTI_COLUMNS


def _n_text(board: list) -> str:
    ns = sorted({e["iterations"] for e in board if e["status"] != "skipped" and e.get("iterations")})
    if not ns:
        return "N = 0"
    return f"N = {ns[0]}" if len(ns) == 1 else f"N = {ns[0]}–{ns[-1]}"


def title(doc: dict) -> str:
    board = doc["entries"]
    n = _n_text(board)[4:]
    stagger = next((e.get("stagger_ms") for e in board if e.get("stagger_ms")), None)
    return MODE_TITLES[doc["mode"]].format(n=n, stagger=f"{stagger:g} ms" if stagger else "evenly",
                                           sizes=sizes_text(board))


def sizes_text(board: list) -> str:
    """The storage objects' sizes the entries were scored on: "1, 4, 10 and 16" (MiB)."""
    mib = sorted({it["size_bytes"] / MIB for e in board for it in e.get("storage_iterations") or ()})
    names = [f"{x:g}" for x in mib] or [f"{x:g}" for x in STORAGE_SIZES_MIB]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def footer_parts(doc: dict) -> list:
    """The footer's paragraphs: N with each provider's wall clock and first ready; why a provider has
    no score; the formula; the update time."""
    board = doc["entries"]
    first = f"{_n_text(board)} per provider."
    if doc["mode"] != "storage":
        clocks = [f"{label(e)} {seconds_text(e.get('wall_clock_ms'))} / {seconds_text(e.get('first_ready_ms'))}"
                  for e in board if e["status"] != "skipped" and e.get("wall_clock_ms") is not None]
        if clocks:
            first += " Wall clock / first ready: " + "; ".join(clocks) + "."
    parts = [first]
    notes = [f"{label(e)}: {e['reason']}." for e in board if e["status"] != "ok" and e.get("reason")]
    if any(e.get("target") == "emulator" for e in board):
        notes.append("(emulated): measured against loadgen's emulator, not the provider.")
    if notes:
        parts.append(" ".join(notes))
    parts.append(doc["formula"][0].upper() + doc["formula"][1:] + ".")
    parts.append(f"Updated {doc['updated_at'][:16].replace('T', ' ')} UTC.")
    return parts


def _wrap(parts: list, width: int) -> list:
    lines = []
    for part in parts:
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return lines


def svg(doc: dict) -> str:
    board, cols = doc["entries"], columns(doc["mode"])
    foot = _wrap(footer_parts(doc), FOOT_CHARS)
    table_top = TITLE_H
    rows_top = table_top + HEAD_H
    foot_top = rows_top + ROW_H * max(1, len(board)) + 26
    height = foot_top + FOOT_LINE_H * len(foot) + 24
    inner = WIDTH - 2 * MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" {FONT}>',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           f'<text x="{MARGIN}" y="40" font-size="24" font-weight="700" fill="#1d1f23">{escape(title(doc))}</text>',
           f'<text x="{MARGIN}" y="64" font-size="14" fill="{MUTED}">{escape(doc["date"])}, ranked by score</text>',
           f'<rect x="{MARGIN}" y="{table_top}" width="{inner}" height="{HEAD_H}" rx="6" fill="#f0f2f5"/>']

    def anchor_x(x: int, width: int, align: str) -> int:
        return x + 14 if align == "start" else x + width - 14 if align == "end" else x + width // 2

    x = MARGIN
    for head, width, align, _, _ in cols:
        out.append(f'<text x="{anchor_x(x, width, align)}" y="{table_top + 25}" font-size="14" font-weight="600" '
                   f'fill="#3a3f46" text-anchor="{align}">{escape(head)}</text>')
        x += width
    for i, e in enumerate(board):
        y = rows_top + i * ROW_H
        if i % 2:
            out.append(f'<rect x="{MARGIN}" y="{y}" width="{inner}" height="{ROW_H}" fill="#fafbfc"/>')
        out.append(f'<line x1="{MARGIN}" y1="{y + ROW_H}" x2="{MARGIN + inner}" y2="{y + ROW_H}" stroke="#e3e5e8"/>')
        x = MARGIN
        for j, (_, width, align, text, colour) in enumerate(cols):
            cx = anchor_x(x, width, align)
            fill, weight = colour(e) or "#1d1f23", "400"
            if j == 0 and e["status"] == "ok" and e["rank"] in RANK_COLOURS:
                out.append(f'<circle cx="{cx}" cy="{y + ROW_H // 2}" r="15" fill="{RANK_COLOURS[e["rank"]]}"/>')
                weight = "700"
            if colour(e) is not None and j != len(cols) - 1 or j == 2:
                weight = "700"
            out.append(f'<text x="{cx}" y="{y + ROW_H // 2 + 6}" font-size="17" font-weight="{weight}" '
                       f'fill="{fill}" text-anchor="{align}">{escape(text(e))}</text>')
            x += width
    if not board:
        out.append(f'<text x="{WIDTH // 2}" y="{rows_top + 28}" font-size="16" fill="{MUTED}" '
                   f'text-anchor="middle">no results</text>')
    for k, line in enumerate(foot):
        out.append(f'<text x="{MARGIN}" y="{foot_top + k * FOOT_LINE_H}" font-size="12.5" fill="{MUTED}">'
                   f'{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def markdown(doc: dict) -> str:
    cols = columns(doc["mode"])
    rows = [[text(e) for _, _, _, text, _ in cols] for e in doc["entries"]]
    md = [f"## {title(doc)}", "", f"{doc['date']}, ranked by score.", ""]
    md += md_table([c[0] for c in cols], rows, left=2, text_cols=(len(cols) - 1,))
    md.append("")
    for part in footer_parts(doc):
        md += [f"`{part[:-1]}`." if part[:-1].lower() == doc["formula"].lower() else part, ""]
    return "\n".join(md)
