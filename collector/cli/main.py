"""``telemetry-collector``: ``serve`` and ``import`` here; ``token`` and ``report`` from :mod:`collector.cli.admin`, ``demo`` from :mod:`demo.run` (an entry point).

Exit codes (:mod:`collector.cli.exits`, the one table for every command): 0 success, 1 operational failure
(database in use, port taken, disk error), 2 bad usage, configuration or input (``import`` exits 2 when any
file was rejected, after storing the others). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web

from collector.cli import admin as admin_cli
from collector.cli import backup, startup
from collector.cli.exits import PROG, run
from collector.cli.import_files import import_files
from collector.cli.import_http import import_over_http
from collector.config import ENV_PREFIX, CollectorConfig, flag_name
from collector.errors import CollectorError, ConfigError
from collector.web.app import create_app
from collector.web.keys import STORE
from collector.web.server import fit_connections, raise_open_files_limit, return_freed_memory

__all__ = ["build_parser", "main"]

COMMANDS: Final = "telemetry_collector.commands"
"""Entry points adding subcommands, each a ``register(subparsers)``: how ``demo`` joins from the top-level
``demo`` package (which imports the agent, as the collector never does) without an import of it here."""

_LISTEN_SETTINGS = ("host", "port")
"""Settings of the HTTP listener only: commands that do not serve do not accept them."""


def _add_settings(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument(
        "--db", "--db-path", dest="db_path", metavar="PATH", help="the DuckDB file (default ./telemetry.duckdb)"
    )
    for field in dataclasses.fields(CollectorConfig):
        if field.name == "db_path" or field.name in skip:
            continue
        env = ENV_PREFIX + field.name.upper()
        parser.add_argument(flag_name(field.name), dest=field.name, metavar="VALUE", help=f"overrides ${env}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="Receive, store and report opt-in telemetry.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve", help="run the HTTP collector", description="Run the collector until SIGTERM/SIGINT."
    )
    _add_settings(serve)
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level; the access log is written at info (default info)",
    )
    serve.set_defaults(
        func=_serve, in_use_hint="another collector serves it: stop that one, or give this one another --db"
    )
    imp = sub.add_parser(
        "import",
        help="store exported batch files (air-gapped installs)",
        description="Validate and store batch files (.json or gzip'd), with the same checks and dedup as the API. "
        "Directories are searched for *.json and *.json.gz. Exit 2 if any file was rejected. --db writes the "
        "database file of a stopped collector; --url posts each file to a running collector's /v1/batches.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--url", metavar="URL", help="a running collector's base URL, e.g. http://127.0.0.1:8080")
    _add_settings(imp, skip=_LISTEN_SETTINGS)
    imp.set_defaults(
        func=_import,
        in_use_hint="a running collector holds it: import through it with --url URL "
        "(e.g. http://127.0.0.1:8080), or stop it first",
    )
    move = sub.add_parser(
        "copy-to-lake",
        help="copy an embedded database into a lake (moving to store = ducklake)",
        description="Copy the batches, snapshots and tokens of the embedded database --db into the lake named by "
        "the lake settings (--catalog, --data-path, ... or their TELEMETRY_COLLECTOR_* variables), then fold them "
        "into the lake's report rollup. Rows the lake already holds are skipped, so it can be run again. The "
        "embedded database must not be held by a running collector.",
    )
    _add_settings(move, skip=_LISTEN_SETTINGS)
    move.set_defaults(func=_copy_to_lake, in_use_hint="a running collector holds it: stop it first")
    admin_cli.register(sub)
    backup.register(sub)
    for entry in importlib.metadata.entry_points(group=COMMANDS):
        entry.load()(sub)
    return parser


def _config(args: argparse.Namespace) -> CollectorConfig:
    # Flags are overrides, read by each setting's own parser like the environment (an empty one too); an error
    # names the flag.
    fields = dataclasses.fields(CollectorConfig)
    flags = {f.name: value for f in fields if (value := getattr(args, f.name, None)) is not None}
    return CollectorConfig.from_env(os.environ, flags=flags)


def _serve(args: argparse.Namespace) -> int:
    config = _config(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Process-wide, so here and not in create_app (tests build apps in their own process).
    open_files = raise_open_files_limit()
    if fit_connections(config.max_connections) < config.max_connections:
        print(
            f"telemetry-collector: max_connections lowered to {fit_connections(config.max_connections)} "
            f"to fit the open-files limit ({open_files}; raise it with LimitNOFILE=)",
            file=sys.stderr,
        )
    return_freed_memory()
    return asyncio.run(_run_server(config))


async def _run_server(config: CollectorConfig) -> int:
    app = create_app(config)
    # Graceful stop: stop accepting, let requests in flight finish (up to 30 s), then cleanup_ctx
    # makes the spool durable and loads it into DuckDB before the file is closed.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=30.0)
    created = startup.new_paths(config)
    try:
        await runner.setup()
    except CollectorError:
        await runner.cleanup()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        startup.remove_paths(created)  # closed and never served: a failed start leaves no new database behind
        raise CollectorError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    port = runner.addresses[0][1] if runner.addresses else config.port  # the port chosen when --port 0
    where = config.where
    print(f"telemetry-collector listening on http://{config.host}:{port} ({where})", flush=True)
    print("\n".join(await startup.welcome_lines(app[STORE], config, startup.base_url(config.host, port))), flush=True)
    await stop.wait()
    stopping = "answering queued batches" if config.lake else "loading the spool into the database"
    print(f"telemetry-collector: stopping ({stopping})", file=sys.stderr, flush=True)
    await runner.cleanup()
    return 0


def _copy_to_lake(args: argparse.Namespace) -> int:
    config = _config(args)
    if not config.db_path.exists():
        raise ConfigError(f"--db: database {config.db_path} does not exist", path="db_path")
    lake = dataclasses.replace(config, store="ducklake")  # the same settings, validated as a lake
    from collector.storage.lake.move import copy_into_lake  # the lake's extras load only for this command

    copied = copy_into_lake(
        dataclasses.replace(config, store="duckdb"), lake, say=lambda line: print(line, file=sys.stderr, flush=True)
    )
    rows = {
        "batches copied": copied.batches,
        "batches already in the lake": copied.skipped_batches,
        "snapshots copied": copied.snapshots,
        "tokens copied": copied.tokens,
        "batches folded into reports": copied.folded,
    }
    for label, value in rows.items():
        print(f"{label:<30}{value:>12}")
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.url:
        if args.db_path:
            raise ConfigError("import takes --url (a running collector) or --db (a stopped one's file), not both")
        return import_over_http(args.url, args.files)
    config = _config(args)
    return import_files(config, args.files)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    # Every file a command creates holds fleet data or feeds it (the DuckDB file, its .wal and temp files,
    # the spool, backups): 0600 and 0700 whatever umask the service manager or shell passed down. DuckDB
    # creates its files itself, so the process umask is the one setting that reaches them all.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Any = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return run(func, args)
