"""The test hosts themselves (tests/testhosts.py): what each host has of its own, and that
nothing of a cluster outlives it, even when its owner is killed."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from loadgen.emulator import start_emulator
from tests import testhosts
from tests.locust_harness import wait_for
from tests.testhosts import REPO, Cluster

PORT_RANGE = "40000 40999"
hosts = testhosts.fixture(2, checkout=False, nofile={0: (1024, 4096)},
                          sysctls={1: {"net.ipv4.ip_local_port_range": PORT_RANGE, "net.core.somaxconn": "64"}})


def test_each_host_has_its_own_address_name_limits_and_sysctls(hosts):
    seen = []
    for host in hosts.hosts:
        out = hosts.ssh(host, "hostname; ip -4 -o addr show dev eth0; ulimit -Sn; ulimit -Hn; "
                              "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/core/somaxconn").stdout
        name, addr, soft, hard, port_range, somaxconn = out.splitlines()
        assert name == host.name and f"inet {host.address}/24" in addr
        seen.append((soft, hard, " ".join(port_range.split()), somaxconn))
    assert seen[0][:2] == ("1024", "4096")
    assert seen[1][2:] == (PORT_RANGE, "64")
    here = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    assert " ".join(here) != PORT_RANGE  # the machine's own sysctls are untouched


def test_a_host_with_the_checkout_runs_its_virtualenv():
    with Cluster.up(1) as cluster:
        python = REPO / ".venv" / "bin" / "python"
        if not python.exists():
            pytest.skip("this checkout has no .venv")
        out = cluster.ssh(cluster.hosts[0], f"{python} -c 'import loadgen, locust; print(loadgen.__file__)'")
        assert out.stdout.strip() == str(REPO / "loadgen" / "__init__.py")


def test_a_host_without_the_checkout_has_private_files(hosts):
    host = hosts.hosts[0]
    out = hosts.ssh(host, f"ls -A {REPO} | wc -l; echo mine > /tmp/probe; echo home > ~/probe; "
                          "python3 -c 'import loadgen' 2>&1 | tail -1").stdout.splitlines()
    assert out[0] == "0" and "No module named 'loadgen'" in out[1]
    assert host.local_path("/tmp/probe").read_text() == "mine\n"
    assert host.local_path("/root/probe").read_text() == "home\n"
    assert not os.path.exists("/tmp/probe") and not os.path.exists("/root/probe")
    assert not hosts.hosts[1].local_path("/tmp/probe").exists()


def test_hosts_reach_this_machine_and_each_other_on_the_bridge(hosts):
    with start_emulator("fast", host=hosts.root_address) as emu:
        probe = f"import urllib.request; print(urllib.request.urlopen({emu.url + '/_emulator/stats'!r}).status)"
        assert hosts.ssh(hosts.hosts[0], f"python3 -c {probe!r}").stdout.strip() == "200"
    other = hosts.hosts[1]
    assert hosts.ssh(hosts.hosts[0], f"ssh-keyscan -T 5 {other.address} 2>/dev/null | grep -c ed25519").stdout.strip() == "1"


def test_a_cut_link_stops_traffic_until_restored(hosts):
    host = hosts.hosts[1]
    listener = socket.create_server((hosts.root_address, 0))
    port = listener.getsockname()[1]
    threading.Thread(target=_accept_all, args=(listener,), daemon=True).start()
    connect = f"python3 -c 'import socket; socket.create_connection((\"{hosts.root_address}\", {port}), 2)'"
    try:
        hosts.set_link(host, False)
        assert hosts.enter(host, ["sh", "-c", connect], check=False).returncode != 0
        hosts.set_link(host, True)  # (the first packets may wait for the neighbour to be resolved again)
        wait_for(lambda: hosts.enter(host, ["sh", "-c", connect], check=False).returncode == 0, 30,
                 interval=0.5, what="traffic after the link is restored")
    finally:
        hosts.set_link(host, True)
        listener.close()


def _accept_all(listener: socket.socket) -> None:
    try:
        while True:
            listener.accept()[0].close()
    except OSError:
        return  # closed


def _gone(slot: int) -> list:
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [line for line in netns.splitlines() if line.startswith(f"lg{slot}h")]
    left += [line.split(":")[1].strip() for line in links.splitlines()
             if line.split(":")[1].strip().split("@")[0] in (f"lgbr{slot}", f"lg{slot}v0", f"lg{slot}v1")]
    if (testhosts.ROOT / f"slot-{slot}").exists():
        left.append(str(testhosts.ROOT / f"slot-{slot}"))
    return left


def test_everything_is_removed_after_a_failure_and_after_a_killed_owner(hosts):
    # a failing body: `with` still removes processes, namespaces, veths, bridge and folder
    with pytest.raises(RuntimeError, match="on purpose"):
        with Cluster.up(1) as cluster:
            slot, sshd = cluster.slot, cluster.hosts[0].pid
            raise RuntimeError("on purpose")
    assert _gone(slot) == [] and not os.path.exists(f"/proc/{sshd}")
    # an owner killed outright leaves its cluster behind; the next `up` removes it first
    script = textwrap.dedent("""
        import json, sys, time
        from tests.testhosts import Cluster
        c = Cluster.up(1)
        print(json.dumps(c.describe()), flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        left = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert (testhosts.ROOT / f"slot-{left['slot']}").exists()
    with Cluster.up(1) as fresh:
        stale_pid = left["hosts"][0]["sshd_pid"]
        assert fresh.hosts[0].pid != stale_pid and not _netns_has(stale_pid)
        if fresh.slot != left["slot"]:
            assert _gone(left["slot"]) == []
    assert _gone(fresh.slot) == []


def _netns_has(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False
