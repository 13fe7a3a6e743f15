"""`destroy_id` (what `loadgen reap` calls) for daytona, runloop, modal and codesandbox,
each through its real SDK against the emulator's face for it.

Per provider: three sandboxes created through the adapter, destroyed by id alone
(the emulator's ground truth: none live, three killed), then a repeat on an id
that is already gone, which answers what the face documents: daytona and runloop
answer 404 (False), modal and codesandbox answer success for terminating an
ended sandbox (True). Then `loadgen reap` end to end on a minimal run directory.
"""

from __future__ import annotations

import json
import os
import urllib.request

import orjson
import pytest

from loadgen import rundir
from loadgen.emulator import start_emulator
from loadgen.providers import get_provider_class
from loadgen.providers.base import ProviderSettings

CREDS = {
    "daytona": {"DAYTONA_API_KEY": "daytona_test_key"},
    "runloop": {"RUNLOOP_API_KEY": "runloop_test_key"},
    "modal": {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"},
    "codesandbox": {"TOGETHER_API_KEY": "together_test_key"},
}
# destroy_id on an id destroyed before: what each face documents
REPEAT = {"daytona": False, "runloop": False, "modal": True, "codesandbox": True}
# ids of the face's shape that no sandbox has
UNKNOWN = {"daytona": "no-such-sandbox", "runloop": "dbx_no_such_devbox", "modal": "sb-i99999",
           "codesandbox": "00000000-0000-4000-8000-000000000000"}
N = 3


@pytest.fixture
def provider_env(monkeypatch):
    for env in CREDS.values():
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    for name in ("DAYTONA_API_URL", "DAYTONA_TARGET", "RUNLOOP_BASE_URL", "TOGETHER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # the modal adapter sets these for its SDK; give them back afterwards
    for name in ("MODAL_SERVER_URL", "MODAL_MAX_THROTTLE_WAIT"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    opened = []
    yield opened
    from loadgen.net.aio import get_bridge

    for provider in opened:
        client = getattr(provider, "_client", None)
        if provider.name == "modal" and client is not None:
            try:
                get_bridge().call(client.close.aio(), timeout=10)
            except Exception:  # noqa: BLE001
                pass


def _provider(name, emu, opened):
    p = get_provider_class(name)(ProviderSettings(base_url=emu.url, users_in_process=N, sandbox_lifetime_s=600,
                                                  create_timeout_s=10, destroy_timeout_s=10))
    p.prepare()
    opened.append(p)
    assert getattr(p, "_setup_error", None) is None, p._setup_error
    return p


def _create(p, n=N):
    """n sandboxes at once (greenlets, or the asyncio bridge); their ids. Handles are let go."""
    from loadgen.net.aio import get_bridge

    pending = [p.start_call(p.create, {"run_id": "reap-test", "sandbox_idx": str(i)}) for i in range(n)]
    handles = [call.wait(30) for call in pending]
    ids = [p.sandbox_id(h) for h in handles]
    for h in handles:  # close the clients a handle holds, not the sandbox
        if p.name == "codesandbox":
            get_bridge().call(h.close(), timeout=10)
        elif p.name == "modal":
            get_bridge().call(h.detach.aio(), timeout=10)
    assert len(set(ids)) == n and all(ids), ids
    return ids


@pytest.mark.parametrize("name", ["daytona", "runloop", "modal", "codesandbox"])
def test_destroy_id(name, provider_env):
    with start_emulator("fast", faces=name) as emu:
        p = _provider(name, emu, provider_env)
        ids = _create(p)
        assert emu.stats()["live"] == N
        pending = [p.start_call(p.destroy_id, sid, 10.0) for sid in ids]
        assert [call.wait(15) for call in pending] == [True] * N
        stats = emu.stats()
        assert stats["live"] == 0 and stats["killed"] == N, stats
        assert p.start_call(p.destroy_id, ids[0], 10.0).wait(15) is REPEAT[name]
        assert emu.stats()["killed"] == N
        # an id the service never knew: "not found" is False everywhere
        assert p.start_call(p.destroy_id, UNKNOWN[name], 10.0).wait(15) is False
        if name == "modal":  # one SandboxTerminateV2 per call, and nothing the face does not serve
            from loadgen.emulator.faces.modal import CONTROL

            with urllib.request.urlopen(emu.url + "/modal/stats", timeout=10) as resp:
                rpcs = json.loads(resp.read())
            assert rpcs["unimplemented"] == {} and rpcs["rpcs"][CONTROL + "SandboxTerminateV2"] == N + 2, rpcs


@pytest.mark.parametrize("name", ["daytona", "runloop", "modal", "codesandbox"])
def test_reap_end_to_end(name, provider_env, tmp_path, capsys):
    from loadgen.engine.reap import REAPED, main

    with start_emulator("fast", faces=name) as emu:
        ids = _create(_provider(name, emu, provider_env))
        run_dir = tmp_path / "run"
        (run_dir / rundir.JOURNAL_DIR).mkdir(parents=True)
        (run_dir / rundir.RUN).write_bytes(orjson.dumps(
            {"run_id": "reap-test", "provider": name, "options": {"emulator_url": emu.url}}))
        (run_dir / rundir.JOURNAL_DIR / "x.created.jsonl").write_bytes(b"".join(
            orjson.dumps({"sandbox_id": sid, "sandbox_idx": i}) + b"\n" for i, sid in enumerate(ids)))
        (run_dir / rundir.RAW).write_bytes(b"")
        assert emu.stats()["live"] == N
        assert main(["reap", str(run_dir), "--timeout", "10"]) == 0, capsys.readouterr()
        stats = emu.stats()
        assert stats["live"] == 0 and stats["killed"] == N, stats
        reaped = [orjson.loads(line) for line in (run_dir / REAPED).read_bytes().splitlines()]
        assert sorted(r["sandbox_id"] for r in reaped) == sorted(ids)
        assert all(r["destroyed"] and not r["already_gone"] for r in reaped), reaped
