import pytest

from loadgen.emulator import start_emulator


@pytest.fixture
def emulator():
    """A fresh emulator subprocess (fast profile); tests that need another profile start their own."""
    with start_emulator("fast") as emu:
        yield emu
