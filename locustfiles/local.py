"""The embedded default: the e2b SDK against loadgen's own emulator.

    locust -f locustfiles/local.py --headless -u 1000 -r 1000

With no --emulator-url (an option of every loadgen locustfile), the master (or the single process) starts the
emulator as a subprocess on 127.0.0.1 with the `fast` profile (or
--emulator-profile), points the e2b adapter at it, and stops it at exit.
Workers receive the URL from the master. No cloud account is needed.
"""

import atexit
import os

from locust import events
from locust.runners import WorkerRunner

from loadgen import SandboxUser

# The emulator accepts any key; the real SDK insists on having one.
os.environ.setdefault("E2B_API_KEY", "e2b_emulator_local_key")

_emulator = {}


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--emulator-profile", default="fast",
                        help="Profile for the emulator this locustfile starts (default fast).")


@events.init.add_listener
def _start_emulator(environment, **kw):
    options = environment.parsed_options
    if options is None or options.emulator_url or isinstance(environment.runner, WorkerRunner):
        return
    from loadgen.emulator import start_emulator

    handle = start_emulator(profile=options.emulator_profile)
    _emulator["handle"] = handle
    options.emulator_url = handle.url
    print(f"loadgen: emulator ({options.emulator_profile} profile) serving at {handle.url}", flush=True)
    atexit.register(_stop_emulator)


@events.quit.add_listener
def _stop_emulator(**kw):
    handle = _emulator.pop("handle", None)
    if handle is not None:
        handle.stop()


class LocalE2BUser(SandboxUser):
    provider_name = "e2b"
