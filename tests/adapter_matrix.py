"""Every emulator fault at 100%, through one adapter, in a gevent-patched subprocess.

The daytona and runloop tests share this (and e2b's, for the SDK's own
HTTP/2 transport, which is chosen once per process): each case starts an in-process
emulator with one fault switched on, drives the adapter's create / run /
destroy directly, and reports each call's value or classified error, the
emulator's counters and its ground truth. PROTOCOL (tests/protocol_fixtures.py)
is what the adapter speaks to the emulator: h1, h2, tls or h2+tls.

    python -m tests.adapter_matrix PROVIDER SETTINGS_JSON [--long-poll] [--protocol PROTOCOL]
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_matrix(provider: str, settings: dict, long_poll: bool = False, protocol: str = "h1",
               env: dict = None) -> dict:
    """Run the matrix in a fresh patched interpreter (with `env` added to its environment);
    returns {case: {"ops", "stats", "truth"}}."""
    args = [sys.executable, "-m", "tests.adapter_matrix", provider, json.dumps(settings), "--protocol", protocol]
    if long_poll:
        args.append("--long-poll")
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


def _main(provider_name: str, settings: dict, long_poll: bool, protocol: str) -> None:
    from loadgen.emulator import EmulatorThread
    from loadgen.providers import get_provider_class
    from loadgen.providers.base import ProviderSettings
    from loadgen.emulator.tls import ServerTLS
    from tests.protocol_fixtures import speaking, uses_tls

    cls = get_provider_class(provider_name)
    for name in cls.required_env:
        os.environ[name] = f"{provider_name}_test_key"

    def info(provider, exc):
        i = provider.classify(exc)
        return {"failure_class": i.failure_class, "http_status": i.http_status, "error_code": i.error_code,
                "error_type": i.error_type}

    results = {}
    # one CA for every case's emulator: an SDK may build its trust store once per process (e2b's pyqwest does)
    server_tls = ServerTLS() if uses_tls(protocol) else False

    def case(name, ops, **overrides):
        with EmulatorThread("fast", faces="e2b,daytona,runloop", tls=server_tls, **overrides) as emu, \
                speaking(protocol, emu):
            p = cls(ProviderSettings(base_url=emu.url, users_in_process=4, create_timeout_s=1.0,
                                     late_create_window_s=0.5, **settings))
            p.prepare()

            def call(method, *args):  # as the lifecycle calls it: a greenlet, or a coroutine on the bridge
                return p.start_call(method, *args).wait(30)

            out, handle = [], None
            for i, op in enumerate(ops):
                t = time.monotonic()
                try:
                    if op == "create":
                        handle = call(p.create, {"run_id": "matrix", "sandbox_idx": str(i)})
                        value = p.sandbox_id(handle)
                    elif op == "run":
                        r = call(p.run, handle, "node -v", 3)
                        value = [r.exit_code, r.stdout]
                    elif op == "slow":  # longer than the provider's first wait: its long poll
                        r = call(p.run, handle, "sleep 2 && echo v1.2.3", 1)
                        value = [r.exit_code, r.stdout]
                    else:
                        value = call(p.destroy, handle, 3)
                    out.append({"op": op, "ok": True, "value": value, "s": time.monotonic() - t})
                except BaseException as exc:  # noqa: BLE001 - every outcome is data here
                    out.append({"op": op, "ok": False, "s": time.monotonic() - t, **info(p, exc)})
            results[name] = {"ops": out, "stats": emu.stats(), "truth": emu.sandboxes()}

    case("create_5xx", ["create"], fault_create_5xx=1.0)
    case("create_hang", ["create"], fault_create_hang=1.0)
    case("reset", ["create"], fault_reset=1.0)
    case("rate_limited", ["create", "create"], rate_limit_per_s=0.01, rate_limit_burst=1)
    case("capacity", ["create", "create"], capacity=1)
    case("readiness_exit", ["create", "run", "run"], fault_readiness=1.0)
    case("readiness_stream", ["create", "run"], fault_readiness=1.0, readiness_fail_mode="stream_error")
    case("died", ["create", "run", "run", "destroy"], fault_died=1.0, died_delay_s=0)
    case("kill_fail", ["create", "destroy"], fault_kill=1.0)
    case("clean", ["create", "run"] + (["slow"] if long_poll else []) + ["destroy", "destroy", "run"])
    if server_tls:
        server_tls.cleanup()
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    flags = sys.argv[3:]
    _main(sys.argv[1], json.loads(sys.argv[2]), "--long-poll" in flags,
          flags[flags.index("--protocol") + 1] if "--protocol" in flags else "h1")
