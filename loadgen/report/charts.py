"""Hand-written SVG charts for the run report.

Reports are read in a browser, in a GitHub artifact or pasted into an issue,
so the charts are plain SVG 1.1 strings: no plotting library to install on a
load-generator VM, nothing to render server-side, and each file opens alone.
Every chart has a title, labelled axes with units and a legend where more
than one thing is drawn. Big inputs are thinned before drawing (quantiles
for CDFs, per-column buckets for strips, bucket maxima for time series) so a
100k-sandbox run gives files of tens of kilobytes, and thinning never hides
a peak.
"""

from __future__ import annotations

import math
from html import escape
from typing import Optional, Sequence

W, H = 760, 330
ML, MR, MT, MB = 72, 24, 44, 58  # margins: left, right, top, bottom

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
STATUS_COLOURS = {
    "success": "#2e9d5b",
    "partial": "#e8b923",
    "readiness_failed": "#e0742b",
    "failed": "#c8342f",
}
UNKNOWN_COLOUR = "#9a9a9a"
MARKERS_UP_TO = 20  # a series of at most this many points gets a dot on each
FONT = "font-family=\"-apple-system,Segoe UI,Helvetica,Arial,sans-serif\""


# ---------------------------------------------------------------------------
# Numbers and axes


def fmt(v: Optional[float]) -> str:
    """Short human number: 0.25, 12.5, 950, 1.2k, 35k, 1.5M."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 1000:
        return f"{v / 1e3:.2g}k" if v % 100 == 0 else f"{v:,.0f}"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 8) -> list:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    k = 0
    while True:
        t = first + k * step
        if t > hi + step * 1e-9:
            break
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 10))
        k += 1
    return ticks


def log_ticks(lo: float, hi: float) -> list:
    """1-2-5 ticks per decade over [lo, hi] (lo > 0)."""
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10**e
            if lo <= t <= hi:
                out.append(t)
    return out


class Axis:
    """Maps data values to pixels, linearly or on a log scale."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log
        if log:
            self._a, self._b = math.log10(lo), math.log10(hi)
        else:
            self._a, self._b = lo, hi

    def __call__(self, v: float) -> float:
        x = math.log10(max(v, self.lo)) if self.log else v
        return self.p0 + (x - self._a) / (self._b - self._a) * (self.p1 - self.p0)

    def ticks(self) -> list:
        return log_ticks(self.lo, self.hi) if self.log else nice_ticks(self.lo, self.hi)


def _open(title: str, height: int = H) -> list:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
        f'role="img" {FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{W}" height="{height}" fill="#ffffff"/>',
        f'<text x="{W / 2:.1f}" y="24" text-anchor="middle" font-size="15" font-weight="600" fill="#222">'
        f"{escape(title)}</text>",
    ]


def _axes(out: list, xa: Axis, ya: Axis, xlabel: str, ylabel: str, yfmt=fmt, xfmt=fmt) -> None:
    x0, x1 = ML, W - MR
    y0, y1 = H - MB, MT
    for t in ya.ticks():
        y = ya(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{escape(yfmt(t))}</text>')
    for t in xa.ticks():
        x = xa(t)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 5}" stroke="#666"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 18}" text-anchor="middle" fill="#444">{escape(xfmt(t))}</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#444"/>')
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{H - 14}" text-anchor="middle" fill="#222">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="16" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" fill="#222" '
        f'transform="rotate(-90 16 {(y0 + y1) / 2:.1f})">{escape(ylabel)}</text>'
    )


LEGEND_ROW = 16


def _legend_layout(items: Sequence[tuple], limit: int = 12) -> list:
    """Legend entries (label, colour, x, row) flowed left to right in rows under the plot."""
    shown = list(items[:limit])
    if len(items) > limit:
        shown.append((f"... and {len(items) - limit} more", "#ffffff"))
    placed, x, row = [], float(ML), 0
    for label, colour in shown:
        width = 24 + len(label) * 6.6
        if x + width > W - MR and x > ML:
            x, row = float(ML), row + 1
        placed.append((label, colour, x, row))
        x += width
    return placed


