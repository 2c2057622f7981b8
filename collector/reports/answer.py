"""Answering a report: the question (range, interval, product), its SQL run, small groups suppressed, periods marked.

The reports themselves (definitions, SQL, columns) are in :mod:`collector.reports.catalogue` and are
re-exported here, so the HTTP API, the CLI and the dashboard import one module. Small groups are
suppressed here, after the SQL and before any surface sees a row (see :func:`suppress`); no report
returns a single install's rows. Every row also says whether its period has ended by the collector's
today, so the current, partial period is never mistaken for a collapse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from collector.errors import BadRequestError, NotFoundError
from collector.reports import groups
from collector.reports.catalogue import INTERVALS, OTHER, PERIOD_COLUMNS, REPORTS, Fetch, Report
from collector.reports.formats import result_csv, result_table
from schema import CATALOGUE, SchemaError

__all__ = [
    "INTERVALS",
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_RANGE_DAYS",
    "OTHER",
    "PERIOD_COLUMNS",
    "REPORTS",
    "Fetch",
    "Report",
    "ReportParams",
    "ReportResult",
    "first_day",
    "list_products",
    "period_progress",
    "periods",
    "run_report",
    "suppress",
]

MAX_RANGE_DAYS: Final = 3700
"""Longest range a report may cover (about ten years)."""
MAX_PERIODS: Final = 1000
"""Periods one report may hold (only a daily range can reach it: 1,000 days)."""
FIRST_DAY: Final = dt.date(2000, 1, 1)
LAST_DAY: Final = dt.date(2099, 12, 31)
"""The days a report may name: those a batch can carry (wire-format timestamps are years 2000-2099).

