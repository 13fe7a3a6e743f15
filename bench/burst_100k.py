"""100,000 sandboxes in one burst on this machine: master, workers and emulators, and whether every figure is the provider's.

Layout: K emulator processes (`start_emulators`, profile `fast`, given CPU
priority with --emulator-nice so that the emulator, standing in for the
provider, is never the bottleneck), one locust master and W workers, every user
started at once (-u N -r N) against `--emulator-url` naming all K (the master
gives each worker its own). Then, from the run directory and the emulators'
ground truth:

- the target: N successes, 0 leaks (the emulators' live count after), exit 0;
- agreement with the emulators' own record, per sandbox (joined on
  sandbox_idx): |measured - server| for the create (the exchange on the wire
  against the emulator's arrival-to-answer) and for readiness (the command's
  exchange, its connection set-up left out, against the emulator's
  arrival-to-end; the set-up is reported apart), p50/p99/max; the target is
  p99 <= 10 ms for both;
- wall time, and the time from the first create to N sandboxes live at once
  (the exact sweep of create_ended_at/destroy_ended_at);
- each process's peak RSS, peak descriptors and CPU seconds (workers and
  master from their rusage and metrics.jsonl, emulators from /proc);
- the generator's own share (meta.json's generator_share) and the
  emulators' overload (loop lag, accept queue, listen drops).

CPU priority: this kernel groups processes by session for scheduling
(autogroup, /proc/sys/kernel/sched_autogroup_enabled), and a process's nice
value counts only within its own group; against every other session on the
machine (other engineers' tests) the whole group gets one equal share. So
each emulator runs in a session of its own (setsid), and --emulator-nice is
given to its process and to its autogroup (/proc/PID/autogroup), which is
what lets it answer on time on a shared machine. --bench-nice (default -5)
does the same for this script's own session, which the master and the
workers share: the generator is then less at the mercy of whatever else
runs here, and still below the emulators.

The emulators stand in for a provider, whose front doors accept a burst of
connections at once. This machine's root namespace caps every listen queue
at net.core.somaxconn (4,096 here), and 100,000 connects at once overflow
it: dropped SYNs wait out the kernel's back-off (1, 3, 7, 15 s ...), which is
the host's limit, not the provider's. So by default (--provider-netns, as
root) the emulators run in a network namespace of their own, reached over a
veth pair at 10.78.0.2, with that namespace's somaxconn and
tcp_max_syn_backlog at 65,535; the machine's own sysctls are never touched.
--no-provider-netns keeps them on 127.0.0.1.

The baseline, measured in the same run unless --skip-baseline: the same
number of lifecycles by Locust's FastHttpUser on the same layout, for the
wall-time ratio.

--sinks adds a second run with Postgres (a fresh database on
$LOADGEN_TEST_PG_ADMIN_URL's server) and the object store (a moto server this
script starts) on, and checks that Postgres holds N rows and the store's
chunks N lines.

Usage:
  python bench/burst_100k.py [--users 100000] [--workers 12] [--emulators 8] [--hold 5]
                             [--emulator-nice -10] [--bench-nice -5] [--sinks] [--skip-baseline] [--timeout 1200]
                             [--no-provider-netns]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from loadgen.emulator import start_emulators  # noqa: E402
from loadgen.result import parse_iso  # noqa: E402

AGREEMENT_TARGET_MS = 10.0


PROVIDER_NETNS = "lgbench-provider"
PROVIDER_VETH = ("lgbprov0", "lgbprov1")
PROVIDER_ADDRS = ("10.78.0.1", "10.78.0.2")  # this machine's end, the emulators' end
PROVIDER_SYSCTLS = {"net.core.somaxconn": "65535", "net.ipv4.tcp_max_syn_backlog": "65535"}


def _ip(*argv: str, netns: str = "") -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=30)


def _remove_provider_netns() -> None:
    subprocess.run(["ip", "netns", "pids", PROVIDER_NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "del", PROVIDER_NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", PROVIDER_VETH[0]], capture_output=True)


@contextlib.contextmanager
def provider_netns():
    """A network namespace for the emulators, with listen queues a provider's front door has; removed after,
    whatever happens. Yields (the argv that runs a command inside it, the address it listens on)."""
    pids = subprocess.run(["ip", "netns", "pids", PROVIDER_NETNS], capture_output=True, text=True).stdout.split()
    if pids:
        raise SystemExit(f"namespace {PROVIDER_NETNS} is in use (processes {' '.join(pids)}): another "
                         "burst_100k run is going; wait for it, or --no-provider-netns")
    _remove_provider_netns()  # a namespace left by a killed run, with nothing in it
    try:
        _ip("ip", "netns", "add", PROVIDER_NETNS)
        _ip("ip", "link", "add", PROVIDER_VETH[0], "type", "veth", "peer", "name", PROVIDER_VETH[1])
        _ip("ip", "link", "set", PROVIDER_VETH[1], "netns", PROVIDER_NETNS)
        _ip("ip", "addr", "add", f"{PROVIDER_ADDRS[0]}/24", "dev", PROVIDER_VETH[0])
        _ip("ip", "link", "set", PROVIDER_VETH[0], "up")
        _ip("ip", "addr", "add", f"{PROVIDER_ADDRS[1]}/24", "dev", PROVIDER_VETH[1], netns=PROVIDER_NETNS)
        _ip("ip", "link", "set", PROVIDER_VETH[1], "up", netns=PROVIDER_NETNS)
        _ip("ip", "link", "set", "lo", "up", netns=PROVIDER_NETNS)
        for key, value in PROVIDER_SYSCTLS.items():
            _ip("sysctl", "-q", "-w", f"{key}={value}", netns=PROVIDER_NETNS)
        yield ["ip", "netns", "exec", PROVIDER_NETNS], PROVIDER_ADDRS[1]
    finally:
        _remove_provider_netns()


def peak_rss_kb(pid: int):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def dist(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"p50 {H.percentile(values, 50):.2f}, p99 {H.percentile(values, 99):.2f}, max {max(values):.2f} "
            f"(n={len(values)})")


def truth_by_idx(truth: list[dict]) -> dict:
    """The emulators' record of each sandbox, by the sandbox_idx the client sent with its create."""
    by_idx = {}
    for row in truth:
        idx = (row.get("metadata") or {}).get("sandbox_idx")
        if idx is not None:
            by_idx[int(idx)] = row
    return by_idx


