"""The rows of docs/reliability.md: each host-loss scenario's test records what it measured.

A test calls `row(...)` with what it did and counted; at the end of the
session the table of every row recorded is printed (tests/conftest.py), so
the command that ran the tests is the command that produced the table:

    .venv/bin/python -m pytest tests/test_host_loss_ssh.py \\
        "tests/test_launch_shards_ssh.py::test_an_unreachable_host_is_refused_before_anything_is_created"
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, List

ROWS: List[dict] = []
COLUMNS = ("scenario", "what was done", "records expected", "received", "duplicated", "lost",
           "leaked before reap", "leaked after reap", "exit code")


def duplicated(records: Iterable[dict]) -> int:
    """Records beyond the first of their sandbox_idx (0: every result exactly once)."""
    return sum(n - 1 for n in Counter(r["sandbox_idx"] for r in records).values() if n > 1)


def row(scenario: str, done: str, *, expected: int, records: list, leaked_before: int, leaked_after: int,
        exit_code: int) -> dict:
    received = len({r["sandbox_idx"] for r in records})
    entry = {"scenario": scenario, "what was done": done, "records expected": expected, "received": received,
             "duplicated": duplicated(records), "lost": expected - received,
             "leaked before reap": leaked_before, "leaked after reap": leaked_after, "exit code": exit_code}
    ROWS.append(entry)
    return entry


def table(rows: List[dict]) -> List[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return lines
