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


def test_options_lists_every_run_option_and_the_readme_table_has_each():
    """`loadgen options` prints the run options Locust's --help cannot (it prints before reading the
    locustfile), and README's Options table documents exactly those."""
    import re
    from pathlib import Path

    result = loadgen("options")
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", result.stdout, re.M))
    assert {"--max-cost", "--price-file", "--arrival-rate", "--ramp", "--destroy-retries", "--mode",
            "--emulator-profile"} <= listed
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| option | default | meaning |"):]
    table = table[:table.index("\n\n")]
    documented = set()
    for row in table.splitlines()[2:]:
        documented |= set(re.findall(r"`(--[a-z][a-z0-9-]*)", row.split("|")[1]))
    assert documented == listed, (sorted(listed - documented), sorted(documented - listed))
    assert "`loadgen options`" in readme