def agreement(records: list[dict], truth: list[dict]) -> dict:
    by_idx = truth_by_idx(truth)
    create, ready, setup = [], [], []
    for r in records:
        row = by_idx.get(r["sandbox_idx"])
        if row is None:
            continue
        if r.get("latency_ms") is not None and row.get("t_answered") and row.get("t_received"):
            create.append(abs(r["latency_ms"] - (row["t_answered"] - row["t_received"]) * 1000.0))
        execs = row.get("execs") or []
        if r.get("first_command_ms") is not None and execs and execs[0].get("t_end"):
            server = (execs[0]["t_end"] - execs[0]["t_start"]) * 1000.0
            ready.append(abs(r["first_command_ms"] - (r.get("readiness_setup_ms") or 0.0) - server))
            setup.append(r.get("readiness_setup_ms") or 0.0)
    return {"create": create, "readiness": ready, "readiness_setup": setup}


def timeout_verdicts(records: list[dict], truth: list[dict], timeouts: dict) -> dict:
    """Each provider timeout on the record, checked against the emulator's own record of that sandbox:
    did the emulator ever get the request (create: the sandbox's t_received; readiness: its first
    command's arrival), and did it answer within the phase's timeout of that arrival? A timeout the
    emulator answered in time is a wrong verdict (the generator's delay taken for the provider's)."""
    by_idx = truth_by_idx(truth)
    out = {}
    for phase in ("create", "readiness"):
        counts = {"timeouts": 0, "never_arrived": 0, "answered_late": 0, "answered_in_time": 0, "unanswered": 0}
        for r in records:
            if r.get("failed_phase") != phase or r.get("failure_class") != "timeout":
                continue
            counts["timeouts"] += 1
            row = by_idx.get(r["sandbox_idx"])
            if phase == "create":
                arrived, answered = (row or {}).get("t_received"), (row or {}).get("t_answered")
            else:
                execs = (row or {}).get("execs") or []
                arrived, answered = (execs[0].get("t_start"), execs[0].get("t_end")) if execs else (None, None)
            if arrived is None:
                counts["never_arrived"] += 1
            elif answered is None:
                counts["unanswered"] += 1
            elif answered - arrived <= timeouts[phase]:
                counts["answered_in_time"] += 1
            else:
                counts["answered_late"] += 1
        out[phase] = counts
    return out


def time_to_live(records: list[dict], target: int):
    """Seconds from the first create's start until `target` sandboxes existed at once (None if never)."""
    events = []
    first = None
    for r in records:
        s = parse_iso(r.get("create_started_at"))
        if s is not None:
            first = s if first is None else min(first, s)
        if r.get("sandbox_id") is None:
            continue
        a, b = parse_iso(r.get("create_ended_at")), parse_iso(r.get("destroy_ended_at"))
        if a is not None:
            events.append((a, 1))
            events.append((b if b is not None else math.inf, -1))
    events.sort(key=lambda e: (e[0], -e[1]))
    live = peak = 0
    for t, step in events:
        live += step
        peak = max(peak, live)
        if live >= target:
            return t - first, peak
    return None, peak


