"""Dev tools that drive agent and collector together; no part of either product.

The agent (which vendors embed) and the collector never import each other; this package may import both.

- :mod:`demo.plan`: the plan of a synthetic fleet (versions, OSes, hardware, joins and departures, consent).
- :mod:`demo.fleet`: runs a plan through the real agent code into a collector (``python -m demo.fleet``).
- :mod:`demo.run`: ``telemetry-collector demo`` (and ``python -m demo``): a collector and a fleet in one
  process, then report tables and the dashboard's URL. It joins the collector's command line through the
  ``telemetry_collector.commands`` entry point, so the collector needs no import of it.
"""
