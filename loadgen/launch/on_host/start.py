"""Start: this host's worker processes, tuned, detached, with the forwarded environment.

Sets the descriptor limit the workers get (and widens the ephemeral port
range when the launcher asks and is allowed), then starts each worker in a
session of its own so that it outlives this SSH connection. Each worker reads
the forwarded environment from its standard input (`loadgen.launch.worker`),
so no secret is on its command line or in its initial environment. Prints
one JSON line: the pids and the limits as they are now.
"""

import json
import os
import resource
import subprocess
import sys

PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def read_range():
    with open(PORT_RANGE) as fh:
        return [int(x) for x in fh.read().split()]


def widen_ports(value, via):
    if via == "root":
        with open(PORT_RANGE, "w") as fh:
            fh.write(value)
    else:
        subprocess.run(["sudo", "-n", "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=" + value], check=True)


def main(p):
    workdir = os.path.expanduser(p["workdir"])
    for sub in ("logs", "pids"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    out = {"nofile_before": list(resource.getrlimit(resource.RLIMIT_NOFILE)), "port_range_before": read_range()}
    soft, hard = out["nofile_before"]
    want = p["nofile"]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))  # above the hard limit: root only
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    if p.get("port_range"):
        try:
            widen_ports(p["port_range"], p["port_range_via"])
        except (OSError, subprocess.CalledProcessError) as e:
            out["port_range_error"] = str(e)
    out["port_range"] = read_range()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    pids = []
    for i in range(1, p["workers"] + 1):
        pidfile = os.path.join(workdir, "pids", "worker-%d.pid" % i)
        argv = [p["python"], "-m", "loadgen.launch.worker", "--pidfile", pidfile, "--"] + p["locust_args"]
        with open(os.path.join(workdir, "logs", "worker-%d.log" % i), "ab") as log:
            proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        proc.stdin.write((json.dumps(p["secrets"]) + "\n").encode())
        proc.stdin.close()
        pids.append(proc.pid)
    out["pids"] = pids
    print(json.dumps(out))
    sys.stdout.flush()
