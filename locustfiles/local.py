"""The embedded default: the e2b SDK against loadgen's own emulator.

    locust -f locustfiles/local.py --headless -u 1000 -r 1000

The master (or the single process) starts the emulator as a subprocess on
127.0.0.1 with the `fast` profile (or --emulator-profile), points the e2b
adapter at it, and stops it at exit; workers receive its URL from the master.
The target is always an emulator: this one, or the one --emulator-url names
on the command line. No form field or environment variable can point this
locustfile at a real provider, and no cloud account is needed.
"""

from loadgen import SandboxUser
from loadgen.engine.embedded import embed_emulator

embed_emulator()


class LocalE2BUser(SandboxUser):
    provider_name = "e2b"
