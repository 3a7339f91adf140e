"""`python -m vaelab ...` (what torchrun launches)."""

import sys

from vaelab.cli import main

sys.exit(main())
