"""Figures as people read them: rounded, with a unit that fits the size.

Every place that prints a figure for a person (the summary and progress
lines, the report's cards and tables, compare, the web UI's data) formats it
here, so 8.8 ms never shows as "0.01 s", a float never shows its binary noise
(981.7330000000001), and a missing figure says so instead of "None ms".
meta.json and Postgres keep the exact values; only their display is rounded.
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional

MISSING = "-"


def significant(v: float, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, without trailing zeros or exponent: 8.8, 982, 0.0625."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    places = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{round(v, places):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration_ms(ms: Optional[float], missing: str = MISSING) -> str:
    """A duration given in milliseconds: 0.42 ms, 8.8 ms, 982 ms, 1.23 s, 2 min 5 s, 1 h 4 min."""
    if ms is None or isinstance(ms, bool):
        return missing
    if ms < 0:
        return "-" + duration_ms(-ms)
    if ms < 1000:
        return f"{significant(ms)} ms"
    s = ms / 1000.0
    if s < 60:
        return f"{significant(s)} s"
    if s < 3600:
        minutes, rest = divmod(round(s), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(s / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def duration_s(s: Optional[float], missing: str = MISSING) -> str:
    """A duration given in seconds (as the options are): 0.5 s, 120 s, 10 min."""
    return missing if s is None else duration_ms(s * 1000.0, missing)


def count(n: Optional[float], missing: str = MISSING) -> str:
    """A count with thousands separators: 100,000."""
    if n is None:
        return missing
    return f"{n:,}" if isinstance(n, int) else f"{n:,.{0 if float(n).is_integer() else 1}f}"


def percent(fraction: Optional[float], missing: str = MISSING) -> str:
    """A fraction as a percentage with as many decimals as it needs (at most 2): 100%, 98.5%, 99.95%."""
    if fraction is None:
        return missing
    text = f"{fraction * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def number(v: Optional[float], missing: str = MISSING) -> str:
    """Any other number: integers with separators, floats to 3 significant digits (12.5, 0.25)."""
    if v is None:
        return missing
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return significant(float(v)) if abs(v) < 1000 else f"{v:,.0f}"


def _looks_like_epoch(key: str, v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and key.endswith("_at") and v > 1e9


def value(v: Any, key: str = "") -> str:
    """A setting or identity value for a table: yes/no, 'not set', numbers without noise, lists and
    mappings spelled out, epoch times (keys ending in _at) as UTC times."""
    if v is None or v == "":
        return "not set"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _looks_like_epoch(key, v):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
    if isinstance(v, (int, float)):
        return number(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(value(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {value(x, str(k))}" for k, x in v.items()) if v else "none"
    return str(v)
