"""What one sandbox costs per second: the price table, and the file that overrides it.

Each provider's figure is in US dollars per sandbox-second for the sandbox a
create gets without any size option (the size loadgen's adapters create),
derived from the provider's published per-resource rates. Every entry says
the size, how the figure follows from the rates, where the rates are
published and when they were recorded. Prices change and accounts differ
(plans, discounts, regions): ``--price-file FILE`` replaces any entry. The
file is JSON, one object per provider::

    {"e2b": {"usd_per_sandbox_second": 0.00003025, "size": "2 vCPU, 512 MiB",
             "source": "https://e2b.dev/pricing", "as_of": "2026-12-01"}}

A provider without a known price (null) still gets its worst case in
sandbox-seconds; ``--max-cost`` then refuses to start rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Optional

# When the figures below were recorded, from stored copies of the pages
# named in each entry (not the live pages): check them before relying on them.
RECORDED = "2026-12-01"


@dataclass(frozen=True)
class Price:
    provider: str
    usd_per_sandbox_second: Optional[float]
    size: str
    basis: str
    source: str
    as_of: str = RECORDED

    def as_dict(self) -> dict:
        return asdict(self)


PRICES = {
    "e2b": Price(
        "e2b", 2 * 0.000014 + 0.5 * 0.0000045, "2 vCPU, 512 MiB RAM (the default template)",
        "$0.000014 per vCPU-second × 2 + $0.0000045 per GiB-second × 0.5 GiB; billed per second while "
        "running (the docs' example, 8 vCPU + 4 GB = $0.468/hour, gives the same rates)",
        "https://e2b.dev/pricing"),
    "daytona": Price(
        "daytona", 0.000014 + 1 * 0.0000045, "1 vCPU, 1 GiB RAM, 3 GiB disk (the default sandbox)",
        "$0.000014 per vCPU-second + $0.0000045 per GiB-second of memory; the disk is within the free "
        "5 GiB; billed per second while running",
        "https://www.daytona.io/pricing"),
    "modal": Price(
        "modal", 0.125 * 0.00003942 + 0.125 * 0.00000672, "0.125 physical core, 128 MiB (the default request)",
        "Sandbox rates: $0.00003942 per physical-core-second × 0.125 + $0.00000672 per GiB-second × "
        "0.125 GiB; billed per second on max(request, use), so a busy sandbox costs more",
        "https://modal.com/pricing"),
    "codesandbox": Price(
        "codesandbox", 10 * 0.01486 / 3600, "Nano VM, 2 cores, 4 GB (the size the SDK's docs recommend)",
        "10 credits per hour × $0.01486 per credit; billed per started minute (not modelled: short "
        "lives cost up to a minute more)",
        "https://codesandbox.io/docs/sdk/pricing"),
    "runloop": Price(
        "runloop", None, "SMALL devbox, 1 vCPU, 2 GiB RAM, 4 GiB disk (the default)",
        "no per-second rate could be checked when this table was written; give one with --price-file",
        "https://www.runloop.ai/pricing"),
}


class PriceFileError(ValueError):
    pass


def load_price_file(path: str) -> dict[str, Price]:
    """The entries of a --price-file, checked; a bad file is refused with a message naming it."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise PriceFileError(f"--price-file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PriceFileError(f"--price-file {path}: want a JSON object of providers")
    out = {}
    for provider, entry in data.items():
        if not isinstance(entry, dict) or "usd_per_sandbox_second" not in entry:
            raise PriceFileError(f"--price-file {path}: {provider!r} needs \"usd_per_sandbox_second\"")
        value = entry["usd_per_sandbox_second"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise PriceFileError(f"--price-file {path}: {provider}.usd_per_sandbox_second must be a number "
                                 f">= 0 or null (got {value!r})")
        base = PRICES.get(provider, Price(provider, None, "", "", ""))
        out[provider] = replace(
            base, usd_per_sandbox_second=None if value is None else float(value),
            size=str(entry.get("size", base.size)), source=str(entry.get("source", path)),
            basis=str(entry.get("basis", f"from --price-file {path}")), as_of=str(entry.get("as_of", "")))
    return out


def price_for(provider: str, price_file: Optional[str] = None) -> Price:
    """The price of one sandbox-second of ``provider``: the file's entry, else the table's."""
    if price_file:
        entries = load_price_file(price_file)
        if provider in entries:
            return entries[provider]
    return PRICES.get(provider, Price(provider, None, "unknown", "no entry in the price table", ""))
