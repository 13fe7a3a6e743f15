"""Every knob of the emulator's behaviour model, and the named profiles.

One table (`SETTINGS`) drives the profile files, the command-line options and
the Python keywords, so a setting can never exist in one place and be missing
from another. Values are resolved in this order: built-in defaults, then the
profile (`--profile` or `--config FILE`), then single-setting overrides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from loadgen.emulator.latency import parse_latency


def _prob(value: Any) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be within [0, 1], got {value!r}")
    return p


def _nonneg_float(value: Any) -> float:
    f = float(value)
    if f < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return f


def _opt_pos_int(value: Any) -> Optional[int]:
    if value is None or value == "" or str(value).lower() in ("none", "null", "0", "unlimited"):
        return None
    n = int(value)
    if n < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return n


def _pos_int(value: Any) -> int:
    n = int(value)
    if n < 1:
        raise ValueError(f"must be >= 1, got {value!r}")
    return n


def _opt_pos_float(value: Any) -> Optional[float]:
    if value is None or value == "" or str(value).lower() in ("none", "null", "0", "unlimited"):
        return None
    f = float(value)
    if f < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return f


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = "X"

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS = (
    Setting("seed", int, 0, "Seed of every random draw.", "N"),
    Setting("create_latency", parse_latency, {"kind": "constant", "ms": 0},
            "Time from a create request to its answer.", "DIST"),
    Setting("exec_latency", parse_latency, {"kind": "constant", "ms": 0},
            "Time from a command request to its start event.", "DIST"),
    Setting("kill_latency", parse_latency, {"kind": "constant", "ms": 0},
            "Time from a kill request to its answer.", "DIST"),
    Setting("capacity", _opt_pos_int, None,
            "Most live sandboxes at once (creates in flight count); none = unlimited.", "N"),
    Setting("capacity_mode", _choice("reject", "queue"), "reject",
            "Over capacity: reject (429) or queue until a sandbox ends.", "MODE"),
    Setting("rate_limit_per_s", _opt_pos_float, None,
            "Token-bucket refill rate for creates; none = no limit.", "R"),
    Setting("rate_limit_burst", int, 1, "Token-bucket size (creates allowed at once).", "N"),
    Setting("fault_create_5xx", _prob, 0.0, "Probability a create is answered 500.", "P"),
    Setting("fault_create_hang", _prob, 0.0, "Probability a create is never answered.", "P"),
    Setting("fault_reset", _prob, 0.0, "Probability a create's connection is reset (TCP RST).", "P"),
    Setting("fault_readiness", _prob, 0.0, "Probability a sandbox's first command fails.", "P"),
    Setting("readiness_fail_mode", _choice("exit", "stream_error"), "exit",
            "How the first command fails: non-zero exit, or an error on the stream.", "MODE"),
    Setting("fault_died", _prob, 0.0,
            "Probability a sandbox dies after its first command completes.", "P"),
    Setting("died_delay_s", _nonneg_float, 0.0,
            "Delay between the first command's end and the death of a dying sandbox.", "S"),
    Setting("fault_kill", _prob, 0.0, "Probability a kill is answered 500 (sandbox stays alive).", "P"),
    Setting("kill_fail_mode", _choice("permanent", "transient"), "permanent",
            "A faulty sandbox's kills: permanent (every kill fails) or transient (only the first "
            "kill_fail_count fail; a retry then succeeds).", "MODE"),
    Setting("kill_fail_count", _pos_int, 1, "In transient mode, how many kills of a faulty sandbox fail.", "K"),
    Setting("fault_reuse", _prob, 0.0,
            "Probability a sandbox is given the container of the sandbox created before it (its identity "
            "and files, an earlier reuse probe's markers included), as a provider that recycles a used "
            "container would.", "P"),
    Setting("default_lifetime_s", _nonneg_float, 300.0,
            "Lifetime of a sandbox whose create names none (e2b: 300 s).", "S"),
    Setting("max_lifetime_s", _nonneg_float, 86400.0,
            "Longest lifetime a create may ask for; longer asks get 400 (e2b: 24 h).", "S"),
    Setting("node_version", str, "v20.18.1", "What `node -v` prints.", "V"),
    Setting("require_api_key", _bool, True, "Answer 401 when the API key header is missing.", "BOOL"),
    Setting("h2_max_streams", _opt_pos_int, None,
            "HTTP/2 concurrent streams per connection the emulator allows (both ports); none = unlimited "
            "(load balancers typically allow 100-256).", "N"),
)

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}


def _realistic(median_ms: float, p95_ms: float) -> dict:
    """Split a time-to-interactive figure (create + first command) into a create
    part and a command part. The split (85/15) is a guess: the reference
    figures only measure the sum. The sum of two lognormals is not exactly
    lognormal, so the end-to-end median and p95 come out within a few percent
    of the reference, not exactly on it."""
    return {
        "create_latency": {"kind": "lognormal", "median_ms": round(median_ms * 0.85, 1),
                           "p95_ms": round(p95_ms * 0.85, 1)},
        "exec_latency": {"kind": "lognormal", "median_ms": round(median_ms * 0.15, 1),
                         "p95_ms": round(p95_ms * 0.15, 1)},
        "kill_latency": {"kind": "lognormal", "median_ms": 120, "p95_ms": 300},
    }


# Reference figures (median/p95 ms of create + `node -v`), from PROVIDERS.md.
REFERENCE_TTI = {
    "daytona": (367, 611),
    "e2b": (822, 965),
    "modal": (2261, 2943),
    "runloop": (6662, 11196),
    "codesandbox": (6658, 9995),
}

PROFILES: Dict[str, dict] = {
    "fast": {},
    "chaos": {
        "create_latency": {"kind": "lognormal", "median_ms": 50, "p95_ms": 200},
        "exec_latency": {"kind": "lognormal", "median_ms": 10, "p95_ms": 50},
        "kill_latency": {"kind": "lognormal", "median_ms": 10, "p95_ms": 50},
        "fault_create_5xx": 0.03,
        "fault_create_hang": 0.02,
        "fault_reset": 0.02,
        "fault_readiness": 0.03,
        "fault_died": 0.03,
        "died_delay_s": 1.0,
        "fault_kill": 0.03,
    },
}
for _provider, (_median, _p95) in REFERENCE_TTI.items():
    PROFILES[f"realistic-{_provider}"] = _realistic(_median, _p95)


def load_config_file(path: str) -> dict:
    """A profile in a JSON file: an object of setting names. It may name a base
    profile under "profile" that its own values then override."""
    with open(path, "r", encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile file must hold a JSON object")
    return data


def resolve(profile: Optional[str] = "fast", config: Optional[Mapping[str, Any]] = None,
            overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Defaults <- named profile <- config mapping <- overrides; validated."""
    values: Dict[str, Any] = {s.name: s.default for s in SETTINGS}
    layers = []
    config = dict(config or {})
    base = config.pop("profile", None)
    for name in (profile, base):
        if name:
            if name not in PROFILES:
                raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(sorted(PROFILES))}")
            layers.append(PROFILES[name])
    layers.append(config)
    layers.append(dict(overrides or {}))
    for layer in layers:
        for key, value in layer.items():
            setting = BY_NAME.get(key)
            if setting is None:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(BY_NAME)}")
            try:
                values[key] = setting.parse(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"setting {key}: {e}") from None
    return values
