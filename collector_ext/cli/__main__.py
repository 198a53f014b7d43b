"""`python -m collector_ext.cli`."""

import sys

from collector_ext.cli import main

sys.exit(main())
