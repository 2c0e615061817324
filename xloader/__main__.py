"""`python -m xloader`: the same as the `xloader` command."""

import sys

from xloader.cli import main

sys.exit(main())
