"""What the launcher runs on a shard host, over SSH.

Each module here is a small, self-contained Python program for the host's own
`python3` (standard library only: the host may not have loadgen yet). The
launcher sends a module's source, followed by `main(PARAMS)`, on SSH's
standard input, to a fixed bootstrap (`BOOTSTRAP`) that reads and runs it. So
every parameter, secrets included, travels on standard input: nothing of it
is on a command line or in an environment on the host. Whatever the program
prints (one JSON line, or a tar stream) is its answer. Data that follows the
program on standard input (an install's files) is the program's to read.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The whole command line the host sees: read a length, then that many bytes of program.
BOOTSTRAP = ("import sys; n = int(sys.stdin.buffer.readline()); "
             "exec(compile(sys.stdin.buffer.read(n), '<loadgen launch>', 'exec'))")


def program(name: str, params: dict) -> bytes:
    """The bytes to send: a length line, the module's source and the call of its main()."""
    source = (HERE / f"{name}.py").read_text()
    call = f"import json as _json\nmain(_json.loads({json.dumps(json.dumps(params))}))\n"
    body = f"{source}\n\n{call}".encode()
    return str(len(body)).encode() + b"\n" + body
