"""Bad input is refused before anything is created: exit code 2, one line naming the fix, zero creates.

Each case runs the real ``locust`` command against the emulator fixture,
whose ground truth proves that not one create request arrived, and checks
that no run directory was made. Transient sink trouble is not refused (the
run's retries and backlog handle it): that is covered by the sink tests.
"""

from __future__ import annotations

import pytest

from tests.locust_harness import run_locust
from tests.pg_fixtures import fresh_database
from tests.s3_fixtures import moto_server

CASES = [
    (["-u", "0"], "the number of users (-u) must be at least 1 (got 0)"),
    (["-u", "-5"], "the number of users (-u) must be at least 1 (got -5)"),
    (["--database-url", "postgresql://postgres@127.0.0.1:1/postgres"],
     "postgres sink: nothing accepts connections at that host and port"),
    (["--database-url", "postgres ql://not a url"], "postgres sink: the database URL is malformed"),
    (["--database-url", "postgresql://postgres@127.0.0.1:5432/loadgen_no_such_database"],
     "postgres sink: the database does not exist"),
    (["--database-url", "postgresql://loadgen_no_such_role@127.0.0.1:5432/postgres"],
     "postgres sink: the database refused the login"),
    (["--database-url", "postgresql://postgres@no-such-host.invalid:5432/postgres"],
     "postgres sink: the database host is unknown"),
    (["--shard-index", "3", "--shard-count", "2"], "--shard-index must be between 0 and --shard-count - 1"),
    (["--min-success-rate", "1.5"], "--min-success-rate must be between 0 and 1"),
    (["--master-heartbeat-timeout", "2"], "--master-heartbeat-timeout must be at least 5 s"),
]


def _refused(run, message):
    assert run.returncode == 2, run.output[-3000:]
    lines = [line for line in run.output.splitlines() if "error:" in line]
    assert any(message in line for line in lines), run.output[-3000:]
    assert "Traceback" not in run.output


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a)[:40] for a, _ in CASES])
def test_bad_input_is_refused_with_exit_2_and_nothing_created(tmp_path, emulator, args, message):
    users = args[1] if args[0] == "-u" else "3"
    rest = args[2:] if args[0] == "-u" else args
    run = run_locust("local.py", 3, tmp_path, ["--emulator-url", emulator.url, "-u", users, *rest], timeout=90)
    _refused(run, message)
    assert emulator.stats()["requests"] == 0
    assert not tmp_path.exists() or not any(p.is_dir() for p in tmp_path.iterdir())


def test_an_unknown_emulator_profile_is_refused_before_the_emulator_starts(tmp_path):
    run = run_locust("local.py", 3, tmp_path, ["--emulator-profile", "nope"], timeout=90)
    _refused(run, "argument --emulator-profile: invalid choice: 'nope' (choose from 'chaos', 'fast'")
    assert "emulator (" not in run.output  # no emulator was started, so nothing could be created


def test_a_missing_bucket_is_refused(tmp_path, emulator):
    with moto_server():
        run = run_locust("local.py", 3, tmp_path, ["--emulator-url", emulator.url, "--bucket", "loadgen-no-such-bucket"],
                         timeout=90)
    _refused(run, "objectstore sink: s3://loadgen-no-such-bucket")
    assert "create the bucket or fix --bucket" in run.output
    assert emulator.stats()["requests"] == 0


def test_a_database_that_is_up_is_not_refused(tmp_path, emulator):
    with fresh_database() as url:
        run = run_locust("local.py", 3, tmp_path, ["--emulator-url", emulator.url, "--database-url", url],
                         timeout=120)
    assert run.returncode == 0, run.output[-3000:]
    assert emulator.stats()["created"] == 3
