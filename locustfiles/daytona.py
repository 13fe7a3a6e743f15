"""daytona: a burst of real Daytona sandboxes.

    DAYTONA_API_KEY=... locust -f locustfiles/daytona.py --headless -u 1000 -r 1000

Optional: DAYTONA_API_URL (default https://app.daytona.io/api), DAYTONA_TARGET
(region), --template SNAPSHOT (default: Daytona's default snapshot).
Each user creates one sandbox, runs `node -v`, holds it until every sandbox
of the run is ready (the barrier), runs `node -v` again and destroys it.
"""

from loadgen import SandboxUser


class DaytonaUser(SandboxUser):
    provider_name = "daytona"
