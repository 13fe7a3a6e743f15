"""`python -m loadgen.report RUN_DIR` is `loadgen report RUN_DIR`."""

import sys

from loadgen.report.command import main

sys.exit(main())
