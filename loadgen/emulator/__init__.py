"""The local sandbox-provider emulator: one provider-neutral core
(`core.Core`), one protocol face per provider (`faces/`), ground truth under
`/_emulator/`. See docs/emulator.md.

    from loadgen.emulator import start_emulator
    with start_emulator("fast", fault_create_5xx=0.05) as emu:
        os.environ["E2B_API_URL"] = os.environ["E2B_SANDBOX_URL"] = emu.url
        ...
        assert emu.stats()["live"] == 0
"""

from loadgen.emulator.handle import EmulatorCluster, EmulatorProcess, EmulatorThread, start_emulator, start_emulators
from loadgen.emulator.settings import PROFILES, SETTINGS

__all__ = ["start_emulator", "start_emulators", "EmulatorCluster", "EmulatorProcess", "EmulatorThread", "PROFILES",
           "SETTINGS"]
