"""``telemetry-collector demo``: a collector, a simulated fleet through the real agent, report tables and a dashboard.

Steps, all in this one process: a fresh DuckDB file under ``--dir`` (default ``./telemetry-demo``) with an
analyst token; the collector's aiohttp app listening on 127.0.0.1; the fleet of :mod:`demo.fleet` (the real
agent code) posting to it over HTTP from worker threads; then, once the store says every acknowledged batch is
in its tables, a few reports read through the report API, the dashboard's URL with the token, and the collector
keeps serving until Ctrl-C or SIGTERM (``--exit`` stops it at once). Log lines of warning and above go to
``collector.log`` beside the database.

The collector never imports this package (agent and collector stay apart): the subcommand joins its command
line through the ``telemetry_collector.commands`` entry point that ``pyproject.toml`` declares for
:func:`register`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from collector.cli import exits
from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.reports.formats import range_line, result_table
from collector.storage import open_storage
from collector.storage.tokens import create_token
from collector.web.app import create_app
from collector.web.keys import STORE
from demo.fleet import FleetResult, Progress, run_fleet
from demo.plan import Simulation

__all__ = ["DEMO_REPORTS", "DemoError", "main", "register", "report_tables", "run_demo"]

PROG: Final = "telemetry-collector demo"
DB_NAME: Final = "demo.duckdb"
DEMO_REPORTS: Final = ("active-installs", "versions", "os-families", "deployments")
"""The reports the demo prints, in order (active installs per week, version adoption, OS share, deployments)."""


class DemoError(CollectorError):
    """The demo could not go on; the message says which step failed."""


def _fresh_dir(directory: Path) -> Path:
    """Create ``directory`` and remove an earlier demo's database, WAL and spool (nothing else)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / DB_NAME
    for leftover in (db, db.with_name(DB_NAME + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(DB_NAME + ".spool"), ignore_errors=True)
    return db


def _analyst_token(db: Path) -> str:
    # Created before the collector opens the file: the token table is written here and by the token commands.
    with open_storage(CollectorConfig(db_path=db)) as store:
        _token_id, token = store.write_sync(lambda con: create_token(con, "analyst", dt.datetime.now(dt.UTC)))
    return token


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Warnings and errors of the collector (and the fleet's agents) into ``path``, not over the demo's output."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    agents = logging.getLogger("agent")
    saved = root.level, agents.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    agents.setLevel(logging.ERROR)  # per-snapshot agent warnings would drown the log; failures are counted
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        agents.setLevel(saved[1])
        handler.close()


async def report_tables(url: str, token: str, *, since: dt.date, names: Sequence[str] = DEMO_REPORTS) -> str:
    """The named reports, weekly from ``since`` to today, as text tables read through the report API."""
    out = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for name in names:
            query = {"interval": "week", "from": since.isoformat()}
            async with session.get(f"{url}/v1/reports/{name}", params=query) as resp:
                resp.raise_for_status()
                body: dict[str, Any] = await resp.json()
            note, k = body["suppression"]["note"], body["suppression"]["min_group_size"]
            table = result_table(body["columns"], body["rows"], note, k)
            out.append(f"== {body['title']} ({name}, per week) ==\n{range_line(body)}\n{table}")
    return "\n".join(out)


def _on_stop(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    if sys.platform != "win32":  # there Ctrl-C stays a KeyboardInterrupt
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)


async def _fleet(sim: Simulation, stopping: asyncio.Event) -> FleetResult:
    """Run the fleet in worker threads; a stop request lets the installs already running finish, then raises."""
    cancel = threading.Event()
    fleet = asyncio.ensure_future(asyncio.to_thread(run_fleet, sim, progress=Progress(), cancel=cancel))
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([fleet, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if stopping.is_set():
        cancel.set()
        with contextlib.suppress(Exception):
            await fleet
        raise KeyboardInterrupt
    sys.stderr.write("\n")
    return fleet.result()


async def _serve_demo(
    db: Path, log_path: Path, token: str, *, port: int, sim: Callable[[str], Simulation], stay: bool
) -> int:
    began = time.monotonic()
    app = create_app(CollectorConfig(db_path=db, host="127.0.0.1", port=port))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=30.0)
    stopping = asyncio.Event()
    _on_stop(asyncio.get_running_loop(), stopping.set)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        except OSError as exc:
            raise DemoError(f"the collector did not start: cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        fleet = sim(url)
        print(f"demo: collector listening on {url} (log: {log_path})", flush=True)
        print(f"demo: simulating {fleet.installs} installs over {fleet.days} days through the real agent code...")
        totals = await _fleet(fleet, stopping)
        if totals.batches_failed or totals.batches_rejected:
            raise DemoError(
                f"the fleet simulator could not deliver everything: {totals.batches_failed} batches failed,"
                f" {totals.batches_rejected} rejected"
            )
        print(
            f"demo: {totals.installs} installs sent {totals.batches_delivered} batches"
            f" ({totals.snapshots_delivered} snapshots) in {totals.wall_s} s",
            flush=True,
        )
        await app[STORE].sync()  # every acknowledged batch in the tables
        # The first snapshots come a day or two after the simulation starts (one per install per day).
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=max(0, fleet.days - 2))
        print("\n" + await report_tables(url, token, since=since))
        print(f"Dashboard: {url}/dashboard#token={token}")
        print(f"Analyst token: {token}")
        print(f"Reports from the command line: telemetry-collector report versions --url {url} --token {token}")
        print(f"demo: ready in {time.monotonic() - began:.1f} s", flush=True)
        if stay:
            print("demo: serving until Ctrl-C", flush=True)
            await stopping.wait()
    finally:
        # The spool is loaded into DuckDB and the file closed cleanly (as a stopping collector does).
        await runner.cleanup()
    return 0


def run_demo(
    directory: Path, *, port: int = 0, installs: int = 300, days: int = 42, seed: int = 1, stay: bool = True
) -> int:
    """Run the whole demo (see the module docstring); returns the exit code."""
    db = _fresh_dir(directory)
    log_path = directory / "collector.log"
    print(f"demo: fresh database {db}", flush=True)
    token = _analyst_token(db)

    def simulation(url: str) -> Simulation:
        return Simulation(endpoint=url, installs=installs, days=days, seed=seed)

    with _log_to(log_path):
        return asyncio.run(_serve_demo(db, log_path, token, port=port, sim=simulation, stay=stay))


def _between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}")
        return value

    return parse


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("telemetry-demo"),
        help="where the demo database and log go (default ./telemetry-demo; recreated each run)",
    )
    parser.add_argument("--port", type=_between(0, 65535), default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--installs", type=_between(1, 100_000), default=300, help="simulated installs (default 300)")
    parser.add_argument("--days", type=_between(1, 400), default=42, help="simulated days, ending now (default 42)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument("--exit", action="store_true", help="stop right after printing (for tests and scripts)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_demo(
        args.dir, port=args.port, installs=args.installs, days=args.days, seed=args.seed, stay=not args.exit
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand to the collector CLI (the ``telemetry_collector.commands`` entry point)."""
    parser = subparsers.add_parser(
        "demo",
        help="run a collector with a simulated fleet, print reports and the dashboard URL",
        description="Start a collector on a fresh DuckDB file, run a simulated fleet through the real agent code"
        " into it, print report tables and the dashboard URL, then serve until Ctrl-C.",
    )
    _add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demo``: the demo on its own, errors and exit codes as ``telemetry-collector demo``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run the telemetry demo.")
    _add_arguments(parser)
    return exits.run(_run, parser.parse_args(argv))
