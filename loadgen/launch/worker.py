"""`python -m loadgen.launch.worker [--pidfile FILE] -- LOCUST_ARGS...`: one worker process
started by the launcher on a shard host.

It reads the forwarded environment (one JSON object, one line) from its
standard input and adds it to its own environment before Locust starts. So a
secret is never on a command line, and never in the environment the process
was started with (which `ps e` and /proc/PID/environ show): it only ever
lived on SSH's standard input and in this process's memory. Then it runs
`locust LOCUST_ARGS...` in this process, ignoring SIGHUP so that the end of
the SSH session that started it does not end it.
"""

import json
import os
import signal
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pidfile = None
    if argv[:1] == ["--pidfile"]:
        pidfile, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    line = sys.stdin.buffer.readline()
    os.environ.update(json.loads(line) if line.strip() else {})
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if pidfile:
        with open(pidfile + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(pidfile + ".tmp", pidfile)
    sys.argv = ["locust", *argv]
    from locust.main import main as locust_main  # imports gevent and patches the standard library

    return locust_main()


if __name__ == "__main__":
    sys.exit(main())
