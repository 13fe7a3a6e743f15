"""The e2b SDK against an emulator (as locustfiles/local.py with --emulator-url), and one line in
each worker's log proving that the forwarded E2B_API_KEY arrived: its digest, never its value."""

import hashlib
import os

from locust import events
from locust.runners import WorkerRunner

from loadgen import SandboxUser

os.environ.setdefault("E2B_API_KEY", "e2b_emulator_local_key")  # what a run without --env E2B_API_KEY uses


@events.init.add_listener
def _say_digest(environment, **kw):
    if isinstance(environment.runner, WorkerRunner):
        digest = hashlib.sha256(os.environ.get("E2B_API_KEY", "").encode()).hexdigest()
        print(f"forwarded E2B_API_KEY sha256 {digest}", flush=True)


class ForwardedSecretUser(SandboxUser):
    provider_name = "e2b"
