"""``python -m collector``: the same as the ``telemetry-collector`` command."""

from .cli.main import main

raise SystemExit(main())
