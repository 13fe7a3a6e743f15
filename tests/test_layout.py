"""The package layout: one public import for a locustfile, no import circles, old paths kept for a release."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.locust_harness import REPO, run_locust

PACKAGE = REPO / "loadgen"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The loadgen modules a module imports, anywhere in it (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            as_path = REPO / name.replace(".", "/")
            if name.startswith("loadgen") and (as_path.with_suffix(".py").exists()
                                               or (as_path / "__init__.py").exists()):
                out.add(name)
    return out


def test_loadgen_has_no_import_circles():
    graph = {_module_name(p): _imports(p) - {_module_name(p)} for p in PACKAGE.rglob("*.py")}
    # a package's __init__ importing its own submodules is not a circle back into it
    for name, deps in graph.items():
        graph[name] = {d for d in deps if d in graph and not d.startswith(name + ".")}
    state: dict[str, int] = {}
    circles = []

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_a_user_written_locustfile_with_only_the_public_import_runs(tmp_path, emulator):
    locustfile = tmp_path / "mine.py"
    locustfile.write_text(textwrap.dedent('''
        from loadgen import SandboxUser


        class MyUser(SandboxUser):
            provider_name = "e2b"
    '''))
    run = run_locust(str(locustfile), 20, tmp_path / "runs", ["--emulator-url", emulator.url])
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    assert sorted(r["sandbox_idx"] for r in records) == list(range(20))
    assert all(r["status"] == "success" for r in records)
    assert emulator.stats()["created"] == 20 and emulator.stats()["live"] == 0


def test_the_loadgen_command_does_not_load_locust():
    """Report, emulator and database tools never pay (or suffer) Locust's gevent patching."""
    out = subprocess.run([sys.executable, "-c", "import sys, loadgen, loadgen.cli, loadgen.report.command; "
                          "print('locust' in sys.modules)"], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


def test_old_module_paths_still_import_with_a_deprecation_warning():
    script = textwrap.dedent('''
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            from loadgen.lifecycle import SandboxUser as Old
            import loadgen.run
            from loadgen.stats import nearest_rank
            from loadgen.report import main as report_main
        from loadgen import SandboxUser
        from loadgen.report.stats import nearest_rank as new_rank
        from loadgen.report.command import main as new_main
        assert Old is SandboxUser and nearest_rank is new_rank and report_main is new_main
        assert loadgen.run.RunSettings is __import__("loadgen.engine.options", fromlist=["x"]).RunSettings
        for w in caught:
            print(w.category.__name__, w.message)
    ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for old in ("loadgen.lifecycle", "loadgen.run", "loadgen.stats", "loadgen.report.main"):
        assert any(line.startswith("LoadgenDeprecationWarning") and old in line for line in lines), (old, lines)
    assert any("from loadgen import SandboxUser" in line for line in lines)
