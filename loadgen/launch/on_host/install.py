"""Install: this checkout, shipped by the launcher, into REMOTE_DIR with its own venv.

Reads a tar stream from standard input (after this program): `source/...` is
the checkout's tracked files, `wheels/...` the dependency wheels this host's
wheel cache lacks (every wheel was built on the master's machine, so nothing
is fetched from the internet here). REMOTE_DIR is replaced only if an earlier
install made it (its marker file is there) or it is empty; the new tree is
unpacked beside it first. Prints one JSON line.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

INSTALL_MARKER = ".loadgen-install.json"


def fail(message):
    print(json.dumps({"ok": False, "error": message}))
    sys.exit(1)


def safe_name(name):
    parts = name.split("/")
    return not name.startswith("/") and ".." not in parts and all(parts)


def unpack(stream, staging, cache):
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile() or not safe_name(member.name):
                continue
            if member.name.startswith("source/"):
                target = os.path.join(staging, member.name[len("source/"):])
            elif member.name.startswith("wheels/") and member.name.count("/") == 1:
                target = os.path.join(cache, member.name[len("wheels/"):])
            else:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".partial"
            with tar.extractfile(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(partial, 0o755 if member.mode & 0o100 else 0o644)
            os.replace(partial, target)


def main(p):
    started = time.time()
    directory = os.path.abspath(os.path.expanduser(p["remote_dir"]))
    cache = os.path.expanduser(p["wheel_cache"])
    if directory in ("/", os.path.expanduser("~")):
        fail("refusing to install into %s itself; name a folder for loadgen with --remote-dir" % directory)
    if os.path.isdir(directory) and os.listdir(directory) and not os.path.exists(os.path.join(directory, INSTALL_MARKER)):
        fail("%s exists and was not made by --install; name another --remote-dir, or empty it" % directory)
    staging = directory + ".loadgen-new"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    os.makedirs(cache, exist_ok=True)
    unpack(sys.stdin.buffer, staging, cache)
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(staging, directory)

    venv = os.path.join(directory, ".venv")
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if made.returncode != 0:
        fail("python3 -m venv failed: %s" % made.stdout.decode(errors="replace").strip()[-800:])
    requirements = os.path.join(directory, ".loadgen-requirements.txt")
    with open(requirements, "w") as fh:
        fh.write("".join(line + "\n" for line in p["requirements"]))
    pip = os.path.join(cache, p["pip_wheel"], "pip")  # pip runs from its own wheel: no ensurepip needed
    installed = subprocess.run(
        [os.path.join(venv, "bin", "python"), pip, "install", "--no-index", "--find-links", cache, "--no-deps",
         "--no-compile", "--disable-pip-version-check", "--quiet", "-r", requirements,
         os.path.join(directory, p["loadgen_wheel"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PIP_NO_INPUT="1"))
    if installed.returncode != 0:
        fail("pip install failed: %s" % installed.stdout.decode(errors="replace").strip()[-1500:])
    # Byte-compile now, on every core (pip alone would do it on one): a worker that compiled its
    # imports at its first spawn would block its event loop for seconds and miss its heartbeats.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # (A file that does not compile, such as a template shipped as .py, only stays uncompiled.)
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "compileall", "-q", "-j", "0", venv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    marker = {"source": p["source"], "loadgen_version": p["loadgen_version"],
              "python_version": "%d.%d.%d" % sys.version_info[:3], "installed_at": time.time()}
    with open(os.path.join(directory, INSTALL_MARKER), "w") as fh:
        json.dump(marker, fh)
    print(json.dumps({"ok": True, "seconds": round(time.time() - started, 1), "remote_dir": directory}))
    sys.stdout.flush()
