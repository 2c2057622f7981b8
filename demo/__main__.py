"""``python -m demo``: the demo (:mod:`demo.run`), as ``telemetry-collector demo`` runs it."""

import sys

from demo.run import main

sys.exit(main())
