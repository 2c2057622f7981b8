"""`python -m agent`: the same as `telemetry-agent`."""

import sys

from .cli import main

sys.exit(main())
