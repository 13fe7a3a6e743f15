"""The machine a process runs on: its descriptor limit (raised), its port range, its listen backlog.

Every loadgen process (master, workers, the single process, the emulator)
raises its soft descriptor limit to the hard limit at start: many hosts start
processes at 1,024, which a burst exhausts long before the provider does.
``loadgen.engine.limits`` checks a run against what is found here.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
SOMAXCONN_FILE = "/proc/sys/net/core/somaxconn"


def raise_descriptor_limit() -> tuple[Optional[int], Optional[int]]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (soft, hard) after."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard_target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    else:
        hard_target = hard
    if soft != resource.RLIM_INFINITY and soft < hard_target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_target, hard))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _finite(soft), _finite(hard)


def _finite(value: int) -> Optional[int]:
    try:
        import resource

        return None if value == resource.RLIM_INFINITY else int(value)
    except ImportError:  # pragma: no cover
        return int(value)


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def port_range() -> Optional[tuple[int, int]]:
    text = _read(PORT_RANGE_FILE)
    try:
        low, high = (int(x) for x in text.split())
        return low, high
    except (AttributeError, ValueError):
        return None


def open_descriptors() -> Optional[int]:
    """How many descriptors this process has open, cheaply enough to ask every second.

    Linux 6.2 and later give the count as the size of /proc/self/fd, an O(1)
    look; listing that folder (psutil's num_fds) costs a syscall and a name per
    descriptor, which at 8,000 held connections was 5 % of a worker's CPU at
    one sample a second. Older kernels report 0 there, and get the listing."""
    try:
        size = os.stat("/proc/self/fd").st_size
        return size if size > 0 else len(os.listdir("/proc/self/fd")) - 1  # (less the listing's own descriptor)
    except OSError:
        return None


def process_limits() -> dict:
    """This process's limits (after raising them), and its host's."""
    soft, hard = raise_descriptor_limit()
    ports = port_range()
    somaxconn = _read(SOMAXCONN_FILE)
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "nofile_soft": soft,
        "nofile_hard": hard,
        "ip_local_port_range": list(ports) if ports else None,
        "ephemeral_ports": (ports[1] - ports[0] + 1) if ports else None,
        "somaxconn": int(somaxconn) if somaxconn and somaxconn.isdigit() else None,
    }
