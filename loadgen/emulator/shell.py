"""A tiny pretend shell: what a sandbox answers to a command.

Nothing is executed. The emulator only has to give plausible answers to the
commands a load generator sends (`node -v`, `echo`, `exit N`, `sleep N`), with
`;`, `&&` and `||` between them, so that SDKs see real output, exit codes and
durations. Anything else is "command not found", exit 127, like bash.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import List, Tuple


@dataclass
class CommandResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_s: float


_FAST_PATH = {}  # command text -> CommandResult, for the few hot commands


def run(command: str, node_version: str = "v20.18.1") -> CommandResult:
    """Interpret `command` as bash would, without running anything."""
    key = (command, node_version)
    cached = _FAST_PATH.get(key)
    if cached is not None:
        return cached
    result = _run(command, node_version)
    if result.duration_s == 0 and len(_FAST_PATH) < 256:
        _FAST_PATH[key] = result
    return result


def _split(command: str) -> List[Tuple[str, List[str]]]:
    """Split into (operator-before, words) pairs; operator is '', ';', '&&' or '||'."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    parts: List[Tuple[str, List[str]]] = []
    op, words = "", []
    for token in lexer:
        if token in (";", "&&", "||", "\n"):
            parts.append((op, words))
            op, words = token, []
        else:
            words.append(token)
    parts.append((op, words))
    return [(o, w) for o, w in parts if w]


def _run(command: str, node_version: str) -> CommandResult:
    try:
        parts = _split(command)
    except ValueError as e:  # unbalanced quotes
        return CommandResult(b"", f"bash: -c: line 1: syntax error: {e}\n".encode(), 2, 0.0)
    out, err, code, duration = [], [], 0, 0.0
    for op, words in parts:
        if (op == "&&" and code != 0) or (op == "||" and code == 0):
            continue
        name, args = words[0], words[1:]
        if name == "exit":
            try:
                code = int(args[0]) % 256 if args else code
            except ValueError:
                err.append(f"bash: line 1: exit: {args[0]}: numeric argument required\n")
                code = 2
            break
        code = _builtin(name, args, node_version, out, err)
        if name == "sleep" and code == 0:
            duration += _seconds(args)
    return CommandResult("".join(out).encode(), "".join(err).encode(), code, duration)


def _seconds(args: List[str]) -> float:
    total = 0.0
    for a in args:
        unit = 1.0
        if a and a[-1] in "smhd":
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[a[-1]]
            a = a[:-1]
        total += float(a) * unit
    return total


def _builtin(name: str, args: List[str], node_version: str, out: list, err: list) -> int:
    if name == "node" and args and args[0] in ("-v", "--version"):
        out.append(node_version + "\n")
        return 0
    if name == "echo":
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        out.append(" ".join(args) + ("\n" if newline else ""))
        return 0
    if name in ("true", ":"):
        return 0
    if name == "false":
        return 1
    if name == "sleep":
        try:
            if not args or _seconds(args) < 0:
                raise ValueError
        except ValueError:
            err.append(f"sleep: invalid time interval {' '.join(args)!r}\n")
            return 1
        return 0
    if name == "pwd":
        out.append("/home/user\n")
        return 0
    if name == "whoami":
        out.append("user\n")
        return 0
    if name == "uname":
        out.append("Linux\n")
        return 0
    err.append(f"bash: line 1: {name}: command not found\n")
    return 127
