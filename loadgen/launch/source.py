"""What `--install` ships: this checkout, and every wheel it needs, built on this machine.

- `identity(checkout)`: the commit, plus a digest of uncommitted changes to
  tracked files; a host runs the same code as the master exactly when its
  identity is the same.
- `Wheelhouse`: the pinned closure of loadgen's dependencies as installed
  here (the versions the master runs), built into wheels once per
  dependency set and cached (`~/.cache/loadgen/wheelhouse` by default), plus
  pip's own wheel (so a host needs no ensurepip) and a wheel of loadgen
  itself built from this checkout's tracked files. Building needs the package
  index once; after that nothing is fetched, here or on the hosts.
- `install_stream(...)`: the tar stream the host's install program reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as md
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from loadgen.launch.on_host.probe import INSTALL_MARKER, git_identity

CHECKOUT = Path(__file__).resolve().parents[2]
DIST = ".loadgen-dist"  # inside the installed tree: loadgen's own wheel, built from that tree


class BuildError(RuntimeError):
    pass


def identity(checkout: Path = CHECKOUT) -> Optional[str]:
    """This checkout's identity (see on_host/probe.py), or the one its install marker records."""
    found = git_identity(str(checkout))
    if found:
        return found
    marker = checkout / INSTALL_MARKER
    if marker.exists():
        import json

        return json.loads(marker.read_text()).get("source")
    return None


def tracked_files(checkout: Path = CHECKOUT) -> List[str]:
    out = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z"], capture_output=True, check=True)
    names = [n for n in out.stdout.decode().split("\0") if n]
    return [n for n in names if (checkout / n).is_file()]  # a tracked file deleted in the work tree is not shipped


def untracked_files(checkout: Path = CHECKOUT) -> List[str]:
    """Files git does not track (and does not ignore): --install does not ship them."""
    out = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--others", "--exclude-standard"],
                         capture_output=True)
    return [n for n in out.stdout.decode().split("\0") if n] if out.returncode == 0 else []


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_closure(root: str = "loadgen") -> List[str]:
    """`name==version` for every distribution `root` needs, as installed in this environment."""
    from packaging.requirements import Requirement

    versions = {}
    done = set()
    todo = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise BuildError(f"{name} is not installed here: run the launcher from loadgen's virtualenv") from None
        key = _canonical(dist.metadata["Name"])
        versions[key] = f"{dist.metadata['Name']}=={dist.version}"
        for extra in ("", *sorted(extras)):
            if (key, extra) in done:
                continue
            done.add((key, extra))
            for text in dist.requires or []:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": extra}):
                    todo.append((req.name, frozenset(req.extras)))
    versions.pop(_canonical(root), None)
    return sorted(versions.values(), key=str.lower)


def python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # two launchers (or test runs) building the same cache wait for each other
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip(args: Sequence[str], what: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join(line for line in (out.stderr or out.stdout).splitlines() if "WARNING" not in line)[-1500:]
        raise BuildError(f"could not build {what}: {tail}")


class Wheelhouse:
    """The wheels of one dependency set (cached by its digest), and loadgen's own wheel."""

    def __init__(self, cache: Path, checkout: Path = CHECKOUT):
        self.cache = Path(cache).expanduser()
        self.checkout = checkout
        self.requirements = requirement_closure() + [f"pip=={md.version('pip')}"]
        digest = hashlib.sha256("\n".join([python_tag(), *self.requirements]).encode()).hexdigest()[:16]
        self.folder = self.cache / f"deps-{python_tag()}-{digest}"
        self.source = identity(checkout)
        self.loadgen_version = md.version("loadgen")

    @property
    def deps(self) -> List[str]:
        """The pinned requirements the host installs (pip is only the installer)."""
        return [r for r in self.requirements if not r.lower().startswith("pip==")]

    def build(self, progress=print) -> None:
        with _locked(self.cache):
            if not (self.folder / "complete").exists():
                progress(f"building {len(self.requirements)} dependency wheels once into {self.folder} "
                         "(cached for later launches)")
                partial = self.folder.with_name(self.folder.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                reqs = partial / "requirements.txt"
                reqs.write_text("".join(r + "\n" for r in self.requirements))
                _pip(["wheel", "--no-deps", "--wheel-dir", str(partial), "-r", str(reqs)], "the dependency wheels")
                (partial / "complete").write_text("")
                os.replace(partial, self.folder)
            if not self.loadgen_wheel_path().exists():
                self._build_loadgen()

    def _loadgen_folder(self) -> Path:
        return self.cache / f"loadgen-{self.source or 'unknown'}"

    def loadgen_wheel_path(self) -> Path:
        return self._loadgen_folder() / f"loadgen-{self.loadgen_version}-py3-none-any.whl"

    def _build_loadgen(self) -> None:
        folder = self._loadgen_folder()
        with tempfile.TemporaryDirectory(prefix="loadgen-source-") as tmp:
            tree = Path(tmp) / "loadgen"
            for name in tracked_files(self.checkout):
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.checkout / name, tree / name)
            out = Path(tmp) / "wheel"
            _pip(["wheel", "--no-deps", "--wheel-dir", str(out), str(tree)], "loadgen's wheel")
            built = next(out.glob("loadgen-*.whl"))
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, self.loadgen_wheel_path())

    def wheel_files(self) -> List[Path]:
        """The dependency wheels (pip's included); loadgen's own travels with the source."""
        return sorted(self.folder.glob("*.whl"))

    def pip_wheel(self) -> str:
        return next(p.name for p in self.folder.glob("pip-*.whl"))

    def install_params(self, remote_dir: str, wheel_cache: str) -> dict:
        return {"remote_dir": remote_dir, "wheel_cache": wheel_cache, "source": self.source,
                "loadgen_version": self.loadgen_version, "requirements": self.deps,
                "pip_wheel": self.pip_wheel(), "loadgen_wheel": f"{DIST}/{self.loadgen_wheel_path().name}"}

    def install_stream(self, host_has: Sequence[str]) -> Iterator[bytes]:
        """The tar stream for one host: the tracked files and loadgen's wheel built from them (always),
        and the dependency wheels its cache lacks."""
        wheel = self.loadgen_wheel_path()
        return _tar_chunks([(f"source/{n}", self.checkout / n) for n in tracked_files(self.checkout)]
                           + [(f"source/{DIST}/{wheel.name}", wheel)]
                           + [(f"wheels/{w.name}", w) for w in self.wheel_files() if w.name not in set(host_has)])


class _Chunks(io.RawIOBase):
    """A write-only file that hands out what was written, for streaming a tar."""

    def __init__(self):
        self.parts: List[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        return len(b)


def _tar_chunks(members) -> Iterator[bytes]:
    sink = _Chunks()
    with tarfile.open(fileobj=sink, mode="w|") as tar:
        for arcname, path in members:
            tar.add(str(path), arcname=arcname, recursive=False)
            if sink.parts:
                yield b"".join(sink.parts)
                sink.parts.clear()
    if sink.parts:
        yield b"".join(sink.parts)
