"""e2b: a burst of real e2b sandboxes.

    E2B_API_KEY=... locust -f locustfiles/e2b.py --headless -u 1000 -r 1000

Each user creates one sandbox, runs `node -v`, holds it until every sandbox
of the run is ready (the barrier), runs `node -v` again and destroys it.
"""

from loadgen.providers.sdk_import import reclaim_sdk

# Locust imports this file as the module `e2b`, the SDK's name: give the name back first.
reclaim_sdk("e2b", __file__, "AsyncSandbox")

from loadgen.engine.user import SandboxUser  # noqa: E402
import loadgen.engine.wiring  # noqa: E402,F401  registers loadgen's options and event hooks


class E2BUser(SandboxUser):
    provider_name = "e2b"
