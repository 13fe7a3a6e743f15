"""`loadgen reap`: destroy the sandboxes a run left behind.

Usage:
  loadgen reap RUN_DIR [--dry-run] [--emulator-url URL] [--timeout S]
  loadgen reap (-h | --help)

Options:
  --dry-run           List what would be destroyed; destroy nothing.
  --emulator-url URL  Reap from this emulator instead of the one recorded in run.json.
  --timeout S         Seconds each destroy may take [default: 30].

Every worker journals each sandbox id the moment its create answers
(journal/*.created.jsonl), before anything else can go wrong. A sandbox whose
record does not say it was destroyed (a killed worker, a failed destroy, a
crash mid-run) may still be alive and billed. This finds them from the run
directory alone and destroys each through the provider's SDK, once: what was
reaped is appended to reaped.jsonl, so a second reap does nothing twice.
The provider's credentials come from the environment, as for a run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import orjson
from docopt import docopt

from loadgen import rundir
from loadgen.result import was_destroyed

REAPED = "reaped.jsonl"


def candidates(run_path: Path) -> list[dict]:
    """Created sandboxes that no record shows destroyed and no earlier reap removed."""
    created = {}
    for path in sorted((run_path / rundir.JOURNAL_DIR).glob("*.created.jsonl")):
        for entry in rundir.iter_jsonl(path):
            if entry.get("sandbox_id"):
                created[entry["sandbox_id"]] = entry
    if (run_path / rundir.RAW).exists():
        for record in rundir.iter_jsonl(run_path / rundir.RAW):
            if record.get("sandbox_id") and was_destroyed(record):
                created.pop(record["sandbox_id"], None)
    if (run_path / REAPED).exists():
        for entry in rundir.iter_jsonl(run_path / REAPED):
            if entry.get("destroyed"):
                created.pop(entry["sandbox_id"], None)
    return sorted(created.values(), key=lambda e: e.get("sandbox_idx", 0))


def cli_main(argv) -> int:
    """The command: gevent-patched first, so that SDKs that cooperate with gevent (daytona,
    runloop) destroy concurrently and their timeouts can interrupt a hung call."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    return main(argv)


def main(argv) -> int:
    args = docopt(__doc__, argv=argv)
    run_path = Path(args["RUN_DIR"])
    if not (run_path / rundir.RUN).exists():
        print(f"loadgen reap: {run_path} has no {rundir.RUN}; is it a run directory?", file=sys.stderr)
        return 1
    identity = rundir.read_json(run_path / rundir.RUN)
    todo = candidates(run_path)
    print(f"loadgen reap: run {identity.get('run_id')} ({identity.get('provider')}): "
          f"{len(todo)} sandbox(es) not known to be destroyed")
    for entry in todo:
        print(f"  {entry['sandbox_id']} (sandbox_idx {entry.get('sandbox_idx')})")
    if args["--dry-run"] or not todo:
        return 0

    import gevent

    from loadgen.providers import get_provider_class
    from loadgen.providers.base import MissingCredentials, ProviderSettings

    from loadgen.providers.base import Provider

    cls = get_provider_class(identity["provider"])
    if cls.destroy_id is Provider.destroy_id:
        print(f"loadgen reap: {cls.name}: reaping by sandbox id is not implemented for this provider yet; "
              "the ids above are in the journal", file=sys.stderr)
        return 2
    base_url = args["--emulator-url"] or (identity.get("options") or {}).get("emulator_url") or None
    if base_url:  # an emulator takes any credentials; the SDK still insists on having some
        for name in cls.missing_env():
            os.environ[name] = "emulator"
    if cls.missing_env():
        print(f"loadgen reap: {MissingCredentials(cls.name, cls.missing_env())}", file=sys.stderr)
        return 2
    timeout = float(args["--timeout"])
    # a run spread over several emulator processes: a sandbox is known to one of them only
    urls = [u.strip() for u in base_url.split(",") if u.strip()] if base_url else [None]
    providers = [cls(ProviderSettings(base_url=url, users_in_process=max(1, len(todo)), destroy_timeout_s=timeout))
                 for url in urls]
    for provider in providers:
        provider.prepare()
    provider = providers[0]

    def reap_one(entry):
        started = time.time()
        try:
            value = False
            for each in providers:
                value = each.start_call(each.destroy_id, entry["sandbox_id"], timeout).wait(timeout + 1)
                if value is not False:
                    break
            return {"sandbox_id": entry["sandbox_id"], "sandbox_idx": entry.get("sandbox_idx"), "destroyed": True,
                    "already_gone": value is False, "t": started}
        except Exception as exc:  # noqa: BLE001 - reported, and left for the next reap
            info = provider.classify(exc)
            return {"sandbox_id": entry["sandbox_id"], "sandbox_idx": entry.get("sandbox_idx"), "destroyed": False,
                    "failure_class": info.failure_class, "error_message": info.error_message, "t": started}

    greenlets = [gevent.spawn(reap_one, entry) for entry in todo]
    gevent.joinall(greenlets, raise_error=True)
    results = [g.value for g in greenlets]
    with open(run_path / REAPED, "ab") as fh:
        for result in results:
            fh.write(orjson.dumps(result) + b"\n")
    failed = [r for r in results if not r["destroyed"]]
    print(f"loadgen reap: destroyed {len(results) - len(failed)}, failed {len(failed)}; see {run_path / REAPED}")
    for r in failed:
        print(f"  {r['sandbox_id']}: {r['failure_class']}: {r['error_message']}")
    return 0 if not failed else 3
