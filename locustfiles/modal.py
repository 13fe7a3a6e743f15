"""modal: a burst of real modal sandboxes.

    MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=... locust -f locustfiles/modal.py --headless -u 1000 -r 1000

Each user creates one sandbox (image node:20-slim, or --template), runs
`node -v`, holds it until every sandbox of the run is ready (the barrier),
runs `node -v` again and terminates it. Against the emulator:
`--emulator-url URL` of an emulator serving the modal face
(`loadgen emulate --face modal`).

Locust imports this file as the top-level module `modal`, which would shadow
the modal SDK for everything imported after it; so the SDK is imported here
first, from outside this directory, and takes its name back.
"""

from loadgen.providers.sdk_import import reclaim_sdk

reclaim_sdk("modal", __file__, "Sandbox")

from loadgen.engine.user import SandboxUser  # noqa: E402
import loadgen.engine.wiring  # noqa: E402,F401  registers loadgen's options and event hooks


class ModalUser(SandboxUser):
    provider_name = "modal"
