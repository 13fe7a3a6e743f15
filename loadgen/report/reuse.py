"""What the identity/reuse probe found across a run: reused containers and repeated signals.

Pure, over the records (``sandbox_fingerprint``, see ``loadgen.engine.reuse_probe``).

Reused
    Records whose probe found a marker an earlier sandbox left
    (``error_code == container_reused``): each is a failed iteration already.

Repeated signals
    A warning for each sandbox that shares at least ``WARN_AT`` (3) of the
    identity signals (``loadgen.result.FINGERPRINT_SIGNALS``) with one earlier
    sandbox (by ``sandbox_idx``); ``same_as`` names the earliest such sandbox
    and ``signals`` every signal the two share. An unreadable signal never
    counts as a repeat. A warning is not a failure: sandboxes restored from
    one snapshot share a boot id and pid 1's start time by design.
"""

from __future__ import annotations

from itertools import combinations
from typing import Optional, Sequence

from loadgen.result import CONTAINER_REUSED, FINGERPRINT_SIGNALS

WARN_AT = 3
MAX_WARNINGS_LISTED = 100


def reuse_summary(records: Sequence[dict]) -> Optional[dict]:
    """meta.json's ``reuse_probe``; None when no record carries a fingerprint (the probe was off)."""
    probed = sorted((r for r in records if r.get("sandbox_fingerprint")), key=lambda r: r["sandbox_idx"])
    if not probed:
        return None
    signals = {s: {"present": 0, "distinct": 0, "repeated": 0} for s in FINGERPRINT_SIGNALS}
    values: dict = {s: {} for s in FINGERPRINT_SIGNALS}
    for r in probed:
        for s in FINGERPRINT_SIGNALS:
            v = r["sandbox_fingerprint"].get(s)
            if v is not None:
                values[s][v] = values[s].get(v, 0) + 1
    for s, counts in values.items():
        signals[s] = {"present": sum(counts.values()), "distinct": len(counts),
                      "repeated": sum(n for n in counts.values() if n > 1)}

    by_idx = {r["sandbox_idx"]: r["sandbox_fingerprint"] for r in probed}
    first_seen: dict = {}  # (3 signals and their values) -> the first sandbox that had them
    warnings = []
    for r in probed:
        fp = r["sandbox_fingerprint"]
        present = [(s, fp[s]) for s in FINGERPRINT_SIGNALS if fp.get(s) is not None]
        earlier = None
        for combo in combinations(present, WARN_AT):
            j = first_seen.setdefault(combo, r["sandbox_idx"])
            if j != r["sandbox_idx"] and (earlier is None or j < earlier):
                earlier = j
        if earlier is not None:
            other = by_idx[earlier]
            warnings.append({"sandbox_idx": r["sandbox_idx"], "same_as": earlier,
                             "signals": [s for s, v in present if other.get(s) == v]})
    reused = [r["sandbox_idx"] for r in probed if r.get("error_code") == CONTAINER_REUSED]
    return {
        "probed": len(probed),
        "reused": len(reused),
        "reused_sandbox_idx": reused[:MAX_WARNINGS_LISTED],
        "signals": signals,
        "warn_at": WARN_AT,
        "warning_count": len(warnings),
        "warnings": warnings[:MAX_WARNINGS_LISTED],
    }
