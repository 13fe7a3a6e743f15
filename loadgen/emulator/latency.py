"""Latency distributions for the emulator's create, exec and kill answers.

A distribution is given as a small dict so that the same value works in a JSON
profile, on the command line and as a Python keyword:

    {"kind": "constant", "ms": 50}
    {"kind": "uniform", "min_ms": 10, "max_ms": 90}
    {"kind": "lognormal", "median_ms": 822, "p95_ms": 965}
    {"kind": "empirical", "values_ms": [310, 402, 415, 980]}

Lognormal is given by median and p95 because those are the figures providers
and dashboards publish; mu and sigma follow from them. Samplers draw from an
RNG passed in by the caller (one per sandbox), never from a global one, so a
draw depends only on the sandbox it belongs to.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Mapping, Sequence

# z-score of the 95th percentile of the standard normal distribution.
Z95 = 1.6448536269514722

KINDS = ("constant", "uniform", "lognormal", "empirical")


class Latency:
    """A parsed latency distribution; `sample(rng)` returns seconds."""

    __slots__ = ("kind", "spec", "_a", "_b", "_values")

    def __init__(self, spec: Mapping[str, Any]):
        spec = dict(spec)
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"latency kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.spec = spec
        self._values: Sequence[float] = ()
        if kind == "constant":
            self._a = _ms(spec, "ms") / 1000.0
            self._b = 0.0
        elif kind == "uniform":
            self._a = _ms(spec, "min_ms") / 1000.0
            self._b = _ms(spec, "max_ms") / 1000.0
            if self._b < self._a:
                raise ValueError("uniform latency needs min_ms <= max_ms")
        elif kind == "lognormal":
            median = _ms(spec, "median_ms")
            p95 = _ms(spec, "p95_ms")
            if median <= 0 or p95 < median:
                raise ValueError("lognormal latency needs 0 < median_ms <= p95_ms")
            self._a = math.log(median / 1000.0)  # mu, in log-seconds
            self._b = (math.log(p95 / 1000.0) - self._a) / Z95  # sigma
        else:
            values = spec.get("values_ms")
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError("empirical latency needs a non-empty values_ms list")
            self._values = tuple(float(v) / 1000.0 for v in values)
            if min(self._values) < 0:
                raise ValueError("empirical latency values must be >= 0")
            self._a = self._b = 0.0

    def sample(self, rng: random.Random) -> float:
        kind = self.kind
        if kind == "constant":
            return self._a
        if kind == "uniform":
            return self._a + (self._b - self._a) * rng.random()
        if kind == "lognormal":
            if self._b == 0.0:
                return math.exp(self._a)
            return math.exp(rng.gauss(self._a, self._b))
        return self._values[int(rng.random() * len(self._values))]

    def mean(self) -> float:
        """Expected value in seconds (for documentation and tests)."""
        if self.kind == "constant":
            return self._a
        if self.kind == "uniform":
            return (self._a + self._b) / 2
        if self.kind == "lognormal":
            return math.exp(self._a + self._b**2 / 2)
        return sum(self._values) / len(self._values)

    def to_dict(self) -> dict:
        return dict(self.spec)

    def __repr__(self) -> str:
        return f"Latency({self.spec!r})"


def _ms(spec: Mapping[str, Any], key: str) -> float:
    if key not in spec:
        raise ValueError(f"{spec.get('kind')} latency needs {key!r}")
    value = float(spec[key])
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise ValueError(f"latency {key} must be a finite number >= 0")
    return value


def parse_latency(value: Any) -> dict:
    """Accept a dict, a JSON object string, or the short form `kind:numbers`.

    Short forms: `constant:50`, `uniform:10,90`, `lognormal:822,965`
    (median,p95) and `empirical:310,402,980`, all in milliseconds.
    Returns the validated dict form.
    """
    if isinstance(value, Latency):
        return value.to_dict()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        spec: dict = {"kind": "constant", "ms": float(value)}
    elif isinstance(value, Mapping):
        spec = dict(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            spec = json.loads(text)
        else:
            kind, _, rest = text.partition(":")
            numbers = [float(x) for x in rest.split(",") if x.strip()]
            kind = kind.strip()
            if kind == "constant" and len(numbers) == 1:
                spec = {"kind": kind, "ms": numbers[0]}
            elif kind == "uniform" and len(numbers) == 2:
                spec = {"kind": kind, "min_ms": numbers[0], "max_ms": numbers[1]}
            elif kind == "lognormal" and len(numbers) == 2:
                spec = {"kind": kind, "median_ms": numbers[0], "p95_ms": numbers[1]}
            elif kind == "empirical" and numbers:
                spec = {"kind": kind, "values_ms": numbers}
            else:
                raise ValueError(
                    f"cannot read latency {value!r}; use e.g. constant:50, uniform:10,90, "
                    "lognormal:822,965, empirical:10,20,30 or a JSON object"
                )
    else:
        raise ValueError(f"cannot read latency {value!r}")
    Latency(spec)  # validate
    return spec
