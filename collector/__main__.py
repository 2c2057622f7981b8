"""``python -m collector``: the same as the ``telemetry-collector`` command."""

from .cli import main

raise SystemExit(main())
