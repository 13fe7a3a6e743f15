"""The `loadgen` command's own behaviour."""

import subprocess
import sys


def loadgen(*args, env=None):
    return subprocess.run([sys.executable, "-m", "loadgen.cli", *args], capture_output=True, text=True, env=env)


def test_providers_lists_variables_without_their_values():
    import os

    env = dict(os.environ, E2B_API_KEY="e2b_secret_value_123", DAYTONA_API_KEY="")
    result = loadgen("providers", env=env)
    assert result.returncode == 0
    assert "e2b_secret_value_123" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any("E2B_API_KEY" in line and " set" in line and "NOT" not in line for line in lines)
    assert any("DAYTONA_API_KEY" in line and "NOT SET" in line for line in lines)
    for name in ("e2b", "daytona", "runloop", "modal", "codesandbox"):
        assert name in lines


def test_unknown_command_is_a_clear_error():
    result = loadgen("frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr
