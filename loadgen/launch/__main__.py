import sys

from loadgen.launch.command import main

sys.exit(main())
