"""This host's TCP sockets by state, from /proc/net/tcp: what a client left behind when it closed."""

from __future__ import annotations


def time_wait_sockets_towards(port: int) -> int:
    """This host's TIME_WAIT sockets whose peer is 127.0.0.1:port (the client's side of closed connections)."""
    count = 0
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[3] == "06" and int(fields[2].split(":")[1], 16) == port:
                count += 1
    return count
