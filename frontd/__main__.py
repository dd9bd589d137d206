"""`python -m frontd` is the `frontd` command."""

import sys

from frontd.cli import main

sys.exit(main())
