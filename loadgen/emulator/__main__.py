"""`python -m loadgen.emulator [options]` is `loadgen emulate [options]`."""

import sys

from loadgen.emulator.command import main

sys.exit(main(["emulate"] + sys.argv[1:]))
