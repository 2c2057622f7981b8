"""``telemetry-collector``: one module per group of commands.

- :mod:`~collector.cli.main`: the parser, ``serve`` and ``import`` (files via
  :mod:`~collector.cli.import_files`, or over HTTP via :mod:`~collector.cli.import_http`);
  :mod:`~collector.cli.startup` is what ``serve`` says once it listens.
- :mod:`~collector.cli.admin`: ``token`` and ``report``; :mod:`~collector.cli.backup`: ``backup``;
  ``demo`` comes from the top-level ``demo`` package, through the ``telemetry_collector.commands`` entry point.
- :mod:`~collector.cli.exits`: the one table from errors to exit codes that every command goes through.
"""
