"""e2b against the emulator, with the data plane (envd: every command) reached at TEST_SANDBOX_URL.

The tests put a proxy there that drops SYNs, to see what a listen queue
overflowing at the provider does to the measured readiness."""

import os

from loadgen import SandboxUser
from loadgen.providers import REGISTRY
from loadgen.providers.e2b import E2BProvider


class DataPlaneViaProvider(E2BProvider):
    name = "e2b-data-plane-via"

    def setup(self) -> None:
        super().setup()
        self._opts["sandbox_url"] = os.environ["TEST_SANDBOX_URL"]


REGISTRY[DataPlaneViaProvider.name] = DataPlaneViaProvider


class DataPlaneViaUser(SandboxUser):
    provider_name = DataPlaneViaProvider.name