def legend_height(items: Sequence[tuple]) -> int:
    """Extra height under the plot that the legend of ``items`` needs (0 without items)."""
    layout = _legend_layout(items)
    return (max(r for *_, r in layout) + 1) * LEGEND_ROW + 6 if layout else 0


def _legend(out: list, items: Sequence[tuple]) -> None:
    """The legend, under the x-axis label: never on the data."""
    for label, colour, x, row in _legend_layout(items):
        y = H + row * LEGEND_ROW
        out.append(f'<rect x="{x:.0f}" y="{y + 2}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14:.0f}" y="{y + 11}" fill="#222">{escape(label)}</text>')


def _empty(title: str, message: str) -> str:
    out = _open(title)
    out.append(
        f'<text x="{W / 2:.1f}" y="{H / 2:.1f}" text-anchor="middle" fill="#777" font-size="14">'
        f"{escape(message)}</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Charts


def histogram_svg(values: Sequence[float], title: str, xlabel: str, ylabel: str = "sandboxes", bins: int = 50) -> str:
    """Bar histogram; a long tail (max > 3 x p99) goes into one overflow bar so the body stays readable."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return _empty(title, "no values")
    n = len(xs)
    lo, hi = xs[0], xs[-1]
    p99 = xs[max(math.ceil(0.99 * n) - 1, 0)]
    cut = hi > 3 * p99 and p99 > lo
    top = p99 if cut else hi
    width = (top - lo) / bins if top > lo else 1.0
    counts = [0] * bins
    overflow = 0
    for v in xs:
        if cut and v > top:
            overflow += 1
            continue
        k = int((v - lo) / width) if width else 0
        counts[min(k, bins - 1)] += 1
    nbars = bins + (1 if overflow else 0)
    xa = Axis(lo, top + (width * 2 if overflow else 0), ML, W - MR)
    ya = Axis(0, max(counts + [overflow]) * 1.08, H - MB, MT)
    overflow_legend = [(f"> p99 ({fmt(top)} .. {fmt(hi)}): {overflow}", PALETTE[1])] if overflow else []
    out = _open(title, H + legend_height(overflow_legend))
    _axes(out, xa, ya, xlabel, ylabel)
    y0 = ya(0)
    for k, c in enumerate(counts):
        if not c:
            continue
        x = xa(lo + k * width)
        w = max(xa(lo + (k + 1) * width) - x - 1, 1)
        out.append(f'<rect x="{x:.1f}" y="{ya(c):.1f}" width="{w:.1f}" height="{y0 - ya(c):.1f}" fill="{PALETTE[0]}">'
                   f"<title>{escape(fmt(lo + k * width))}-{escape(fmt(lo + (k + 1) * width))}: {c}</title></rect>")
    if overflow:
        x = xa(top + width * 0.5)
        w = max(xa(top + width * 1.5) - x, 2)
        out.append(f'<rect x="{x:.1f}" y="{ya(overflow):.1f}" width="{w:.1f}" height="{y0 - ya(overflow):.1f}" '
                   f'fill="{PALETTE[1]}"><title>&gt; {escape(fmt(top))}: {overflow}</title></rect>')
        _legend(out, overflow_legend)
    out.append(
        f'<text x="{W - MR}" y="{MT - 6}" text-anchor="end" fill="#666" font-size="11">'
        f"n = {n:,}; bin width {escape(fmt(width))}{'; ' + str(nbars) + ' bars' if overflow else ''}</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


def _cdf_points(xs: Sequence[float], points: int = 400) -> list:
    """(value, fraction <= value) at about `points` evenly spaced ranks, always including both ends."""
    n = len(xs)
    if n <= points:
        ranks = range(n)
    else:
        ranks = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    return [(xs[i], (i + 1) / n) for i in ranks]


def cdf_svg(series: Sequence[tuple], title: str, xlabel: str, log_x: Optional[bool] = None) -> str:
    """Empirical CDFs, one line per (label, values). Log x when the values span more than 50x."""
    data = [(label, sorted(v for v in vals if v is not None)) for label, vals in series]
    data = [(label, xs) for label, xs in data if xs]
    if not data:
        return _empty(title, "no values")
    lo = min(xs[0] for _, xs in data)
    hi = max(xs[-1] for _, xs in data)
    if log_x is None:
        log_x = lo > 0 and hi / lo > 50
    if log_x and lo <= 0:
        log_x = False
    xa = Axis(lo, hi, ML, W - MR, log=log_x)
    ya = Axis(0.0, 1.0, H - MB, MT)
    legend = []
    for i, (label, xs) in enumerate(data):
        p50 = xs[max(math.ceil(0.5 * len(xs)) - 1, 0)]
        p99 = xs[max(math.ceil(0.99 * len(xs)) - 1, 0)]
        legend.append((f"{label}  (n={len(xs):,}, p50 {fmt(p50)}, p99 {fmt(p99)})", PALETTE[i % len(PALETTE)]))
    out = _open(title, H + legend_height(legend))
    _axes(out, xa, ya, xlabel + (" (log scale)" if log_x else ""), "fraction of sandboxes <= x",
          yfmt=lambda v: f"{v * 100:.0f}%")
    for i, (label, xs) in enumerate(data):
        colour = PALETTE[i % len(PALETTE)]
        pts = _cdf_points(xs)
        d = [f"M{xa(pts[0][0]):.1f},{ya(0):.1f}"]
        prev_y = ya(0)
        for v, f in pts:
            x = xa(v)
            d.append(f"L{x:.1f},{prev_y:.1f}L{x:.1f},{ya(f):.1f}")
            prev_y = ya(f)
        out.append(f'<path d="{"".join(d)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if len(xs) <= MARKERS_UP_TO:
            out += [f'<circle cx="{xa(v):.1f}" cy="{ya(f):.1f}" r="3" fill="{colour}"/>' for v, f in pts]
    for q in (0.5, 0.99):
        out.append(f'<line x1="{ML}" y1="{ya(q):.1f}" x2="{W - MR}" y2="{ya(q):.1f}" stroke="#999" '
                   f'stroke-dasharray="4 4"/>')
        out.append(f'<text x="{W - MR - 2}" y="{ya(q) - 3:.1f}" text-anchor="end" fill="#777" font-size="10">'
                   f"p{q * 100:.0f}</text>")
    _legend(out, legend)
    out.append("</svg>")
    return "\n".join(out)


def _thin(points: Sequence[tuple], limit: int = 800) -> list:
    """At most `limit` points, keeping each bucket's maximum so spikes survive."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / limit)
    out = []
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        out.append(max(chunk, key=lambda p: p[1]))
    return out


def lines_svg(
    series: Sequence[tuple],
    title: str,
    xlabel: str,
    ylabel: str,
    hline: Optional[tuple] = None,
    y_max: Optional[float] = None,
    step: Optional[float] = None,
) -> str:
    """Time series, one line per (label, [(x, y), ...]); hline = (y, label) draws a dashed threshold.

    ``step`` (in x units) draws each point as a level held for that long, as a per-second maximum is,
    instead of a line to the next point (which would draw a slope no sample saw). A series with few
    points gets a marker on each, so a single sample still shows."""
    data = [(label, sorted(p for p in pts if p[1] is not None)) for label, pts in series]
    data = [(label, pts) for label, pts in data if pts]
    if not data:
        return _empty(title, "no samples")
    xlo = min(p[0][0] for _, p in data)
    xhi = max(p[-1][0] for _, p in data) + (step or 0)
    ytop = max(max(y for _, y in p) for _, p in data)
    if hline:
        ytop = max(ytop, hline[0])
    ytop = y_max if y_max is not None else (ytop * 1.08 or 1.0)
    xa = Axis(xlo, xhi if xhi > xlo else xlo + 1, ML, W - MR)
    ya = Axis(0, ytop, H - MB, MT)
    legend = [(label, PALETTE[i % len(PALETTE)]) for i, (label, _) in enumerate(data)]
    out = _open(title, H + legend_height(legend))
    _axes(out, xa, ya, xlabel, ylabel)
    for i, (label, pts) in enumerate(data):
        colour = PALETTE[i % len(PALETTE)]
        pts = _thin(pts)
        if step:
            d = "".join(("M" if k == 0 else "V") + (f"{xa(x):.1f},{ya(min(y, ytop)):.1f}" if k == 0 else
                                                    f"{ya(min(y, ytop)):.1f}") + f"H{xa(x + step):.1f}"
                        for k, (x, y) in enumerate(pts))
        else:
            d = "".join(("M" if k == 0 else "L") + f"{xa(x):.1f},{ya(min(y, ytop)):.1f}" for k, (x, y) in enumerate(pts))
        out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round"/>')
        if len(pts) <= MARKERS_UP_TO:
            out += [f'<circle cx="{xa(x + (step or 0) / 2):.1f}" cy="{ya(min(y, ytop)):.1f}" r="3" fill="{colour}"/>'
                    for x, y in pts]
    if hline:
        y = ya(hline[0])
        out.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#c8342f" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{W - MR - 2}" y="{y - 4:.1f}" text-anchor="end" fill="#c8342f" font-size="11">'
                   f"{escape(hline[1])}</text>")
    _legend(out, legend)
    out.append("</svg>")
    return "\n".join(out)


