#!/usr/bin/env bash
# Launch one burst across many machines: a master here, workers on shard hosts.
#
#   bin/launch-shards.sh -f locustfiles/e2b.py -u 100000 --hosts shards.txt -w 8 --env E2B_API_KEY
#   bin/launch-shards.sh -f locustfiles/local.py -u 2000 -w 2          # every worker on this machine
#
# Options:
#   -f FILE          locustfile (default locustfiles/e2b.py)
#   -u N             sandboxes in the whole run (required)
#   -w N             worker processes per host (default: the host's core count)
#   --hosts FILE     one ssh destination per line; without it, workers run on this machine
#   --master-host A  address the workers use to reach the master (default: first address of `hostname -I`)
#   --remote-dir D   where loadgen is checked out and installed on the hosts (default: this checkout's path)
#   --env NAME       forward this environment variable to the workers (repeatable). Values travel on
#                    ssh's standard input, never on a command line, so they stay out of `ps` and logs.
#   --               everything after is passed to the master's locust (e.g. --hold 60 --database-url ...)
#
# The master waits for every worker, dispatches all N users at once, and ends by itself when every
# sandbox's life is over. Its exit code is the run's (0 complete; see README "Exit codes").
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
locustfile="locustfiles/e2b.py"; users=""; per_host=""; hosts_file=""; master_host=""; remote_dir="$here"
forward=(); extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -f) locustfile="$2"; shift 2 ;;
    -u) users="$2"; shift 2 ;;
    -w) per_host="$2"; shift 2 ;;
    --hosts) hosts_file="$2"; shift 2 ;;
    --master-host) master_host="$2"; shift 2 ;;
    --remote-dir) remote_dir="$2"; shift 2 ;;
    --env) forward+=("$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "launch-shards: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$users" ] || { echo "launch-shards: -u N is required" >&2; exit 2; }
[[ "$users" =~ ^[0-9]+$ ]] && [ "$users" -gt 0 ] || { echo "launch-shards: -u must be a positive integer" >&2; exit 2; }
per_host="${per_host:-$(nproc)}"
[[ "$per_host" =~ ^[0-9]+$ ]] && [ "$per_host" -gt 0 ] || { echo "launch-shards: -w must be a positive integer" >&2; exit 2; }
for name in "${forward[@]+"${forward[@]}"}"; do
  [ -n "${!name:-}" ] || { echo "launch-shards: --env $name: the variable is not set here" >&2; exit 2; }
done

hosts=()
if [ -n "$hosts_file" ]; then
  while read -r h; do [ -n "$h" ] && [ "${h#\#}" = "$h" ] && hosts+=("$h"); done < "$hosts_file"
  [ ${#hosts[@]} -gt 0 ] || { echo "launch-shards: $hosts_file lists no hosts" >&2; exit 2; }
  master_host="${master_host:-$(hostname -I | awk '{print $1}')}"
  bind_host="0.0.0.0"
else
  master_host="127.0.0.1"; bind_host="127.0.0.1"
fi
total_workers=$(( per_host * (${#hosts[@]} > 0 ? ${#hosts[@]} : 1) ))
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')
locust_bin="$(command -v locust)"

pids=()
cleanup() { for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "launch-shards: master on $master_host:$port, $total_workers workers, $users sandboxes" >&2
"$locust_bin" -f "$locustfile" --master --headless -u "$users" -r "$users" --expect-workers "$total_workers" \
  --master-bind-host "$bind_host" --master-bind-port "$port" "${extra[@]+"${extra[@]}"}" &
master=$!

worker_script() {
  # the environment travels inside this script, on stdin
  for name in "${forward[@]+"${forward[@]}"}"; do printf 'export %s=%q\n' "$name" "${!name}"; done
  printf 'cd %q\n' "$remote_dir"
  printf '[ -f .venv/bin/activate ] && . .venv/bin/activate\n'
  printf 'for i in $(seq %d); do nohup locust -f %q --worker --master-host %q --master-port %d >/tmp/loadgen-worker-$i.log 2>&1 & done\n' \
    "$per_host" "$locustfile" "$master_host" "$port"
  printf 'wait\n'
}

if [ ${#hosts[@]} -gt 0 ]; then
  for h in "${hosts[@]}"; do
    worker_script | ssh -o BatchMode=yes "$h" 'bash -s' & pids+=($!)
  done
else
  for _ in $(seq "$per_host"); do
    "$locust_bin" -f "$locustfile" --worker --master-host 127.0.0.1 --master-port "$port" & pids+=($!)
  done
fi

set +e
wait "$master"; code=$?
set -e
echo "launch-shards: master exited with $code" >&2
exit "$code"
