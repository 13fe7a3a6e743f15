"""codesandbox: a burst of real CodeSandbox (Together Sandbox) sandboxes.

    TOGETHER_API_KEY=... locust -f locustfiles/codesandbox.py --headless -u 1000 -r 1000

Each user creates one sandbox, runs `node -v`, holds it until every sandbox
of the run is ready (the barrier), runs `node -v` again and destroys it.
`--template` names a snapshot (a UUID) or a snapshot alias; without it the
API's default snapshot is used. Against the emulator:
`loadgen emulate --face codesandbox` and `--emulator-url URL`.
"""

from loadgen import SandboxUser


class CodeSandboxUser(SandboxUser):
    provider_name = "codesandbox"
