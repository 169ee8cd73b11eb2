"""`python -m w2s ...`, which is also how `accelerate launch -m w2s run SPEC` starts it."""

import sys

from w2s.cli import main

sys.exit(main())