def status_strip_svg(statuses: Sequence[str], title: str, columns: int = 640) -> str:
    """Status along submission order: each column is a run of consecutive sandbox_idx, stacked by status share."""
    n = len(statuses)
    if not n:
        return _empty(title, "no sandboxes")
    height = 210
    top, bar_h = MT + 8, 90
    cols = min(columns, n)
    x0, x1 = ML, W - MR
    colw = (x1 - x0) / cols
    order = list(STATUS_COLOURS)
    out = _open(title, height)
    out.append('<g shape-rendering="crispEdges">')  # no anti-aliased seams between columns
    totals = {}
    for c in range(cols):
        a, b = c * n // cols, (c + 1) * n // cols
        counts = {}
        for s in statuses[a:b]:
            counts[s] = counts.get(s, 0) + 1
        for s, k in counts.items():
            totals[s] = totals.get(s, 0) + k
        y = float(top)
        for s in order + sorted(k for k in counts if k not in STATUS_COLOURS):
            k = counts.get(s)
            if not k:
                continue
            h = bar_h * k / (b - a)
            out.append(f'<rect x="{x0 + c * colw:.2f}" y="{y:.2f}" width="{colw + 0.3:.2f}" height="{h:.2f}" '
                       f'fill="{STATUS_COLOURS.get(s, UNKNOWN_COLOUR)}"/>')
            y += h
    out.append("</g>")
    out.append(f'<rect x="{x0}" y="{top}" width="{x1 - x0}" height="{bar_h}" fill="none" stroke="#444"/>')
    yb = top + bar_h
    for t in nice_ticks(0, n - 1 if n > 1 else 1):
        if t > n - 1 and n > 1:
            continue
        x = x0 + (t + 0.5) / n * (x1 - x0)
        out.append(f'<line x1="{x:.1f}" y1="{yb}" x2="{x:.1f}" y2="{yb + 5}" stroke="#666"/>')
        out.append(f'<text x="{x:.1f}" y="{yb + 18}" text-anchor="middle" fill="#444">{escape(fmt(t))}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{yb + 36}" text-anchor="middle" fill="#222">'
               f"sandbox_idx (submission order){'' if cols == n else f'; each column {n / cols:.1f} sandboxes'}"
               "</text>")
    lx = x0
    for s in order + sorted(k for k in totals if k not in STATUS_COLOURS):
        label = f"{s}: {totals.get(s, 0):,}"
        out.append(f'<rect x="{lx}" y="{height - 22}" width="10" height="10" fill="{STATUS_COLOURS.get(s, UNKNOWN_COLOUR)}"/>')
        out.append(f'<text x="{lx + 14}" y="{height - 13}" fill="#222">{escape(label)}</text>')
        lx += 24 + len(label) * 6.6
    out.append("</svg>")
    return "\n".join(out)
