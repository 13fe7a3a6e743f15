"""A provider whose setup fails (as an SDK that cannot load would): the run must end at once, failed."""

from loadgen import SandboxUser
from loadgen.providers import REGISTRY
from loadgen.providers.e2b import E2BProvider


class BrokenSetupProvider(E2BProvider):
    name = "broken-setup"

    def setup(self) -> None:
        raise ImportError("the SDK could not be loaded (test)")


REGISTRY["broken-setup"] = BrokenSetupProvider


class BrokenUser(SandboxUser):
    provider_name = "broken-setup"
