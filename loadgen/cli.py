"""The `loadgen` command: the tools around a run.

A run itself starts with Locust, on one of the locustfiles:
  locust -f locustfiles/local.py --headless -u 1000 -r 1000     (the embedded emulator)
  locust -f locustfiles/e2b.py --headless -u 1000 -r 1000       (the real e2b service)
  locust -f locustfiles/local.py                                (the web UI on http://localhost:8089)
`loadgen options` lists loadgen's run options (Locust's own --help cannot: it prints
before it reads the locustfile).

Usage:
  loadgen <command> [<args>...]
  loadgen (-h | --help)
  loadgen --version

Commands:
  emulate     Serve the local sandbox-provider emulator on 127.0.0.1.
  report      Write SVG/HTML/Markdown reports for one or more run directories.
  aggregate   The figures of a sharded run, over every shard's records.
  leaderboard The daily benchmark's ranked tables, merged from each provider's results.
  reap        Destroy the sandboxes a run left behind (from its journals).
  recover     Finish a run whose master was lost: raw.jsonl, meta.json and Postgres from the journals.
  watch       How runs are going (run directories, Postgres, object storage), refreshed in place.
  db          Postgres schema and replay (migrate, replay).
  store       Object storage upload and fetch (upload, fetch).
  providers   List providers and the environment variables each needs.
  options     List loadgen's run options (what `locust -f locustfiles/<provider>.py` takes).

Run `loadgen <command> --help` for a command's own options.
"""

# Each command lives in its own module and parses its own arguments (like git),
# so adding a command never touches another command's option table.

import importlib
import sys

from docopt import docopt

from loadgen import __version__

# command name -> "module:function"; each function takes argv (list of str,
# without the command name) and returns a process exit code.
COMMANDS = {
    "emulate": "loadgen.emulator.command:main",
    "report": "loadgen.report.command:main",
    "aggregate": "loadgen.report.aggregate:main",
    "leaderboard": "loadgen.report.leaderboard:main",
    "reap": "loadgen.engine.reap:cli_main",
    "recover": "loadgen.engine.recover:main",
    "watch": "loadgen.watch.command:main",
    "db": "loadgen.sinks.pg_command:main",
    "store": "loadgen.sinks.s3_command:main",
    "providers": "loadgen.providers:main",
    "options": "loadgen.engine.options:print_options",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = docopt(__doc__, argv=argv, version=f"loadgen {__version__}", options_first=True)
    command = args["<command>"]
    target = COMMANDS.get(command)
    if target is None:
        print(f"loadgen: unknown command {command!r}; choose one of: {', '.join(sorted(COMMANDS))}", file=sys.stderr)
        return 2
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func([command] + list(args["<args>"])) or 0)


if __name__ == "__main__":
    sys.exit(main())
