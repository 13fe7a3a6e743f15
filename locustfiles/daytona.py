"""daytona: a burst of real Daytona sandboxes.

    DAYTONA_API_KEY=... locust -f locustfiles/daytona.py --headless -u 1000 -r 1000

Optional: DAYTONA_API_URL (default https://app.daytona.io/api), DAYTONA_TARGET
(region), --template SNAPSHOT (default: Daytona's default snapshot).
Each user creates one sandbox, runs `node -v`, holds it until every sandbox
of the run is ready (the barrier), runs `node -v` again and destroys it.
"""

from loadgen.engine.user import SandboxUser
from loadgen.providers.daytona import load_sdk
import loadgen.engine.wiring  # noqa: F401  registers loadgen's options and event hooks

# Locust imports this file as the module `daytona`, the SDK's name: give the name back.
load_sdk(__file__)


class DaytonaUser(SandboxUser):
    provider_name = "daytona"