def process_rows(res, metrics: list[dict], cluster) -> list[list]:
    """Per process: peak RSS, peak descriptors, CPU seconds.

    Master and workers from their health samples (metrics.jsonl: RSS, open
    fds, CPU percent each second, integrated into seconds), the master's CPU
    and peak RSS also from its rusage; emulators from /proc (VmHWM) and their
    own CPU count."""
    by_process: dict = {}
    for m in metrics:
        p = by_process.setdefault(m.get("process"), {"rss": 0, "fds": 0, "cpu_s": 0.0})
        p["rss"] = max(p["rss"], m.get("rss_bytes") or 0)
        p["fds"] = max(p["fds"], m.get("open_fds") or 0)
        p["cpu_s"] += (m.get("cpu_percent") or 0.0) / 100.0  # one sample a second
    rows = []
    for name in sorted(by_process, key=lambda n: (n != "master", n)):
        p = by_process[name]
        cpu = res.master.cpu_s if name == "master" else p["cpu_s"]
        rows.append([name, round(p["rss"] / 2 ** 20, 1), p["fds"], round(cpu, 1)])
    for i, member in enumerate(cluster.members):
        st = member.stats()["server"]
        rss = peak_rss_kb(member.pid)
        rows.append([f"emulator {i} (pid {member.pid})", round(rss / 1024.0, 1) if rss else None,
                     st.get("connections_total"), round(st.get("cpu_s", 0.0), 1)])
    rows.append(["workers, all (rusage)", round(max((w.max_rss_kb for w in res.workers), default=0) / 1024.0, 1),
                 None, round(sum(w.cpu_s for w in res.workers), 1)])
    return rows


def run_once(args, cluster, sinks_env=None, extra_args=()):
    run_args = ["--hold", str(args.hold), "--barrier-timeout", str(max(600, args.timeout)), *extra_args]
    t0 = time.time()
    res = H.run_loadgen(args.users, cluster.url, args=run_args, workers=args.workers, timeout=args.timeout,
                        env=sinks_env)
    print(f"  loadgen run: wall {time.time() - t0:.1f} s, exit {res.master.returncode}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    # 12 workers: at this machine's 20,000 descriptors per process a worker holds at most ~9,900
    # sandboxes (engine/limits.py refuses more), so 100,000 need at least 11
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--emulators", type=int, default=0, help="emulator processes (default: one per worker)")
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--emulator-nice", type=int, default=-10)
    ap.add_argument("--bench-nice", type=int, default=-5,
                    help="nice of this script's session group (master and workers), see above")
    ap.add_argument("--sinks", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--provider-netns", action=argparse.BooleanOptionalAction, default=os.geteuid() == 0,
                    help="the emulators in a network namespace of their own (default as root; see above)")
    args = ap.parse_args()
    emulators = args.emulators or args.workers
    print(f"# {H.command_line()}  ({H.today()}, {H.machine()})")
    try:
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(args.bench_nice))
    except OSError as exc:
        print(f"  (could not set this session's group nice: {exc})")
    with contextlib.ExitStack() as stack:
        wrapper, host = stack.enter_context(provider_netns()) if args.provider_netns else ((), "127.0.0.1")
        cluster = stack.enter_context(start_emulators(emulators, "fast", wrapper=[*wrapper, "setsid"], host=host))
        print(f"  emulators: {emulators} processes on {host}"
              + (f" (namespace {PROVIDER_NETNS}: {', '.join(f'{k}={v}' for k, v in PROVIDER_SYSCTLS.items())})"
                 if args.provider_netns else " (this machine's listen queues)"), flush=True)
        return _measure(args, emulators, cluster)


