"""The real e2b SDK (2.63, asyncio API) against a real emulator subprocess.

Every fault, injected at 100%, must make the SDK raise what it raises for that
fault against the real service. The e2b sync API blocks gevent's hub (its HTTP
is a Rust client), so concurrency here is asyncio; the gevent variant goes
through loadgen's provider adapter.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox
from e2b.exceptions import (
    RateLimitException,
    SandboxException,
    SandboxNotRunningException,
)
from e2b.sandbox.commands.command_handle import CommandExitException

from loadgen.emulator import start_emulator
from tests.emulator_fixtures import emulator, fresh_emulator, no_e2b_debug, sdk_opts  # noqa: F401

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_e2b_debug")]


def run(coro):
    return asyncio.run(coro)


async def lifecycle(url: str, idx: int, run_id: str = "run-sdk"):
    sbx = await AsyncSandbox.create(timeout=600, metadata={"run_id": run_id, "sandbox_idx": str(idx)},
                                    **sdk_opts(url))
    result = await sbx.commands.run("node -v")
    killed = await sbx.kill()
    return sbx.sandbox_id, result, killed


def test_one_lifecycle_and_its_ground_truth(fresh_emulator):
    url = fresh_emulator.url
    t0 = time.time()
    sandbox_id, result, killed = run(lifecycle(url, 17))
    t1 = time.time()
    assert result.exit_code == 0 and result.stdout.startswith("v20.") and killed is True

    (rec,) = fresh_emulator.sandboxes()
    assert rec["sandbox_id"] == sandbox_id
    assert rec["metadata"] == {"run_id": "run-sdk", "sandbox_idx": "17"}  # verbatim, strings
    assert rec["state"] == "killed" and rec["fault"] is None and rec["lifetime_s"] == 600
    (ex,) = rec["execs"]
    assert ex["command"] == "node -v" and ex["exit_code"] == 0
    # What the generator measured brackets what the server saw, in order.
    stamps = [t0, rec["t_received"], rec["t_answered"], ex["t_start"], ex["t_end"], rec["t_kill_received"],
              rec["t_kill_answered"], rec["t_ended"], t1]
    assert stamps == sorted(stamps)
    stats = fresh_emulator.stats()
    assert (stats["created"], stats["killed"], stats["live"]) == (1, 1, 0)
    assert stats["ops"]["exec"]["ok"] == 1 and stats["ops"]["kill"]["ok"] == 1


def test_the_sync_sdk_works_too(fresh_emulator):
    sbx = Sandbox.create(**sdk_opts(fresh_emulator.url))
    assert sbx.commands.run("node -v").stdout.startswith("v20.")
    assert sbx.kill() is True


def test_500_concurrent_lifecycles(fresh_emulator):
    url = fresh_emulator.url

    async def main():
        return await asyncio.gather(*(lifecycle(url, i, "run-500") for i in range(500)))

    results = run(main())
    assert len({sid for sid, _, _ in results}) == 500
    assert all(r.exit_code == 0 and r.stdout.startswith("v20.") and k for _, r, k in results)
    stats = fresh_emulator.stats()
    assert (stats["created"], stats["killed"], stats["live"]) == (500, 500, 0)
    records = fresh_emulator.sandboxes()
    assert sorted(int(r["metadata"]["sandbox_idx"]) for r in records) == list(range(500))


def test_other_commands(fresh_emulator):
    async def main():
        sbx = await AsyncSandbox.create(**sdk_opts(fresh_emulator.url))
        echo = await sbx.commands.run("echo hello world")
        assert (echo.stdout, echo.exit_code) == ("hello world\n", 0)
        t = time.monotonic()
        slept = await sbx.commands.run("sleep 1 && echo woke")
        assert time.monotonic() - t >= 0.9 and slept.stdout == "woke\n"
        with pytest.raises(CommandExitException) as e:
            await sbx.commands.run("exit 7")
        assert e.value.exit_code == 7
        missing = await sbx.commands.run("nosuchtool || true")
        assert missing.exit_code == 0
        await sbx.kill()

    run(main())


# -- faults at 100% ------------------------------------------------------------


@pytest.fixture
def faulty(request):
    with start_emulator("fast", **request.param) as emu:
        yield emu


def create(url, **kw):
    return AsyncSandbox.create(**sdk_opts(url, **kw))


@pytest.mark.parametrize("faulty", [dict(rate_limit_per_s=0.001, rate_limit_burst=1)], indirect=True)
def test_rate_limit_raises_rate_limit_exception(faulty):
    async def main():
        first = await create(faulty.url)
        with pytest.raises(RateLimitException):
            await create(faulty.url)
        await first.kill()

    run(main())
    assert faulty.sandboxes()[1]["fault"] == "rate_limited"


@pytest.mark.parametrize("faulty", [dict(fault_create_hang=1.0)], indirect=True)
def test_create_hang_times_out(faulty):
    with pytest.raises(httpx.TimeoutException):
        run(create(faulty.url, request_timeout=0.5))
    (rec,) = faulty.sandboxes()
    assert (rec["fault"], rec["sandbox_id"], rec["t_answered"]) == ("create_hang", None, None)


@pytest.mark.parametrize("faulty", [dict(fault_create_5xx=1.0)], indirect=True)
def test_create_5xx_raises_sandbox_exception_with_status(faulty):
    with pytest.raises(SandboxException) as e:
        run(create(faulty.url))
    assert e.value.status_code == 500
    assert faulty.stats()["failed"] == 1


@pytest.mark.parametrize("faulty", [dict(fault_reset=1.0)], indirect=True)
def test_connection_reset_raises_a_network_error(faulty):
    with pytest.raises(httpx.NetworkError) as e:
        run(create(faulty.url))
    assert "reset" in str(e.value).lower()
    assert faulty.sandboxes()[0]["fault"] == "reset"


@pytest.mark.parametrize("faulty", [dict(fault_readiness=1.0)], indirect=True)
def test_readiness_exit_raises_command_exit_exception(faulty):
    async def main():
        sbx = await create(faulty.url)
        with pytest.raises(CommandExitException) as e:
            await sbx.commands.run("node -v")
        assert e.value.exit_code != 0
        assert (await sbx.commands.run("node -v")).exit_code == 0  # only the first command fails
        await sbx.kill()

    run(main())
    assert faulty.sandboxes()[0]["fault"] == "readiness_fail"


@pytest.mark.parametrize("faulty", [dict(fault_readiness=1.0, readiness_fail_mode="stream_error")], indirect=True)
def test_readiness_stream_error_raises_sandbox_exception(faulty):
    async def main():
        sbx = await create(faulty.url)
        with pytest.raises(SandboxException) as e:
            await sbx.commands.run("node -v")
        assert not isinstance(e.value, CommandExitException)
        await sbx.kill()

    run(main())


@pytest.mark.parametrize("faulty", [dict(fault_died=1.0)], indirect=True)
def test_dead_sandbox_raises_sandbox_not_running(faulty):
    """A dead sandbox's envd call is answered by e2b's edge proxy with 502
    {"message": "The sandbox was not found"}; the SDK raises
    SandboxNotRunningException, and kill() of a dead sandbox returns False."""
    async def main():
        sbx = await create(faulty.url)
        assert (await sbx.commands.run("node -v")).exit_code == 0  # readiness passes
        with pytest.raises(SandboxNotRunningException):
            await sbx.commands.run("node -v")  # the liveness probe fails
        assert await sbx.kill() is False

    run(main())
    (rec,) = faulty.sandboxes()
    assert (rec["state"], rec["fault"]) == ("died", "died")


@pytest.mark.parametrize("faulty", [dict(fault_kill=1.0)], indirect=True)
def test_kill_failure_raises_sandbox_exception(faulty):
    async def main():
        sbx = await create(faulty.url)
        with pytest.raises(SandboxException) as e:
            await sbx.kill()
        assert e.value.status_code == 500

    run(main())
    stats = faulty.stats()
    assert stats["live"] == 1 and stats["ops"]["kill"]["failed"] == 1
    assert faulty.sandboxes()[0]["fault"] == "kill_fail"
