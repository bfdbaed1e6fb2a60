"""``python -m bitpack.cli``."""

import sys

from . import main

sys.exit(main())