def _measure(args, emulators: int, cluster) -> int:
    for member in cluster.members:
        try:
            os.setpriority(os.PRIO_PROCESS, member.pid, args.emulator_nice)
            if os.path.exists(f"/proc/{member.pid}/autogroup"):
                with open(f"/proc/{member.pid}/autogroup", "w") as fh:  # its own session's group (setsid)
                    fh.write(str(args.emulator_nice))
        except OSError as exc:
            print(f"  (could not renice emulator {member.pid}: {exc})")
    res = run_once(args, cluster)
    if res.run_path is None:  # refused before a run directory was made (exit 2: limits, cost, options)
        print(res.master.output[-3000:])
        return 1
    stats = cluster.stats()
    truth = cluster.sandboxes()
    rows = process_rows(res, res.metrics(), cluster)
    meta = res.meta()
    records = res.records()
    success = meta["status_histogram"].get("success", 0)
    agree = agreement(records, truth)
    ttl, peak = time_to_live(records, args.users)
    share = meta.get("generator_share") or {}
    held = share.get("held_ms") or {}
    overload = (stats.get("server") or {}).get("overload") or {}
    print()
    print(f"sandboxes: {len(records)} records, success {success}, status {meta['status_histogram']}, "
          f"failure classes {meta.get('failure_class_histogram')}")
    print(f"leaks: {stats['live']} live at the emulators after the run; emulators created {stats['created']}, "
          f"killed {stats['killed']}; exit code {res.master.returncode}; complete {meta.get('complete')}")
    print(f"target: {'MET' if success == args.users and stats['live'] == 0 and res.master.returncode == 0 else 'MISSED'}"
          f" ({args.users} successes, 0 leaks, exit 0)")
    print(f"wall: {res.wall_s:.1f} s; first create to {args.users} live: "
          f"{'never' if ttl is None else f'{ttl:.1f} s'} (peak live {peak})")
    for name in ("create", "readiness"):
        values = agree[name]
        p99 = H.percentile(values, 99) if values else None
        verdict = "MET" if p99 is not None and p99 <= AGREEMENT_TARGET_MS else "MISSED"
        print(f"agreement |measured - server| {name} ms: {dist(values)}  [{verdict}: p99 <= {AGREEMENT_TARGET_MS:g}]")
    verdicts = timeout_verdicts(records, truth, {"create": 60.0, "readiness": 30.0})
    for name, counts in verdicts.items():
        print(f"{name} timeouts against the emulators' record: {counts}")
    print(f"readiness connection set-up ms (inside first_command_ms): {dist(agree['readiness_setup'])}; "
          f"SYN retransmissions {sum(r.get('syn_retransmits') or 0 for r in records)}")
    print(f"generator's share: held phases p50 {held.get('p50')} ms, p99 {held.get('p99')} ms, "
          f"max {held.get('max')} ms; {share.get('delayed')} of {share.get('sandboxes_measured')} sandboxes "
          f"delayed > {share.get('limit_ms')} ms; worst {share.get('worst')}; generator failures "
          f"{meta.get('generator_failures')}")
    print(f"emulators: {emulators} processes, loop lag max {overload.get('loop_lag_ms', {}).get('max')} ms, "
          f"accept queue max {overload.get('accept_queue', {}).get('max')}, listen overflows "
          f"{overload.get('listen_overflows')}, drops {overload.get('listen_drops')}, CPU "
          f"{stats['server']['cpu_s']:.1f} s")
    print()
    print(H.table(["process", "peak RSS MiB", "peak fds (emulator: connections accepted)", "CPU s"], rows))
    if res.master.returncode != 0:
        print(res.master.output[-3000:])
    base_wall = None
    if not args.skip_baseline:
        cluster.reset()
        base, base_rows = H.run_baseline(args.users, cluster.url, workers=args.workers, timeout=args.timeout)
        st = cluster.stats()
        base_wall = base.wall_s
        print(f"\nbaseline FastHttpUser: wall {base.wall_s:.1f} s, creates answered {len(base_rows)}, "
              f"live after {st['live']}; loadgen/baseline wall {res.wall_s / base.wall_s:.2f}x")
    if args.sinks:
        sinks_run(args, cluster)
    if base_wall is None:
        print("\n(no baseline: --skip-baseline)")
    return 0


def sinks_run(args, cluster) -> None:
    """The same burst with Postgres and the object store on: every result in both."""
    sys.path.insert(0, str(H.REPO))
    from tests.pg_fixtures import fresh_database, query
    from tests.s3_fixtures import moto_server, new_bucket, s3_client

    cluster.reset()
    with fresh_database() as url, moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        env = {"DATABASE_URL": url, **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                                  "AWS_REGION", "AWS_ENDPOINT_URL_S3")}}
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        res = run_once(args, cluster, sinks_env=env, extra_args=["--bucket", bucket, "--prefix", prefix])
        meta = res.meta()
        run_id = meta["run_id"]
        rows = query(url, "SELECT count(*) FROM sandbox_results WHERE run_id = %s", (run_id,))[0][0]
        client = s3_client(endpoint)
        lines = 0
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/{run_id}/raw/"):
            for obj in page.get("Contents", []):
                lines += client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().count(b"\n")
        print(f"\nsinks run: exit {res.master.returncode}, sinks {meta.get('sinks')}; Postgres rows {rows}, "
              f"object-store chunk lines {lines} (expected {args.users} each): "
              f"{'MET' if rows == lines == args.users else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
