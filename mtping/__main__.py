"""`python -m mtping`: the same as the `mtping` command."""

import sys

from mtping.cli import main

sys.exit(main())
