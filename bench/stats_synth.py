"""Synthetic but realistic run data for the statistics benchmark and the report tests.

A real 100k run costs money and hours; the statistics and the report only
need records of the right shape with plausible timing, failures of every
kind and a heavy tail, so this builds them from a seeded RNG (same seed,
same run). The timing follows the lifecycle: burst submission, create,
readiness, hold until a barrier after the last readiness, liveness, destroy.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from loadgen.result import iso

T0 = 1795882800.0  # 2026-11-28T16:20:00Z

_CREATE_ERRORS = [
    ("timeout", None, "TimeoutError", "create timed out after 60s"),
    ("http_error", 429, "RateLimitError", "429: rate limit exceeded, retry later"),
    ("http_error", 503, "APIStatusError", "503: service unavailable"),
    ("network_error", None, "ConnectError", "[Errno 104] Connection reset by peer"),
    ("other", None, "ValueError", "unexpected response shape"),
]


def make_records(n: int, seed: int = 1, provider: str = "e2b", workers: int = 4, run_id: str = "synthetic") -> list:
    """n result records (dicts) shaped like loadgen.result.SandboxResult."""
    rng = random.Random(seed)
    recs = []
    ready_end = T0
    for idx in range(n):
        start = T0 + rng.random() * 2.0 + idx * (1.0 / max(n, 1))
        r = {
            "run_id": run_id,
            "sandbox_idx": idx,
            "provider": provider,
            "worker_id": f"w{idx % workers}",
            "sandbox_id": None,
            "status": "failed",
            "failure_class": None,
            "failed_phase": None,
            "http_status": None,
            "error_code": None,
            "error_type": None,
            "error_message": None,
            "started_at": iso(start),
            "completed_at": None,
            "create_started_at": iso(start),
            "create_ended_at": None,
            "readiness_started_at": None,
            "readiness_ended_at": None,
            "liveness_started_at": None,
            "liveness_ended_at": None,
            "destroy_started_at": None,
            "destroy_ended_at": None,
            "latency_ms": None,
            "first_command_ms": None,
            "liveness_ms": None,
            "destroy_ms": None,
            "destroy_ok": None,
            "destroy_failure_class": None,
            "destroy_error_message": None,
            "hold_ms": None,
            "late_create": False,
            "readiness_output": None,
            "provider_metadata": {"provider": provider},
        }
        # load grows along the burst: later submissions are slower and fail more
        slow = 1.0 + 1.5 * idx / max(n, 1)
        lat = rng.lognormvariate(6.6, 0.45) * slow  # ~ 735 ms median
        if rng.random() < 0.01:
            lat *= rng.uniform(3, 12)  # heavy tail
        u = rng.random()
        if u < 0.04 * slow:
            fc, http, etype, msg = _CREATE_ERRORS[rng.randrange(len(_CREATE_ERRORS))]
            end = start + (60.0 if fc == "timeout" else lat / 1000.0 * 0.3)
            r.update(
                failure_class=fc,
                failed_phase="create",
                http_status=http,
                error_code=str(http) if http else None,
                error_type=etype,
                error_message=msg,
                create_ended_at=iso(end),
                completed_at=iso(end),
            )
            recs.append(r)
            continue
        c_end = start + lat / 1000.0
        r.update(sandbox_id=f"sbx-{seed}-{idx:06d}", create_ended_at=iso(c_end), latency_ms=round(lat, 3))
        fcmd = rng.lognormvariate(5.0, 0.5)  # ~150 ms
        r_end = c_end + fcmd / 1000.0
        r["readiness_started_at"] = iso(c_end)
        r["readiness_ended_at"] = iso(r_end)
        if rng.random() < 0.01:
            r.update(
                status="readiness_failed",
                failure_class="other",
                failed_phase="readiness",
                error_type="CommandExitError",
                error_message="node: not found (exit 127)",
            )
        else:
            r["first_command_ms"] = round(fcmd, 3)
            r["readiness_output"] = "v20.11.1"
            r["status"] = "success"
        ready_end = max(ready_end, r_end)
        r["_r_end"] = r_end
        recs.append(r)
    barrier = ready_end + 0.5
    for r in recs:
        r_end = r.pop("_r_end", None)
        if r_end is None:
            continue
        t = barrier + rng.random() * 0.2
        r["hold_ms"] = round((t - r_end) * 1000.0, 3)
        if r["status"] == "success":
            live = rng.lognormvariate(4.0, 0.4)
            r["liveness_started_at"] = iso(t)
            r["liveness_ended_at"] = iso(t + live / 1000.0)
            if rng.random() < 0.005:
                r.update(
                    status="partial",
                    failure_class="http_error",
                    failed_phase="liveness",
                    http_status=502,
                    error_type="SandboxException",
                    error_message="502: sandbox not found",
                )
            else:
                r["liveness_ms"] = round(live, 3)
            t += live / 1000.0
        d = rng.lognormvariate(5.3, 0.4)
        r["destroy_started_at"] = iso(t)
        r["destroy_ended_at"] = iso(t + d / 1000.0)
        r["destroy_ms"] = round(d, 3)
        if rng.random() < 0.002:
            r.update(
                destroy_ok=False,
                destroy_failure_class="http_error",
                destroy_error_message="500: internal error while killing sandbox",
            )
        else:
            r["destroy_ok"] = True
        r["completed_at"] = iso(t + d / 1000.0)
    return recs


def make_metrics(records: list, workers: int = 4, seed: int = 1, busy: bool = False) -> list:
    """One health sample a second for the master and each worker over the run's span."""
    from loadgen.result import parse_iso

    rng = random.Random(seed)
    times = [parse_iso(r["completed_at"]) for r in records if r.get("completed_at")]
    end = max(times) if times else T0 + 1
    out = []
    procs = ["master"] + [f"w{i}" for i in range(workers)]
    t = T0
    while t <= end + 1:
        for p in procs:
            cpu = rng.uniform(5, 40) + (60 if busy and p != "master" else 0)
            lag = rng.expovariate(1 / 3.0) + (150 if busy and p != "master" else 0)
            out.append(
                {
                    "t": t,
                    "ts": iso(t),
                    "process": p,
                    "cpu_percent": round(min(cpu, 100.0), 1),
                    "rss_bytes": 200_000_000 + int(rng.random() * 5e7),
                    "hub_lag_ms": {"p50": round(lag / 3, 3), "p99": round(lag, 3), "max": round(lag * 1.5, 3)},
                    "open_fds": 100 + int(rng.random() * 1000),
                    "sockstat": {"tcp_inuse": 100},
                    "loadavg": [1.0, 0.8, 0.5],
                    "in_flight": int(rng.random() * 100),
                    "held": int(rng.random() * 100),
                }
            )
        t += 1.0
    return out


def write_run_dir(path: Path, records: list, metrics: list | None = None, meta: dict | None = None) -> Path:
    """A run directory as the master leaves it (raw.jsonl, metrics.jsonl, optional meta.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "raw.jsonl", "wb") as fh:
        fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    if metrics is not None:
        with open(path / "metrics.jsonl", "wb") as fh:
            fh.write(b"".join(orjson.dumps(m) + b"\n" for m in metrics))
    if meta is not None:
        (path / "meta.json").write_bytes(orjson.dumps(meta))
    return path
