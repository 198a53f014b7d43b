"""`python -m collector_ext.demo` (`make demo`)."""

import sys

from collector_ext.demo.run import main

sys.exit(main())
