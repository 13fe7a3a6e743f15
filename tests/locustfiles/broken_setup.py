"""A provider whose setup fails (as an SDK that cannot load would): the run must end at once, failed."""

from loadgen.engine.user import SandboxUser
from loadgen.providers import REGISTRY
from loadgen.providers.e2b import E2BProvider
import loadgen.engine.wiring  # noqa: F401


class BrokenSetupProvider(E2BProvider):
    name = "broken-setup"

    def setup(self) -> None:
        raise ImportError("the SDK could not be loaded (test)")


REGISTRY["broken-setup"] = BrokenSetupProvider


class BrokenUser(SandboxUser):
    provider_name = "broken-setup"