The bound also keeps widening a range to whole periods far from ``date.min`` and ``date.max``, which
would otherwise overflow (a 500 for ``to=9999-12-31&interval=week``).
"""
DEFAULT_RANGE_DAYS: Final = 90


def _parse_date(text: str, path: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequestError(f"expected a date YYYY-MM-DD, got {text[:40]!r}", path=path) from None
    _check_day(day, path)
    return day


def _check_day(day: dt.date, path: str) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadRequestError(f"{path} must be between {FIRST_DAY} and {LAST_DAY}", path=path)


def _period_start(day: dt.date, interval: str) -> dt.date:
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next_period(start: dt.date, interval: str) -> dt.date:
    if interval == "week":
        return start + dt.timedelta(days=7)
    if interval == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportParams:
    """The question: a range of UTC days (both ends included), an interval and an optional product.

    The range is widened to whole periods (``from`` to the start of its period, ``to`` to the end of its
    period), and every response echoes the widened range.
    """

    date_from: dt.date
    date_to: dt.date
    interval: str = "week"
    product: str | None = None

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise BadRequestError(f"interval must be one of {', '.join(INTERVALS)}", path="interval")
        _check_day(self.date_from, "from")
        _check_day(self.date_to, "to")
        if self.date_from > self.date_to:
            raise BadRequestError("from is after to", path="from")
        if (self.date_to - self.date_from).days > MAX_RANGE_DAYS:
            raise BadRequestError(f"the range is longer than {MAX_RANGE_DAYS} days", path="to")
        if self.product is not None:
            try:
                CATALOGUE.header["product.name"].check(self.product, "product")
            except SchemaError as exc:
                raise BadRequestError(f"product: {exc.message}", path="product") from None
        start = _period_start(self.date_from, self.interval)
        end = _next_period(_period_start(self.date_to, self.interval), self.interval) - dt.timedelta(days=1)
        object.__setattr__(self, "date_from", start)
        object.__setattr__(self, "date_to", end)
        if self.interval == "day" and (end - start).days >= MAX_PERIODS:
            # Ten years of days is a 4 MB answer that costs the collector a second of CPU per request
            # (a flood of them slowed ingest for everyone) and no chart can show: ask for weeks.
            raise BadRequestError(f"interval=day covers at most {MAX_PERIODS} days; use week or month", path="interval")

    @classmethod
    def parse(
        cls,
        *,
        date_from: str | None,
        date_to: str | None,
        interval: str | None,
        product: str | None,
        today: dt.date,
    ) -> ReportParams:
        """Build from request strings; defaults: the last 90 days up to ``today``, weekly, every product."""
        end = _parse_date(date_to, "to") if date_to else today
        start = (
            _parse_date(date_from, "from")
            if date_from
            else max(FIRST_DAY, end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1))
        )
        return cls(date_from=start, date_to=end, interval=interval or "week", product=product or None)


def periods(params: ReportParams) -> list[dt.date]:
    """The start day of every period in the (widened) range."""
    out, start = [], params.date_from
    while start <= params.date_to:
        out.append(start)
        start = _next_period(start, params.interval)
    return out


def period_progress(start: dt.date, interval: str, today: dt.date) -> dict[str, Any]:
    """The :data:`PERIOD_COLUMNS` of the period starting on ``start``, as of ``today`` (UTC).

    A period is partial until its last day is over: the one holding today, and any after it (those have
    ``days_elapsed`` 0). Today counts as elapsed, since its snapshots are already arriving.
    """
    total = (_next_period(start, interval) - start).days
    elapsed = min(total, max(0, (today - start).days + 1))
    partial = today < start + dt.timedelta(days=total)  # its last day is not over yet
    return {"partial": partial, "days_elapsed": elapsed, "days_total": total}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportResult:
    """A report's answer after suppression: rows of plain values plus what was merged and what was withheld.

    ``merged_*`` count the small groups shown together as one ``(other)`` row (their installs are still in
    the numbers, only their names are hidden); ``withheld_*`` count the groups, or for count and statistics
    reports the periods, shown with no number at all. Installs are install-periods, summed over periods.
    """

    report: Report
    params: ReportParams
    today: dt.date
    rows: list[dict[str, Any]]
    min_group_size: int
    merged_groups: int = 0
    merged_installs: int = 0
    withheld_groups: int = 0
    withheld_installs: int = 0

    @property
    def suppressed_groups(self) -> int:
        """Groups (or periods) that lost their name or their number."""
        return self.merged_groups + self.withheld_groups

    @property
    def suppressed_installs(self) -> int:
        """Install-periods in those groups."""
        return self.merged_installs + self.withheld_installs

    def note(self) -> str:
        """One sentence saying what was merged and what withheld; empty when nothing was suppressed."""
        parts = []
        if self.merged_groups:
            parts.append(
                f"{self.merged_groups} merged into {OTHER!r} ({_plural(self.merged_installs, 'install-period')})"
            )
        if self.withheld_groups:
            parts.append(f"{self.withheld_groups} withheld ({_plural(self.withheld_installs, 'install-period')})")
        if not parts:
            return ""
        what = "Groups" if self.report.shape == "groups" else "Periods"
        return f"{what} of fewer than {self.min_group_size} installs: {'; '.join(parts)}."

    def suppression(self) -> dict[str, Any]:
        """How much was merged and withheld, and why."""
        return {
            "min_group_size": self.min_group_size,
            "groups": self.suppressed_groups,
            "installs": self.suppressed_installs,
            "merged_groups": self.merged_groups,
            "merged_installs": self.merged_installs,
            "withheld_groups": self.withheld_groups,
            "withheld_installs": self.withheld_installs,
            "note": self.note(),
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/reports/NAME``."""
        rows = [{k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()} for row in self.rows]
        return {
            "report": self.report.name,
            "title": self.report.title,
            "definition": self.report.definition,
            "unit": self.report.unit,
            "from": self.params.date_from.isoformat(),
            "to": self.params.date_to.isoformat(),
            "today": self.today.isoformat(),
            "interval": self.params.interval,
            "product": self.params.product,
            "columns": list(self.report.columns),
            "rows": rows,
            "suppression": self.suppression(),
        }

    def to_csv(self) -> str:
        """The rows as CSV with a header line (the suppression summary goes in HTTP headers or stderr)."""
        return result_csv(self.report.columns, self.rows)

    def to_table(self) -> str:
        """The rows as an aligned text table for people, with the suppression note below."""
        return result_table(self.report.columns, self.rows, self.note(), self.min_group_size)


