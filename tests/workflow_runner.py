"""Run a GitHub Actions workflow's jobs here, without GitHub: the shell steps as written, in order.

What GitHub would do around the scripts is done the plain way, so that the
``run:`` scripts themselves are what is tested:

- ``${{ ... }}`` expressions are evaluated over the contexts a run would
  have (``inputs``, ``github.event``, ``matrix``, ``needs``, ``steps``;
  every secret is unset, as in a fork) by a small translation to Python
  covering the operators a workflow uses (``||``, ``&&``, ``!``, ``==``,
  ``!=``) and the functions ``fromJSON``, ``join``, ``format``,
  ``always``;
- a job's ``if:`` decides whether it runs; a step runs when every step
  before it passed, or when its ``if:`` holds ``always()``;
- a matrix job runs once per matrix value, one after another (the
  workflow's ``max-parallel: 1``);
- each ``run:`` script is written to a file and run with ``bash --noprofile
  --norc -eo pipefail`` (GitHub's default shell) in the job's own folder,
  with the job's environment, ``$GITHUB_ENV``, ``$GITHUB_OUTPUT`` and
  ``$GITHUB_STEP_SUMMARY``;
- ``actions/checkout`` copies the checkout into the job's folder,
  ``actions/setup-python`` and a step named ``Install`` are skipped (the
  test's own interpreter, with loadgen installed, is first on ``PATH``),
  ``actions/upload-artifact`` copies its path into an artifact store and
  ``actions/download-artifact`` copies the artifacts matching its pattern
  into its path, one folder per artifact, as version 4 does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
SKIPPED_ACTIONS = ("actions/setup-python",)


class Context(dict):
    """A context object: attribute or index access, and null ("") for what is not there."""

    def __getattr__(self, name):
        return self.get(name, "")

    def __getitem__(self, name):
        value = self.get(name, "")
        return Context(value) if isinstance(value, dict) and not isinstance(value, Context) else value

    def get(self, name, default=None):
        value = dict.get(self, name, default)
        return Context(value) if isinstance(value, dict) and not isinstance(value, Context) else value


def _to_python(expr: str) -> str:
    out, i = [], 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'":  # a string literal ('' is an escaped quote)
            j = i + 1
            while True:
                j = expr.index("'", j)
                if expr[j + 1:j + 2] == "'":
                    j += 2
                    continue
                break
            out.append(repr(expr[i + 1:j].replace("''", "'")))
            i = j + 1
        elif expr.startswith("||", i):
            out.append(" or ")
            i += 2
        elif expr.startswith("&&", i):
            out.append(" and ")
            i += 2
        elif ch == "!" and not expr.startswith("!=", i):
            out.append(" not ")
            i += 1
        elif ch.isalpha() or ch == "_":
            j = i
            while j < len(expr) and (expr[j].isalnum() or expr[j] in "_-"):
                j += 1
            word = expr[i:j]
            out.append(_LITERALS.get(word, word.replace("-", "_")) if out[-1:] != ["."] else word)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_LITERALS = {"true": "True", "false": "False", "null": "None"}


def evaluate(expr: str, contexts: dict):
    def join(items, sep=","):
        return sep.join(str(x) for x in items) if isinstance(items, list) else str(items)

    def fmt(template, *args):
        return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), template)

    names = {k: Context(v) if isinstance(v, dict) else v for k, v in contexts.items()}
    names.update(fromJSON=json.loads, join=join, format=fmt, always=lambda: True,
                 success=lambda: True, toJSON=json.dumps)
    return eval(_to_python(expr.strip()), {"__builtins__": {}}, names)  # noqa: S307 - our own workflow file


def substitute(text, contexts: dict):
    """A workflow value with its ``${{ }}`` expressions evaluated (a whole-value expression keeps its type)."""
    if not isinstance(text, str):
        return text
    whole = EXPR.fullmatch(text.strip())
    if whole:
        return evaluate(whole.group(1), contexts)
    return EXPR.sub(lambda m: _text(evaluate(m.group(1), contexts)), text)


def _text(value) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return "" if value is None else str(value)


def condition(text, contexts: dict) -> bool:
    if text is None:
        return True
    if isinstance(text, bool):
        return text
    text = str(text).strip()
    m = EXPR.fullmatch(text)
    return bool(evaluate(m.group(1) if m else text, contexts))


@dataclass
class JobRun:
    job: str
    matrix: dict
    folder: Path
    result: str = "success"
    outputs: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)  # (name, status, returncode, output)
    summary: str = ""


class Runner:
    def __init__(self, workflow: Path, scratch: Path, event_name: str, inputs: dict = None, schedule: str = "",
                 base_env: Optional[dict] = None, step_timeout: float = 900):
        self.doc = yaml.safe_load(workflow.read_text())
        self.scratch = scratch
        self.artifacts = scratch / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.event_name = event_name
        self.inputs = dict(inputs or {})
        self.event = {"schedule": schedule} if schedule else {}
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.base_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + self.base_env.get("PATH", "")
        self.step_timeout = step_timeout
        self.needs: dict = {}
        self.runs: list[JobRun] = []

    def contexts(self, matrix=None, steps=None) -> dict:
        return {"github": {"event_name": self.event_name, "event": self.event, "run_id": "local"},
                "inputs": self.inputs, "secrets": {}, "vars": {}, "matrix": matrix or {}, "needs": self.needs,
                "steps": steps or {}, "env": {}}

    def run_all(self) -> list[JobRun]:
        jobs = self.doc["jobs"]
        done: set = set()
        while len(done) < len(jobs):
            ready = [j for j in jobs if j not in done
                     and all(n in done for n in _as_list(jobs[j].get("needs")))]
            assert ready, f"a cycle in needs: {set(jobs) - done}"
            for name in ready:
                self.run_job(name, jobs[name])
                done.add(name)
        return self.runs

    def run_job(self, name: str, job: dict) -> None:
        ctx = self.contexts()
        if not condition(job.get("if", "success()"), ctx) or any(
                self.needs[n]["result"] != "success" for n in _as_list(job.get("needs"))) and \
                "always()" not in str(job.get("if", "")):
            self.needs[name] = {"result": "skipped", "outputs": {}}
            return
        matrix = (job.get("strategy") or {}).get("matrix")
        combos = [{}]
        if matrix:
            [(key, values)] = [(k, v) for k, v in matrix.items() if k not in ("include", "exclude")]
            combos = [{key: v} for v in substitute(values, ctx)]
        results, outputs = [], {}
        for combo in combos:
            run = self._run_one(name, job, combo)
            results.append(run.result)
            outputs.update(run.outputs)
        self.needs[name] = {"result": "success" if all(r == "success" for r in results) else "failure",
                            "outputs": outputs}

    def _run_one(self, name: str, job: dict, matrix: dict) -> JobRun:
        label = name + "".join(f"-{v}" for v in matrix.values())
        folder = self.scratch / "jobs" / label
        folder.mkdir(parents=True)
        run = JobRun(name, matrix, folder)
        self.runs.append(run)
        files = {k: folder.parent / f"{label}.{k}" for k in ("env", "output", "summary")}
        for f in files.values():
            f.write_text("")
        step_outputs: dict = {}
        env = dict(self.base_env)
        for scope in (self.doc.get("env") or {}, job.get("env") or {}):
            for k, v in scope.items():
                env[k] = _text(substitute(v, self.contexts(matrix, step_outputs)))
        failed = False
        for i, step in enumerate(job["steps"]):
            ctx = self.contexts(matrix, step_outputs)
            step_name = step.get("name") or step.get("uses") or f"step {i}"
            wanted = "always()" in str(step.get("if", "")) or (not failed and condition(step.get("if"), ctx))
            if not wanted:
                run.steps.append((step_name, "skipped", None, ""))
                continue
            if "uses" in step:
                self._action(step, folder, ctx)
                run.steps.append((step_name, "success", 0, ""))
                continue
            if step_name == "Install":
                run.steps.append((step_name, "skipped", None, "loadgen is installed in the test's interpreter"))
                continue
            step_env = dict(env)
            step_env.update(_read_env(files["env"]))
            for k, v in (step.get("env") or {}).items():
                step_env[k] = _text(substitute(v, ctx))
            step_env.update(GITHUB_ENV=str(files["env"]), GITHUB_OUTPUT=str(files["output"]),
                            GITHUB_STEP_SUMMARY=str(files["summary"]), GITHUB_WORKSPACE=str(folder), CI="true")
            script = folder.parent / f"{label}.step{i}.sh"
            files["output"].write_text("")
            script.write_text(substitute(step["run"], ctx))
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=folder,
                                  env=step_env, capture_output=True, text=True, timeout=self.step_timeout)
            status = "success" if proc.returncode == 0 else "failure"
            run.steps.append((step_name, status, proc.returncode, proc.stdout + proc.stderr))
            if step.get("id"):
                step_outputs[step["id"]] = {"outputs": _read_env(files["output"])}
            if proc.returncode != 0:
                failed = True
        run.result = "failure" if failed else "success"
        ctx = self.contexts(matrix, step_outputs)
        run.outputs = {k: _text(substitute(v, ctx)) for k, v in (job.get("outputs") or {}).items()}
        run.summary = files["summary"].read_text()
        return run

    def _action(self, step: dict, folder: Path, ctx: dict) -> None:
        uses, given = step["uses"], {k: substitute(v, ctx) for k, v in (step.get("with") or {}).items()}
        if uses.startswith("actions/checkout"):
            shutil.copytree(REPO, folder, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(
                ".git", ".venv", "runs", "results", "__pycache__", "*.egg-info", ".pytest_cache", ".tox"))
        elif uses.startswith(SKIPPED_ACTIONS):
            return
        elif uses.startswith("actions/upload-artifact"):
            source = folder / given["path"]
            if source.exists():
                shutil.copytree(source, self.artifacts / given["name"], dirs_exist_ok=True)
        elif uses.startswith("actions/download-artifact"):
            target = folder / given.get("path", ".")
            target.mkdir(parents=True, exist_ok=True)
            for art in sorted(self.artifacts.iterdir()):
                if fnmatch.fnmatch(art.name, given.get("pattern", "*")):
                    shutil.copytree(art, target / art.name)
        else:
            raise AssertionError(f"no local stand-in for {uses}")


def _as_list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _read_env(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out
