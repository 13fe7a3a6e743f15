"""The identity/reuse probe: is this sandbox a fresh container, or one an earlier sandbox used?

Optional (``--reuse-probe``). When on, the lifecycle runs it first in the
readiness phase, before ``node -v`` and inside the timed window, so time to
interactive includes it, as the daily benchmark defines it. It is one shell
command that:

- reads the mount, pid and uts namespace ids, the cgroup (hashed here, so the
  image needs no sha256sum), the boot id and pid 1 (its name and start time);
- prints the markers earlier sandboxes left in ``/tmp`` and ``/var/tmp`` (two
  places, so a container whose tmpfs was wiped is still caught), then adds
  this sandbox's own.

A marker that is not this sandbox's own means the container was used before:
the iteration fails (``readiness_failed``, error code ``container_reused``),
whatever ``node -v`` would have said. The signals only warn, and only when
three or more of them repeat between two sandboxes (``loadgen.report.reuse``):
VMs restored from one snapshot share a boot id and pid 1's start time, and
every VM's initial namespaces have the same ids, so repetition alone proves
nothing, while a marker cannot be there by chance.

The script is wrapped in ``sh -c '...'`` so that it means the same whether a
provider runs commands through a shell (e2b, codesandbox) or as an argument
vector, and every part sends its errors to /dev/null because some providers
merge stderr into stdout.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Optional

from loadgen.result import CONTAINER_REUSED, ErrorInfo, FailureClass, truncate

MARKER_FILES = ("/tmp/.loadgen-reuse-marker", "/var/tmp/.loadgen-reuse-marker")
MARKER_PREFIX = "loadgen-marker:"
MAX_MARKERS_KEPT = 5
END = "@end"

_READS = (
    ("mnt_ns", "readlink /proc/self/ns/mnt"),
    ("pid_ns", "readlink /proc/self/ns/pid"),
    ("uts_ns", "readlink /proc/self/ns/uts"),
    ("cgroup", "cat /proc/self/cgroup"),
    ("boot_id", "cat /proc/sys/kernel/random/boot_id"),
    ("pid1", "cat /proc/1/stat"),
    ("markers", "cat " + " ".join(MARKER_FILES)),
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def marker_token(run_id: str, sandbox_idx: int) -> str:
    """This sandbox's marker: the run, the index and a nonce (a rerun with the same run id is still told apart).
    Only characters that need no quoting in a shell."""
    return f"{MARKER_PREFIX}{_UNSAFE.sub('_', run_id)}:{sandbox_idx}:{secrets.token_hex(6)}"


def command(token: str) -> str:
    """The probe: one `sh -c` script whose sections start with `@name` lines."""
    parts = []
    for name, read in _READS:
        parts += [f"echo @{name}", f"{read} 2>/dev/null"]
    parts += [f"echo {token} 2>/dev/null >> {path}" for path in MARKER_FILES]
    parts.append(f"echo {END}")
    return "sh -c '" + "; ".join(parts) + "'"


def _sections(stdout: str) -> dict:
    sections: dict = {}
    current = None
    for line in (stdout or "").splitlines():
        if line.startswith("@") and line[1:] in {name for name, _ in _READS} | {END[1:]}:
            current = line[1:]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def _first(lines: list) -> Optional[str]:
    for line in lines:
        if line.strip():
            return truncate(line.strip(), 200)
    return None


def _pid1(lines: list) -> Optional[str]:
    """`1 (init) S 0 ...` -> "init@<start time in clock ticks>" (field 22 of /proc/1/stat)."""
    text = " ".join(lines)
    left, right = text.find("("), text.rfind(")")
    if left < 0 or right < left:
        return None
    fields = text[right + 1:].split()
    if len(fields) < 20:
        return None
    return truncate(f"{text[left + 1:right]}@{fields[19]}", 200)


def parse(stdout: str, token: str) -> dict:
    """The fingerprint kept in the record: every signal (None when unreadable), the markers of
    earlier sandboxes found, and whether the script ran to its end."""
    s = _sections(stdout)
    cgroup = "\n".join(line for line in s.get("cgroup", []) if line.strip())
    markers = []
    for line in s.get("markers", []):
        line = line.strip()
        if line.startswith(MARKER_PREFIX) and line != token and line not in markers:
            markers.append(line)
    fingerprint = {  # the keys of FINGERPRINT_SIGNALS, in order, then what the markers said
        "mnt_ns": _first(s.get("mnt_ns", [])),
        "pid_ns": _first(s.get("pid_ns", [])),
        "uts_ns": _first(s.get("uts_ns", [])),
        "cgroup_hash": hashlib.sha256(cgroup.encode()).hexdigest()[:16] if cgroup else None,
        "boot_id": _first(s.get("boot_id", [])),
        "pid1": _pid1(s.get("pid1", [])),
        "earlier_markers": [truncate(m, 200) for m in markers[:MAX_MARKERS_KEPT]],
        "earlier_marker_count": len(markers),
        "complete": END[1:] in s,
    }
    return fingerprint


class ProbeFailed(Exception):
    """The probe did not give its verdict, or its verdict is a failure; ``info`` is the record's error."""

    error_code = "probe_failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.info = ErrorInfo(FailureClass.OTHER.value, None, self.error_code, type(self).__name__, truncate(message))


class ContainerReused(ProbeFailed):
    error_code = CONTAINER_REUSED


def verdict(exit_code, fingerprint: dict) -> None:
    """Raise ProbeFailed unless the probe ran to its end and found no earlier sandbox's marker."""
    if exit_code != 0 or not fingerprint["complete"]:
        raise ProbeFailed(f"the identity/reuse probe did not run to its end (exit code {exit_code})")
    if fingerprint["earlier_markers"]:
        n = fingerprint["earlier_marker_count"]
        raise ContainerReused(f"reused container: {n} marker{'s' if n > 1 else ''} of an earlier sandbox in "
                              f"{' or '.join(MARKER_FILES)} (first: {fingerprint['earlier_markers'][0]})")
