#!/usr/bin/env bash
# Launch one burst across many machines: a Locust master here, workers on shard hosts over SSH.
#
#   bin/launch-shards.sh -f locustfiles/e2b.py -u 100000 --hosts shards.txt -w 8 --env E2B_API_KEY --install
#   bin/launch-shards.sh -f locustfiles/local.py -u 2000 -w 2          # every worker on this machine
#
# `bin/launch-shards.sh --help` prints every option; docs/many-machines.md is the guide. The launcher
# itself is loadgen/launch/; this script only finds the Python that has loadgen and Locust.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${LOADGEN_PYTHON:-}"
if [ -z "$python" ]; then
  if python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("locust") is None)' 2>/dev/null; then
    python=python3
  elif [ -x "$here/.venv/bin/python" ]; then
    python="$here/.venv/bin/python"
  else
    echo "launch-shards: no Python with loadgen's dependencies: activate loadgen's virtualenv (see README)" >&2
    exit 2
  fi
fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m loadgen.launch "$@"
