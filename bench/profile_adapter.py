"""Where an adapter's client CPU goes: cProfile of N lifecycles on the bridge's thread, the hub's, or both.

bench/lifecycle_cost.py says how much CPU a lifecycle costs; this says on
what. An asynchronous adapter's SDK runs on the bridge's loop (a real OS
thread), which cProfile sees only when it is enabled on that thread, so the
profiler is switched on and off there; a synchronous adapter's SDK (daytona,
runloop) runs in greenlets on gevent's hub, the main thread (``--thread hub``;
``both`` profiles each thread apart). N lifecycles (create, two `node -v`,
destroy) run concurrently from greenlets against a `fast` emulator, as in a
burst; the report is each profiled thread's functions by own time and by
cumulative time, and the thread's CPU beside the process's. (On the hub,
cProfile follows greenlet switches as calls that return late, so cumulative
times there include time other greenlets ran; own times are right.)

Usage:
  python bench/profile_adapter.py [--provider modal] [--thread bridge|hub|both] [--n 500] [--top 25]
                                  [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", default="modal")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread", choices=("bridge", "hub", "both"), default="bridge")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the adapter (repeatable)")
    args = ap.parse_args()
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    import gevent
    from gevent import monkey

    monkey.patch_all()
    from loadgen.emulator import start_emulator
    from loadgen.net.aio import get_bridge
    from loadgen.providers import get_provider_class
    from loadgen.providers.base import ProviderSettings

    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    for name, value in H.PROVIDER_ENV.get(args.provider, {}).items():
        os.environ.setdefault(name, value)
    with start_emulator("fast", faces=H.face_of(args.provider)) as emu:
        adapter = get_provider_class(args.provider)(ProviderSettings(
            base_url=emu.url, users_in_process=args.n, sandbox_lifetime_s=600, create_timeout_s=60))
        adapter.prepare()
        bridge = get_bridge()
        call = lambda method, *a: adapter.start_call(method, *a).wait(120)  # noqa: E731

        def life(i):
            handle = call(adapter.create, {"run_id": "profile", "sandbox_idx": str(i)})
            call(adapter.run, handle, "node -v", 30)
            call(adapter.run, handle, "node -v", 30)
            call(adapter.destroy, handle, 30)

        life(-1)  # warm: connections, the SDK's token, imports
        threads = ("bridge", "hub") if args.thread == "both" else (args.thread,)
        profilers = {name: cProfile.Profile() for name in threads}
        thread_cpu: dict = {}

        def switch(name: str, on: bool) -> None:
            (profilers[name].enable if on else profilers[name].disable)()
            thread_cpu[name, on] = time.thread_time()

        async def on_bridge(on: bool):
            switch("bridge", on)

        if "bridge" in profilers:
            bridge.call(on_bridge(True), timeout=10)
        if "hub" in profilers:
            switch("hub", True)
        cpu0, wall0 = time.process_time(), time.time()
        gevent.joinall([gevent.spawn(life, i) for i in range(args.n)], raise_error=True)
        if "hub" in profilers:
            switch("hub", False)
        if "bridge" in profilers:
            bridge.call(on_bridge(False), timeout=10)
        cpu, wall = time.process_time() - cpu0, time.time() - wall0
    shares = ", ".join(f"the {name} thread {(thread_cpu[name, False] - thread_cpu[name, True]) / args.n * 1000:.2f} ms"
                       for name in threads)
    print(f"{args.provider}: {args.n} lifecycles in {wall:.1f} s; process CPU {cpu / args.n * 1000:.2f} ms per "
          f"lifecycle, of which {shares} (profiled, so inflated)")
    for name in threads:
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profilers[name], stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
            print(f"\n## {name} thread, by {key}\n")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
