"""modal: a burst of real modal sandboxes.

    MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=... locust -f locustfiles/modal.py --headless -u 1000 -r 1000

Each user creates one sandbox (image node:20-slim, or --template), runs
`node -v`, holds it until every sandbox of the run is ready (the barrier),
runs `node -v` again and terminates it. Against the emulator:
`--emulator-url URL` of an emulator serving the modal face
(`loadgen emulate --face modal`).
"""

from loadgen import SandboxUser


class ModalUser(SandboxUser):
    provider_name = "modal"
