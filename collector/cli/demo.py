"""``telemetry-collector demo``: a collector, a simulated fleet through the real agent, report tables and a dashboard.

Steps: a fresh DuckDB file under ``--dir`` (default ``./telemetry-demo``) with an analyst token; the
collector as a ``telemetry-collector serve`` subprocess on 127.0.0.1; the fleet simulator as a
``python -m agent.simulate`` subprocess posting over HTTP (the collector never imports the agent);
then, once every acknowledged batch is loaded, a few reports read through the report API, the
dashboard's URL with the token, and the collector keeps serving until Ctrl-C (``--exit`` stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import orjson

from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.reports.formats import range_line, result_table
from collector.storage import open_storage
from collector.storage.tokens import create_token

__all__ = ["DEMO_REPORTS", "DemoError", "main", "register", "run_demo"]

PROG: Final = "telemetry-collector demo"
DB_NAME: Final = "demo.duckdb"
DEMO_REPORTS: Final = ("active-installs", "versions", "os-families", "deployments")
"""The reports the demo prints, in order (active installs per week, version adoption, OS share, deployments)."""
_LISTENING: Final = re.compile(r"listening on (http://\S+)")
_START_TIMEOUT_S: Final = 30.0
_LOAD_TIMEOUT_S: Final = 60.0


class DemoError(CollectorError):
    """The demo could not go on; the message says which step failed."""


def _opener() -> urllib.request.OpenerDirector:
    # The collector is on 127.0.0.1: never go through an HTTP(S)_PROXY set for the outside world.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, token: str | None = None, timeout_s: float = 30.0) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - an http:// URL we built
    with _opener().open(request, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return body


def _fresh_dir(directory: Path) -> Path:
    """Create ``directory`` and remove an earlier demo's database, WAL and spool (nothing else)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / DB_NAME
    for leftover in (db, db.with_name(DB_NAME + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(DB_NAME + ".spool"), ignore_errors=True)
    return db


def _analyst_token(db: Path) -> str:
    # Created before the server starts: DuckDB lets one process hold the file, and the token table
    # is only written here and by the token commands.
    with open_storage(CollectorConfig(db_path=db)) as store:
        _token_id, token = store.write_sync(lambda con: create_token(con, "analyst", dt.datetime.now(dt.UTC)))
    return token


@contextlib.contextmanager
def _collector(db: Path, port: int, log: IO[bytes]) -> Iterator[str]:
    """Run ``telemetry-collector serve`` on 127.0.0.1; yields its base URL, stops it (SIGTERM) on exit."""
    argv = [sys.executable, "-m", "collector", "serve", "--db", str(db), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        url = _wait_listening(proc, proc.stdout, log)
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, log), daemon=True).start()
        yield url
    finally:
        if proc.poll() is None:
            # SIGTERM: the collector loads its spool into DuckDB and closes the file cleanly.
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], stdout: IO[bytes], log: IO[bytes]) -> str:
    found: list[str] = []

    def read() -> None:
        for raw in iter(stdout.readline, b""):
            log.write(raw)
            match = _LISTENING.search(raw.decode("utf-8", "replace"))
            if match:
                found.append(match[1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(_START_TIMEOUT_S)
    if not found:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        log.flush()
        lines = Path(str(log.name)).read_text("utf-8", "replace").strip().splitlines()
        reason = lines[-1].removeprefix("telemetry-collector: ") if lines else f"exit status {proc.returncode}"
        raise DemoError(f"the collector did not start: {reason} (log: {log.name})")
    return found[0]


def _simulate(url: str, *, installs: int, days: int, seed: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "agent.simulate", "--endpoint", url, "--installs", str(installs),
            "--days", str(days), "--seed", str(seed), "--json"]  # fmt: skip
    # stderr is the user's terminal: the simulator's progress line shows there.
    done = subprocess.run(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    if done.returncode == 2 or not done.stdout.strip():
        raise DemoError(f"the fleet simulator failed (exit status {done.returncode})")
    totals: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    if done.returncode != 0:
        raise DemoError(
            f"the fleet simulator could not deliver everything: {totals['batches_failed']} batches failed,"
            f" {totals['batches_rejected']} rejected"
        )
    return totals


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def _wait_loaded(url: str, batches: int) -> None:
    """Wait until the collector has stored ``batches`` and loaded its spool into DuckDB."""
    deadline = time.monotonic() + _LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        text = _get(f"{url}/metrics").decode()
        if _metric(text, "telemetry_batches_accepted_total") >= batches and not _metric(
            text, "telemetry_pending_batches"
        ):
            return
        time.sleep(0.2)
    raise DemoError(f"the collector did not load the fleet's batches within {_LOAD_TIMEOUT_S:g} s")


def report_tables(url: str, token: str, *, since: dt.date, names: Sequence[str] = DEMO_REPORTS) -> str:
    """The named reports, weekly from ``since`` to today, as text tables read through the report API."""
    out = []
    for name in names:
        body = orjson.loads(_get(f"{url}/v1/reports/{name}?interval=week&from={since.isoformat()}", token))
        note, k = body["suppression"]["note"], body["suppression"]["min_group_size"]
        table = result_table(body["columns"], body["rows"], note, k)
        out.append(f"== {body['title']} ({name}, per week) ==\n{range_line(body)}\n{table}")
    return "\n".join(out)


def run_demo(
    directory: Path, *, port: int = 0, installs: int = 300, days: int = 42, seed: int = 1, stay: bool = True
) -> int:
    """Run the whole demo (see the module docstring); returns the exit code."""
    began = time.monotonic()
    db = _fresh_dir(directory)
    log_path = directory / "collector.log"
    print(f"demo: fresh database {db}", flush=True)
    token = _analyst_token(db)
    with log_path.open("wb") as log, _collector(db, port, log) as url:
        print(f"demo: collector listening on {url} (log: {log_path})", flush=True)
        print(f"demo: simulating {installs} installs over {days} days through the real agent code...", flush=True)
        totals = _simulate(url, installs=installs, days=days, seed=seed)
        print(
            f"demo: {totals['installs']} installs sent {totals['batches_delivered']} batches"
            f" ({totals['snapshots_delivered']} snapshots) in {totals['wall_s']} s",
            flush=True,
        )
        _wait_loaded(url, int(totals["batches_delivered"]))
        # The first snapshots come a day or two after the simulation starts (one per install per day).
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=max(0, days - 2))
        print("\n" + report_tables(url, token, since=since))
        print(f"Dashboard: {url}/dashboard#token={token}")
        print(f"Analyst token: {token}")
        print(f"Reports from the command line: telemetry-collector report versions --url {url} --token {token}")
        print(f"demo: ready in {time.monotonic() - began:.1f} s", flush=True)
        if stay:
            _wait_for_interrupt()
    return 0


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        print("demo: serving until Ctrl-C", flush=True)
        while not stop.wait(0.5):
            pass


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("telemetry-demo"),
                        help="where the demo database and log go (default ./telemetry-demo; recreated each run)")  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--installs", type=int, default=300, help="simulated installs (default 300)")
    parser.add_argument("--days", type=int, default=42, help="simulated days, ending now (default 42)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument("--exit", action="store_true", help="stop right after printing (for tests and scripts)")


def _run(args: argparse.Namespace) -> int:
    for name, lo, hi in (("port", 0, 65535), ("installs", 1, 100_000), ("days", 1, 400)):
        if not lo <= getattr(args, name) <= hi:
            print(f"{PROG}: --{name} must be between {lo} and {hi}", file=sys.stderr)
            return 2
    try:
        return run_demo(args.dir, port=args.port, installs=args.installs, days=args.days, seed=args.seed,
                        stay=not args.exit)  # fmt: skip
    except CollectorError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand to the collector CLI (sets ``func(args) -> int``)."""
    parser = subparsers.add_parser(
        "demo",
        help="run a collector with a simulated fleet, print reports and the dashboard URL",
        description="Start a collector on a fresh DuckDB file, run a simulated fleet through the real agent code"
        " into it, print report tables and the dashboard URL, then serve until Ctrl-C.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m collector.cli.demo``: the demo on its own, before or without the CLI wiring."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run the telemetry demo.")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
