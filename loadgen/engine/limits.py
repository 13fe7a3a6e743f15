"""The host's limits, raised where a process may raise them and checked before anything is created.

A burst that runs out of file descriptors or ephemeral ports fails in the
generator, and the failures look like the provider's (connections refused,
resets). So every loadgen process raises its soft descriptor limit to the
hard limit at start, and a run refuses to start (exit 2, nothing created)
when what it asks for cannot fit:

- descriptors: each sandbox holds up to ``fds_per_sandbox`` connections at
  once (the adapter says how many: a control-plane connection during its
  create, a data-plane one during its commands), plus a base for the
  process's own files and sockets;
- ports: every connection to one destination (address and port) needs its
  own local port from ``net.ipv4.ip_local_port_range``, so the sandboxes of
  one host that share a destination (the provider's API; the emulator,
  where everything goes to one address) must fit in that range.

What was found goes into run.json, per process and per host.
"""

from __future__ import annotations

import math
from typing import Optional

from loadgen.host import process_limits

__all__ = ["BASE_FDS", "check", "even_shares", "fds_needed", "process_limits"]

BASE_FDS = 128  # logs, journals, the run directory, Locust's sockets, the asyncio bridge's pipes, headroom


def fds_needed(sandboxes: int, fds_per_sandbox: int) -> int:
    return sandboxes * fds_per_sandbox + BASE_FDS


def check(processes: dict[str, dict], shares: dict[str, int], fds_per_sandbox: int,
          connections_per_destination: int, destination_of: dict[str, str]) -> list[str]:
    """Problems (each naming its fix) with running ``shares[p]`` sandboxes in each process ``p``.

    ``processes``: each process's ``process_limits()``; ``destination_of``:
    where each process's sandboxes connect (processes of one host that share
    a destination share its port range)."""
    problems = []
    for name, share in sorted(shares.items()):
        limits = processes.get(name) or {}
        soft = limits.get("nofile_soft")
        need = fds_needed(share, fds_per_sandbox)
        if soft is not None and need > soft:
            problems.append(
                f"{share} sandboxes in process {name} (host {limits.get('host')}) need about {need} file descriptors "
                f"({fds_per_sandbox} per sandbox + {BASE_FDS}), but it may open only {soft} (ulimit -n; its hard "
                f"limit is {limits.get('nofile_hard')}): raise the limit (ulimit -n {_round_up(need)}, or "
                f"LimitNOFILE= for a systemd unit), or spread the sandboxes over more worker processes or hosts "
                f"(at most {max(0, (soft - BASE_FDS) // fds_per_sandbox)} per process at this limit)")
    by_destination: dict[tuple, int] = {}
    ports_of: dict[tuple, Optional[int]] = {}
    for name, share in shares.items():
        limits = processes.get(name) or {}
        key = (limits.get("host"), destination_of.get(name, ""))
        by_destination[key] = by_destination.get(key, 0) + share * connections_per_destination
        ports_of[key] = limits.get("ephemeral_ports")
    for (host, destination), connections in sorted(by_destination.items(), key=lambda kv: str(kv[0])):
        ports = ports_of[(host, destination)]
        if ports is not None and connections > ports:
            problems.append(
                f"host {host} would open about {connections} connections at once to {destination or 'one address'}, "
                f"but its ephemeral port range has only {ports} ports: widen it "
                f"(sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"), or spread the sandboxes over more hosts"
                + (" or more emulator processes (each its own address)" if destination.startswith("http://127.")
                   or "localhost" in destination else ""))
    return problems


def even_shares(users: int, workers: list[str]) -> dict[str, int]:
    """How Locust spreads ``users`` over ``workers``: evenly, the first ones one more."""
    if not workers:
        return {}
    base, extra = divmod(users, len(workers))
    return {w: base + (1 if i < extra else 0) for i, w in enumerate(sorted(workers))}


def _round_up(n: int) -> int:
    return int(2 ** math.ceil(math.log2(max(n, 1))))
