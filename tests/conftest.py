import pytest

from loadgen.emulator import start_emulator


@pytest.fixture
def emulator():
    """A fresh emulator subprocess (fast profile); tests that need another profile start their own."""
    with start_emulator("fast") as emu:
        yield emu


def pytest_terminal_summary(terminalreporter):
    """The host-loss scenarios' figures (tests/reliability.py), as docs/reliability.md shows them."""
    from tests import reliability

    if reliability.ROWS:
        terminalreporter.section("reliability figures (docs/reliability.md)")
        for line in reliability.table(reliability.ROWS):
            terminalreporter.write_line(line)
