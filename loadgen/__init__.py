"""loadgen: burst load generator for cloud sandbox providers, built on Locust and gevent.

A locustfile needs one import::

    from loadgen import SandboxUser

    class AcmeUser(SandboxUser):
        provider_name = "acme"

Importing ``SandboxUser`` registers loadgen's options and event listeners with
Locust, once per process. It is imported on first use (PEP 562), so that the
``loadgen`` command's report, emulator and database tools never load Locust,
whose import patches the standard library for gevent.
"""

from loadgen._moved import install as _install_moved_paths

__version__ = "0.1.0"
__all__ = ["SandboxUser", "__version__"]

_install_moved_paths()


def __getattr__(name: str):
    if name == "SandboxUser":
        from loadgen.providers.sdk_import import reclaim_shadowed_sdks

        # A locustfile named after its provider's SDK (locustfiles/e2b.py is
        # imported by Locust as the module `e2b`) hides the SDK: give it back
        # before anything imports it.
        reclaim_shadowed_sdks()
        from loadgen.engine.user import SandboxUser

        return SandboxUser
    raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