def _bucket_label(upper: int) -> str:
    lower = upper // 2 + 1 if upper > 1 else 0
    return str(upper) if lower == upper else f"{lower}-{upper}"


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def suppress(
    report: Report, params: ReportParams, raw: list[tuple[Any, ...]], min_group_size: int, today: dt.date
) -> ReportResult:
    """Turn the SQL rows into output rows, hiding every group of fewer than ``min_group_size`` installs."""
    k = min_group_size
    merged, withheld = [0, 0], [0, 0]  # [groups, install-periods]
    rows: list[dict[str, Any]] = []

    def hide(into: list[int], n: int) -> None:
        into[0], into[1] = into[0] + 1, into[1] + n

    if report.shape == "count":
        counts = {period: int(n) for period, n in raw}
        for period in periods(params):
            n = counts.get(period, 0)
            small = 0 < n < k
            if small:
                hide(withheld, n)
            rows.append({"period": period, "installs": None if small else n, "suppressed": small})
    elif report.shape == "stats":
        for period, n, total, mean, quantiles in sorted(raw, key=lambda r: r[0]):
            small = n < k
            if small:
                hide(withheld, n)
            values = [None] * 3 if small else [_round(q) for q in quantiles]
            row: dict[str, Any] = {"period": period, "installs": None if small else int(n)}
            if report.has_total:
                row["total"] = None if small or total is None else int(total)
            row.update({"mean": None if small else _round(mean), "p50": values[0], "p90": values[1]})
            row.update({"p99": values[2], "suppressed": small})
            rows.append(row)
    else:
        cells: dict[tuple[dt.date, str], list[tuple[Any, int]]] = {}
        for period, label, dimension, n in raw:
            cells.setdefault((period, dimension or ""), []).append((label, int(n)))
        for (period, dimension), groups in sorted(cells.items()):
            total = sum(n for _, n in groups)
            shown = [(label, n) for label, n in groups if n >= k]
            tiny = [n for _, n in groups if n < k]
            shown.sort(key=(lambda g: g[0]) if report.has_dimension else (lambda g: (-g[1], str(g[0]))))
            if sum(tiny) >= k:  # together they are a large enough group; fewer are withheld entirely
                shown.append((OTHER, sum(tiny)))
            for n in tiny:
                hide(merged if sum(tiny) >= k else withheld, n)
            for label, n in shown:
                group = _bucket_label(label) if report.has_dimension and label != OTHER else str(label)
                row = {"period": period, **({"dimension": dimension} if report.has_dimension else {})}
                row.update({"group": group, "installs": n, "share_pct": round(100 * n / total, 1)})
                rows.append(row)
    for row in rows:
        row.update(period_progress(row["period"], params.interval, today))
    return ReportResult(
        report=report,
        params=params,
        today=today,
        rows=rows,
        min_group_size=k,
        merged_groups=merged[0],
        merged_installs=merged[1],
        withheld_groups=withheld[0],
        withheld_installs=withheld[1],
    )


async def run_report(
    name: str,
    params: ReportParams,
    *,
    fetch: Fetch,
    min_group_size: int,
    lost_after_days: int,
    today: dt.date,
) -> ReportResult:
    """Answer report ``name`` from the rollup (refresh it first: :func:`collector.reports.rollup.refresh`).

    Raises :class:`NotFoundError` for an unknown report, and for a product no install has sent data for
    (path ``product``): an empty answer would look like a product whose fleet vanished.
    """
    report = REPORTS.get(name)
    if report is None:
        raise NotFoundError(f"no report named {name[:60]!r}; GET /v1/reports lists them", path="name")
    if params.product is not None and not await fetch(
        "SELECT 1 FROM report_installs WHERE product_name = ? LIMIT 1", [params.product]
    ):
        raise NotFoundError(
            f"no such product: no install of {params.product!r} has sent data (GET /v1/reports lists the products)",
            path="product",
        )
    values = {
        "interval": params.interval,
        "from": params.date_from,
        "to": params.date_to,
        "product": params.product,
        "lost_after_days": lost_after_days,
        "today": today,
    }
    sql, names = report.statement(params.interval)
    if "open_floor" in names:  # a group report: where its open periods begin, as a constant for its scans
        values["open_floor"] = (await fetch(groups.OPEN_FLOOR_SQL, []))[0][0]
    raw = await fetch(sql, [values[p] for p in names])
    return suppress(report, params, raw, min_group_size, today)


async def list_products(fetch: Fetch, *, min_group_size: int) -> list[str]:
    """Products with at least ``min_group_size`` installs (smaller ones are not named anywhere)."""
    rows = await fetch(
        "SELECT product_name FROM report_installs WHERE product_name IS NOT NULL GROUP BY product_name"
        " HAVING count(*) >= ? ORDER BY product_name",
        [min_group_size],
    )
    return [str(r[0]) for r in rows]


async def first_day(fetch: Fetch) -> dt.date | None:
    """The earliest day any report holds data for (None when there is none): the dashboard's default ``from``.

    It says no more than ``active-installs`` by day already does (the first period with a row).
    """
    rows = await fetch("SELECT min(first_day) FROM report_installs WHERE product_name IS NULL", [])
    day = rows[0][0] if rows else None
    return day if isinstance(day, dt.date) else None
