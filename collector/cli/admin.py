"""The ``token`` and ``report`` subcommands of telemetry-collector.

Both work either through a running collector (``--url URL --token T``, over HTTP) or straight on a
database file that no collector holds open (``--db PATH``, the default being ``$TELEMETRY_COLLECTOR_DB_PATH``
or ``./telemetry.duckdb``). The first admin token must be created with ``--db`` before the server starts
(or while it is stopped); a database held by a running collector fails with a hint to use ``--url``.
Exit codes: 0 success, 1 operational failure (collector unreachable, database in use), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from collector.cli.exits import CommandError
from collector.config import CollectorConfig
from collector.reports import INTERVALS, REPORTS, ReportParams, run_report
from collector.reports.formats import range_line, result_csv, result_table
from collector.storage import open_storage
from collector.storage.tokens import ROLES, create_token, list_tokens, revoke_token

__all__ = ["TOKEN_ENV", "register"]

TOKEN_ENV: Final = "TELEMETRY_TOKEN"  # noqa: S105  # the name of a variable, not a secret
"""Environment variable read when ``--token`` is not given (keeps the token out of the process list)."""
_TIMEOUT_S: Final = 60.0
_TOKENS_HELD: Final = (
    "a running collector holds it: go through it with --url URL --token ADMIN_TOKEN (an admin token),"
    " or stop the collector first"
)
_REPORT_IN_USE: Final = "a running collector holds it: read through it with --url URL --token TOKEN, or stop it first"


def _add_target(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", type=Path, help="a database file no collector holds open")
    where.add_argument("--url", metavar="URL", help="a running collector's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", metavar="TOKEN", help=f"bearer token for --url (default ${TOKEN_ENV})")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` and ``report`` to the collector CLI; each sets ``func(args) -> int`` as its default."""
    token = subparsers.add_parser("token", help="create, list and revoke report tokens", description=__doc__)
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token and print it (shown only this once)")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument(
        "--label", metavar="TEXT", help="what the token is for, e.g. dashboard-pm (1-40 of A-Z a-z 0-9 space . _ -)"
    )
    _add_target(create)
    create.set_defaults(func=_token_create, in_use_hint=_TOKENS_HELD)
    listing = actions.add_parser("list", help="list tokens (ids, roles, dates; never the tokens)")
    _add_target(listing)
    listing.set_defaults(func=_token_list, in_use_hint=_TOKENS_HELD)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", metavar="ID")
    _add_target(revoke)
    revoke.set_defaults(func=_token_revoke, in_use_hint=_TOKENS_HELD)

    report = subparsers.add_parser(
        "report",
        help="print a report (see docs/reports.md)",
        description="Print a report as a table (default), JSON or CSV. NAME 'list' lists the reports.",
    )
    report.add_argument("name", metavar="NAME", choices=[*REPORTS, "list"], help=", ".join([*REPORTS, "list"]))
    report.add_argument(
        "--from", dest="date_from", metavar="YYYY-MM-DD", help="first day (default: 89 days before --to)"
    )
    report.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day, included (default: today, UTC)")
    report.add_argument("--interval", choices=INTERVALS, default="week", help="period length (default week)")
    report.add_argument("--product", help="only this product (default: all)")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output (default table)")
    _add_target(report)
    report.set_defaults(func=_report, in_use_hint=_REPORT_IN_USE)


# -- the two targets ----------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> CollectorConfig:
    return CollectorConfig.from_env(db_path=args.db)


def _http(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[bytes, dict[str, str]]:
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise CommandError(f"--url needs --token or ${TOKEN_ENV}", 2)
    url = args.url.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, got {args.url!r}", 2)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310  # scheme checked
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310  # scheme checked
            return response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CommandError(f"HTTP {exc.code}: {message}", 2 if exc.code < 500 else 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {args.url}: {reason}", 1) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- token ----------------------------------------------------------------------------------------


def _token_create(args: argparse.Namespace) -> int:
    if args.url:
        answer = json.loads(_http(args, "POST", "/v1/tokens", {"role": args.role, "label": args.label})[0])
        token_id, token = answer["token_id"], answer["token"]
    else:
        with open_storage(_config(args)) as store:
            token_id, token = store.write_sync(lambda con: create_token(con, args.role, _now(), args.label))
    print(f"created {args.role} token {token_id}; it is shown only now:", file=sys.stderr)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    if args.url:
        tokens = json.loads(_http(args, "GET", "/v1/tokens")[0])["tokens"]
    else:
        with open_storage(_config(args)) as store:
            tokens = store.write_sync(list_tokens)
    columns = ("token_id", "role", "label", "created_at", "last_used_on", "revoked_at")
    rows = [{**t, **{key: t.get(key) or "-" for key in ("label", "last_used_on", "revoked_at")}} for t in tokens]
    sys.stdout.write(result_table(columns, rows, f"{len(rows)} token(s)", 0))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    if args.url:
        _http(args, "DELETE", "/v1/tokens/" + urllib.parse.quote(args.token_id, safe=""))
    else:
        with open_storage(_config(args)) as store:
            if not store.write_sync(lambda con: revoke_token(con, args.token_id, _now())):
                raise CommandError(f"no active token with id {args.token_id!r}", 2)
    print(f"revoked token {args.token_id}", file=sys.stderr)
    return 0


# -- report ---------------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    if args.name == "list":
        for report in REPORTS.values():
            print(f"{report.name:<16} {report.title}")
        return 0
    query = {"from": args.date_from, "to": args.date_to, "interval": args.interval, "product": args.product}
    query = {k: v for k, v in query.items() if v}
    if args.url:
        fmt = "csv" if args.format == "csv" else "json"
        path = f"/v1/reports/{args.name}?" + urllib.parse.urlencode({**query, "format": fmt})
        body, headers = _http(args, "GET", path)
        if fmt == "csv":
            sys.stdout.write(body.decode())
            if note := headers.get("Telemetry-Suppression-Note"):
                print(note, file=sys.stderr)
            return 0
        answer: dict[str, Any] = json.loads(body)
    else:
        answer = _report_from_db(args)
    if args.format == "json":
        print(json.dumps(answer, indent=2))
    elif args.format == "csv":
        sys.stdout.write(result_csv(answer["columns"], answer["rows"]))
        if answer["suppression"]["note"]:
            print(answer["suppression"]["note"], file=sys.stderr)
    else:
        k = answer["suppression"]["min_group_size"]
        print(range_line(answer))
        sys.stdout.write(result_table(answer["columns"], answer["rows"], answer["suppression"]["note"], k))
    return 0


def _report_from_db(args: argparse.Namespace) -> dict[str, Any]:
    config = _config(args)
    today = _now().date()
    params = ReportParams.parse(
        date_from=args.date_from, date_to=args.date_to, interval=args.interval, product=args.product, today=today
    )
    if not config.lake and not config.db_path.exists():
        raise CommandError(f"database {config.db_path} does not exist", 2)
    with open_storage(config) as store:
        store.refresh_rollup_sync()

        async def fetch(sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
            return store.read_sync(sql, values)

        result = asyncio.run(
            run_report(
                args.name,
                params,
                fetch=fetch,
                min_group_size=config.min_group_size,
                lost_after_days=config.lost_after_days,
                today=today,
            )
        )
    return result.to_json()
