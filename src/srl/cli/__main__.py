"""`python -m srl.cli ...`: the `srl` command."""

import sys

from srl.cli import main

sys.exit(main())
