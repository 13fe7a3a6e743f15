"""Probe: what this host has, as one JSON line (the launcher's preflight judges it).

Nothing is changed on the host. Runs under any python3 (it must be able to say
that the interpreter is too old).
"""

import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys

INSTALL_MARKER = ".loadgen-install.json"


def read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def git_identity(directory):
    """The commit of a git checkout, with a digest of its uncommitted changes to tracked files
    (the master computes the same for its own checkout)."""
    if not os.path.exists(os.path.join(directory, ".git")) or shutil.which("git") is None:
        return None

    def git(*args):
        return subprocess.run(["git", "-C", directory] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=60)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return None
    commit = head.stdout.decode().strip()
    if not git("status", "--porcelain", "--untracked-files=no").stdout.strip():
        return commit
    diff = git("diff", "HEAD", "--binary").stdout
    return commit + "+dirty." + hashlib.sha256(diff).hexdigest()[:12]


def venv_facts(python):
    code = ("import importlib.util, json, sys\n"
            "out = {'python_version': '%d.%d.%d' % sys.version_info[:3], 'missing': []}\n"
            "for m in ('loadgen', 'locust', 'gevent'):\n"
            "    if importlib.util.find_spec(m) is None: out['missing'].append(m)\n"
            "if 'loadgen' not in out['missing']:\n"
            "    import importlib.metadata as md\n"
            "    try: out['loadgen_version'] = md.version('loadgen')\n"
            "    except Exception: out['loadgen_version'] = None\n"
            "print(json.dumps(out))\n")
    try:
        out = subprocess.run([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    if out.returncode != 0:
        return {"error": out.stderr.decode(errors="replace").strip()[-500:]}
    return json.loads(out.stdout.decode())


def main(p):
    out = {"hostname": socket.gethostname(), "python": sys.executable,
           "python_version": "%d.%d.%d" % sys.version_info[:3], "cores": os.cpu_count(),
           "root": os.geteuid() == 0}
    meminfo = read("/proc/meminfo", "")
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            out["memory_bytes"] = int(line.split()[1]) * 1024
    out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["nr_open"] = int(read("/proc/sys/fs/nr_open", "1048576"))
    out["port_range"] = [int(x) for x in read("/proc/sys/net/ipv4/ip_local_port_range", "32768 60999").split()]
    out["somaxconn"] = int(read("/proc/sys/net/core/somaxconn", "4096"))
    out["sudo"] = False
    if not out["root"] and shutil.which("sudo"):
        out["sudo"] = subprocess.run(["sudo", "-n", "true"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL).returncode == 0
    out["venv_module"] = subprocess.run([sys.executable, "-c", "import venv"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL).returncode == 0

    directory = os.path.expanduser(p["remote_dir"])
    out["remote_dir"] = directory
    out["remote_dir_exists"] = os.path.isdir(directory)
    out["remote_dir_empty"] = out["remote_dir_exists"] and not os.listdir(directory)
    marker = read(os.path.join(directory, INSTALL_MARKER))
    out["install"] = json.loads(marker) if marker else None
    out["source"] = out["install"]["source"] if out["install"] else git_identity(directory)
    out["venv_dir"] = os.path.expanduser(p.get("venv") or os.path.join(directory, ".venv"))
    python = os.path.join(out["venv_dir"], "bin", "python")
    if os.path.exists(python):
        out["venv_python"] = python
        out["venv"] = venv_facts(python)
    locustfile = os.path.join(directory, os.path.expanduser(p["locustfile"]))
    out["locustfile"] = locustfile
    out["locustfile_exists"] = os.path.isfile(locustfile)

    try:
        socket.create_connection((p["master_host"], p["master_port"]), p.get("connect_timeout", 5)).close()
        out["master_reachable"] = True
    except OSError as e:
        out["master_reachable"] = False
        out["master_error"] = str(e)
    run_dir = p.get("run_dir") or ""
    if os.path.isabs(run_dir):  # (a relative one is taken inside the launch's own folder)
        existing = run_dir
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        out["run_dir_writable"] = os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)
    cache = os.path.expanduser(p["wheel_cache"])
    out["wheels"] = sorted(n for n in os.listdir(cache) if n.endswith(".whl")) if os.path.isdir(cache) else []
    print(json.dumps(out))
