"""e2b: a burst of real e2b sandboxes.

    E2B_API_KEY=... locust -f locustfiles/e2b.py --headless -u 1000 -r 1000

Each user creates one sandbox, runs `node -v`, holds it until every sandbox
of the run is ready (the barrier), runs `node -v` again and destroys it.
"""

from loadgen import SandboxUser


class E2BUser(SandboxUser):
    provider_name = "e2b"
