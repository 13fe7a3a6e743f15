"""What a run costs: the worst case before it starts, and the sandbox-seconds it really used.

Worst case (printed at the start; ``--max-cost`` refuses a run above it)
    N sandboxes × the lifetime each asks of the provider × the price. The
    lifetime covers a life held to the barrier deadline with every phase at
    its timeout, and it is also how long a sandbox whose destroy failed
    lives before the provider ends it, so no run of N sandboxes can cost
    more (at that price).

Actual (in meta.json, the summary and Postgres)
    Every created sandbox (``sandbox_id`` not null, late creates included)
    counts from ``create_ended_at`` to the end of the destroy that removed
    it: the first attempt, or the retry that succeeded. A sandbox that no
    destroy removed (a leak) counts its whole lifetime, since it lives until
    the provider expires it. The cost is those sandbox-seconds × the price.
"""

from __future__ import annotations

from typing import Optional, Sequence

from loadgen.providers.prices import Price
from loadgen.report.concurrency import ts
from loadgen.result import destroyed_at


def _usd(seconds: float, price: Price) -> Optional[float]:
    if price.usd_per_sandbox_second is None:
        return None
    return round(seconds * price.usd_per_sandbox_second, 6)


def estimate(sandboxes: int, lifetime_s: float, price: Price) -> dict:
    seconds = float(sandboxes) * float(lifetime_s)
    return {
        "sandboxes": sandboxes,
        "lifetime_s": lifetime_s,
        "sandbox_seconds": seconds,
        "usd": _usd(seconds, price),
    }


def sandbox_seconds(records: Sequence[dict], lifetime_s: float) -> dict:
    """Sandbox-seconds of every created sandbox (see module doc), and the leaks counted at their lifetime."""
    used = 0.0
    leaked = []
    for r in records:
        if r.get("sandbox_id") is None:
            continue
        created = ts(r.get("create_ended_at"))
        ended = ts(destroyed_at(r))
        if ended is None or created is None:
            leaked.append(r.get("sandbox_id"))
            used += lifetime_s
        else:
            used += max(0.0, ended - created)
    return {"sandbox_seconds": round(used, 6), "leaked": len(leaked), "leaked_sandbox_seconds": len(leaked) * lifetime_s}


def run_cost(records: Sequence[dict], sandboxes: int, lifetime_s: float, price: Price,
             target: Optional[str] = None) -> dict:
    """meta.json's ``cost``: the price used, the worst case, and what the run used."""
    used = sandbox_seconds(records, lifetime_s)
    return {
        "price": price.as_dict(),
        "target": target,
        "estimate": estimate(sandboxes, lifetime_s, price),
        **used,
        "usd": _usd(used["sandbox_seconds"], price),
    }


def describe_estimate(est: dict, price: Price, max_cost: Optional[float]) -> str:
    """The line printed at the start of a run."""
    basis = (f"{est['sandboxes']:,} sandboxes × {est['lifetime_s']:,g} s lifetime = "
             f"{est['sandbox_seconds']:,.0f} sandbox-seconds")
    if est["usd"] is None:
        text = f"worst case {basis}; no price known for {price.provider} (give one with --price-file)"
    else:
        text = (f"worst case ${est['usd']:,.2f} ({basis} × ${price.usd_per_sandbox_second:.8f}, "
                f"{price.provider}'s price for {price.size}, as of {price.as_of or 'unknown'})")
    if max_cost is not None:
        text += f"; --max-cost ${max_cost:,.2f}"
    return text
