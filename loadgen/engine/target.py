"""The health of an emulator target, read from its ground truth when the run ends.

When the run's target is loadgen's emulator (``--emulator-url``, one URL or
several), a slow or failing sandbox could be the emulator's doing rather than
the provider behaviour it stands for: a loop starved of CPU, an accept queue
that overflowed. Each emulator records that about itself
(``loadgen.emulator.overload``); the master reads it from every emulator at
the end, and meta.json and the summary say whether the emulator was
overloaded, so that "the emulator was the bottleneck" is never reported as
"the provider was slow".
"""

from __future__ import annotations

import json
import urllib.request
from typing import Optional

STATS_TIMEOUT_S = 5.0


def emulator_health(urls: list[str]) -> Optional[dict]:
    """What every emulator says of its own load, merged; None when the target is not an emulator."""
    if not urls:
        return None
    from loadgen.emulator.handle import merge_stats

    parts, unreachable = [], []
    for url in urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/_emulator/stats", timeout=STATS_TIMEOUT_S) as resp:
                parts.append(json.loads(resp.read()))
        except Exception as exc:  # noqa: BLE001 - the run's figures do not depend on this
            unreachable.append({"url": url, "error": f"{type(exc).__name__}: {exc}"})
    merged = merge_stats(parts) if parts else {}
    server = merged.get("server") or {}
    return {
        "processes": len(urls),
        "unreachable": unreachable,
        "overload": server.get("overload"),
        "overloaded": bool((server.get("overload") or {}).get("overloaded")),
        "cpu_s": server.get("cpu_s"),
        "created": merged.get("created"),
        "killed": merged.get("killed"),
        "live": merged.get("live"),
    }


def emulator_lines(meta: dict) -> list[str]:
    """The summary's word on the emulator, when the target was one."""
    health = meta.get("emulator")
    if not health:
        return []
    overload = health.get("overload") or {}
    lag = overload.get("loop_lag_ms") or {}
    text = (f"{health['processes']} process{'es' if health['processes'] != 1 else ''}, loop lag max "
            f"{lag.get('max', 0):.0f} ms, accept queue max {(overload.get('accept_queue') or {}).get('max', 0)}, "
            f"listen overflows {overload.get('listen_overflows', 0)}, live at the end {health.get('live')}")
    if health.get("overloaded"):
        return [f"[summary] WARNING: the emulator was overloaded ({text}): slow or failed sandboxes may be its "
                "doing, not the provider behaviour it stands for; give it more processes or CPU"]
    return [f"[summary] emulator: {text}"]
