"""runloop: a burst of real Runloop devboxes.

    RUNLOOP_API_KEY=... locust -f locustfiles/runloop.py --headless -u 1000 -r 1000

Optional: RUNLOOP_BASE_URL (default https://api.runloop.ai), --template
BLUEPRINT_NAME (default: Runloop's default image).
Each user creates one devbox, runs `node -v`, holds it until every devbox of
the run is ready (the barrier), runs `node -v` again and shuts it down.
"""

from loadgen import SandboxUser


class RunloopUser(SandboxUser):
    provider_name = "runloop"
