"""The report catalogue: each report's definition and SQL, in one place for the HTTP API, the CLI and the dashboard.

Every report reads the ``report_days`` rollup (:mod:`collector.reports_rollup`), buckets days into periods
(day, week starting Monday, or calendar month, all UTC) and counts *distinct installs*, never snapshots, so
one busy install weighs as much as a quiet one. Small groups are suppressed here, after the SQL and before
any surface sees a row (see :func:`suppress`); no report returns a single install's rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from schema import CATALOGUE, SchemaError

from .errors import BadRequestError, NotFoundError
from .reports_format import result_csv, result_table

__all__ = [
    "INTERVALS",
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_RANGE_DAYS",
    "OTHER",
    "REPORTS",
    "Fetch",
    "Report",
    "ReportParams",
    "ReportResult",
    "list_products",
    "periods",
    "run_report",
    "suppress",
]

INTERVALS: Final = ("day", "week", "month")
MAX_RANGE_DAYS: Final = 3700
"""Longest range a report may cover (about ten years)."""
FIRST_DAY: Final = dt.date(2000, 1, 1)
LAST_DAY: Final = dt.date(2099, 12, 31)
"""The days a report may name: those a batch can carry (wire-format timestamps are years 2000-2099).

The bound also keeps widening a range to whole periods far from ``date.min`` and ``date.max``, which
would otherwise overflow (a 500 for ``to=9999-12-31&interval=week``).
"""
OTHER: Final = "(other)"
"""The label of the row that small groups are merged into (no catalogue value has parentheses)."""
DEFAULT_RANGE_DAYS: Final = 90

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]
"""Runs one read-only query with positional parameters, e.g. ``Store.read``."""

Shape = Literal["count", "groups", "stats"]

# Days in range, for the chosen product, with their period. Parameters are named here ($name) and
# numbered when a report is defined (DuckDB rejects parameters a statement does not use).
_DAYS: Final = """days AS (
    SELECT *, CAST(date_trunc($interval, day) AS DATE) AS period
    FROM report_days
    WHERE day BETWEEN $from AND $to AND (CAST($product AS VARCHAR) IS NULL OR product_name = $product)
)"""
_PRODUCT_FILTER: Final = "(CAST($product AS VARCHAR) IS NULL OR product_name = $product)"
_QUANTILES: Final = "quantile_cont(value, [0.5, 0.9, 0.99])"


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One report: its name, what it means exactly, its SQL and the shape of its rows."""

    name: str
    title: str
    definition: str
    """The exact definition, as docs/reports.md and the dashboard show it."""
    shape: Shape
    sql: str
    """DuckDB SQL with numbered parameters; its rows are (period, ...) as :meth:`ReportResult` expects."""
    params: tuple[str, ...] = field(default=())
    """The parameter names, in the order of ``$1``, ``$2``, ..."""
    unit: str = "installs"
    has_total: bool = False
    has_dimension: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of each row (JSON keys, CSV header)."""
        if self.shape == "count":
            return ("period", "installs", "suppressed")
        if self.shape == "groups":
            return ("period", *(("dimension",) if self.has_dimension else ()), "group", "installs", "share_pct")
        total = ("total",) if self.has_total else ()
        return ("period", "installs", *total, "mean", "p50", "p90", "p99", "suppressed")

    def describe(self) -> dict[str, Any]:
        """The JSON description listed by ``GET /v1/reports``."""
        return {
            "name": self.name,
            "title": self.title,
            "definition": self.definition,
            "shape": self.shape,
            "unit": self.unit,
            "columns": list(self.columns),
        }


def _report(*, sql: str, **kwargs: Any) -> Report:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return Report(sql=re.sub(r"\$([a-z_]+)", number, sql), params=tuple(names), **kwargs)


def _latest(column: str) -> str:
    # Each install counts once per period, in the group it reported last in that period.
    return f"""WITH {_DAYS}, latest AS (
    SELECT period, install_id, arg_max({column}, day) AS label FROM days GROUP BY period, install_id
)
SELECT period, label, NULL, count(*) FROM latest WHERE label IS NOT NULL GROUP BY period, label"""


def _stats(per_install: str, total: str) -> str:
    return f"""WITH {_DAYS}, per_install AS ({per_install})
SELECT period, count(*), {total}, avg(value), {_QUANTILES} FROM per_install GROUP BY period"""


_BUCKET_NOTE: Final = (
    " Buckets are powers of two: a value v falls in the bucket whose upper bound is the smallest power"
    " of two >= v (1, 2, 3-4, 5-8, 9-16, ...)."
)

REPORTS: Final[dict[str, Report]] = {
    r.name: r
    for r in [
        _report(
            name="active-installs",
            title="Active installs",
            definition="Distinct installs that sent at least one snapshot dated in the period.",
            shape="count",
            sql=f"WITH {_DAYS} SELECT period, count(DISTINCT install_id) FROM days GROUP BY period",
        ),
        _report(
            name="new-installs",
            title="New installs",
            definition=(
                "Distinct installs whose first snapshot held by the collector is dated in the period"
                " (history older than retention_days is gone, so an install first seen at that horizon counts"
                " as new there)."
            ),
            shape="count",
            sql=f"""WITH firsts AS (
    SELECT install_id, min(day) AS first_day FROM report_days WHERE {_PRODUCT_FILTER} GROUP BY install_id
)
SELECT CAST(date_trunc($interval, first_day) AS DATE), count(*) FROM firsts
WHERE first_day BETWEEN $from AND $to GROUP BY 1""",
        ),
        _report(
            name="lost-installs",
            title="Lost installs",
            definition=(
                "Distinct installs whose last snapshot is lost_after_days (default 30) days or more before today,"
                " counted in the period of the day they became lost (last snapshot day + lost_after_days)."
                " An install that comes back is no longer counted."
            ),
            shape="count",
            sql=f"""WITH lasts AS (
    SELECT install_id, max(day) + CAST($lost_after_days AS INTEGER) AS lost_day
    FROM report_days WHERE {_PRODUCT_FILTER} GROUP BY install_id
)
SELECT CAST(date_trunc($interval, lost_day) AS DATE), count(*) FROM lasts
WHERE lost_day BETWEEN $from AND $to AND lost_day <= $today GROUP BY 1""",
        ),
        _report(
            name="versions",
            title="Version adoption",
            definition=(
                "Active installs per product version, each install counted once per period at the last version"
                " it reported in the period (without a product filter the group is 'product version')."
            ),
            shape="groups",
            sql=_latest(
                "CASE WHEN CAST($product AS VARCHAR) IS NULL THEN product_name || ' ' || product_version"
                " ELSE product_version END"
            ),
        ),
        _report(
            name="os-families",
            title="OS family share",
            definition="Active installs per os.family, each install counted once per period at its last value.",
            shape="groups",
            sql=_latest("os_family"),
        ),
        _report(
            name="os-versions",
            title="OS version share",
            definition="Active installs per os.version, each install counted once per period at its last value.",
            shape="groups",
            sql=_latest("os_version"),
        ),
        _report(
            name="hardware",
            title="Hardware distribution",
            definition=(
                "Active installs per bucket of CPU logical cores, memory (GiB), data disk total and free (GiB),"
                " each install counted once per period and dimension at its last value." + _BUCKET_NOTE
            ),
            shape="groups",
            has_dimension=True,
            sql=f"""WITH {_DAYS}, latest AS (
    SELECT period, install_id, arg_max(cpu_cores, day) AS cpu_cores, arg_max(memory_gib, day) AS memory_gib,
        arg_max(disk_total_gib, day) AS disk_total_gib, arg_max(disk_free_gib, day) AS disk_free_gib
    FROM days GROUP BY period, install_id
), readings AS (
    UNPIVOT latest ON cpu_cores, memory_gib, disk_total_gib, disk_free_gib INTO NAME dimension VALUE amount
)
SELECT period, CASE WHEN amount <= 1 THEN 1 ELSE CAST(pow(2, ceil(log2(amount))) AS BIGINT) END AS upper,
    dimension, count(*)
FROM readings GROUP BY ALL""",
        ),
        _report(
            name="cpu-usage",
            title="CPU usage",
            definition=(
                "Percentiles over installs of each install's mean host.cpu.usage_pct in the period (the mean of"
                " all its snapshots there); mean is the average of those per-install means."
            ),
            shape="stats",
            unit="percent",
            sql=_stats(
                "SELECT period, install_id, sum(cpu_pct_sum) / sum(cpu_pct_count) AS value FROM days"
                " WHERE cpu_pct_count > 0 GROUP BY period, install_id",
                "NULL",
            ),
        ),
        _report(
            name="projects",
            title="Projects",
            definition=(
                "Each install's last usage.projects reading in the period; total is their sum over installs,"
                " mean and percentiles are over installs."
            ),
            shape="stats",
            unit="projects",
            has_total=True,
            sql=_stats(
                "SELECT period, install_id, arg_max(projects, day) AS value FROM days"
                " WHERE projects IS NOT NULL GROUP BY period, install_id",
                "sum(value)",
            ),
        ),
        _report(
            name="deployments",
            title="Deployments",
            definition=(
                "Deployments made in the period, from the cumulative usage.deployments counter: per install, the"
                " sum of the increases between consecutive readings whose later reading is in the period (a drop"
                " is a reset and counts the new value; gaps between snapshots are bridged; the first reading"
                " ever is the baseline). Total is the sum over installs; mean and percentiles are over installs"
                " that reported the counter in the period."
            ),
            shape="stats",
            unit="deployments",
            has_total=True,
            sql=_stats(
                "SELECT period, install_id, sum(deployments_delta) AS value FROM days"
                " WHERE deployment_readings > 0 GROUP BY period, install_id",
                "sum(value)",
            ),
        ),
    ]
}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportResult:
    """A report's answer after suppression: rows of plain values plus what was suppressed."""

    report: Report
    params: ReportParams
    rows: list[dict[str, Any]]
    min_group_size: int
    suppressed_groups: int
    suppressed_installs: int

    def suppression(self) -> dict[str, Any]:
        """How much was withheld, and why."""
        return {
            "min_group_size": self.min_group_size,
            "groups": self.suppressed_groups,
            "installs": self.suppressed_installs,
            "note": (
                f"{self.suppressed_groups} group(s) with fewer than {self.min_group_size} installs"
                f" ({self.suppressed_installs} install-periods in all) were merged into {OTHER!r} or withheld."
            ),
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
        return result_table(self.report.columns, self.rows, self.suppression()["note"], self.min_group_size)


def _bucket_label(upper: int) -> str:
    lower = upper // 2 + 1 if upper > 1 else 0
    return str(upper) if lower == upper else f"{lower}-{upper}"


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def suppress(report: Report, params: ReportParams, raw: list[tuple[Any, ...]], min_group_size: int) -> ReportResult:
    """Turn the SQL rows into output rows, hiding every group of fewer than ``min_group_size`` installs."""
    k, hidden_groups, hidden_installs = min_group_size, 0, 0
    rows: list[dict[str, Any]] = []
    if report.shape == "count":
        counts = {period: int(n) for period, n in raw}
        for period in periods(params):
            n = counts.get(period, 0)
            small = 0 < n < k
            hidden_groups, hidden_installs = hidden_groups + small, hidden_installs + (n if small else 0)
            rows.append({"period": period, "installs": None if small else n, "suppressed": small})
    elif report.shape == "stats":
        for period, n, total, mean, quantiles in sorted(raw, key=lambda r: r[0]):
            small = n < k
            hidden_groups, hidden_installs = hidden_groups + small, hidden_installs + (n if small else 0)
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
            hidden_groups, hidden_installs = hidden_groups + len(tiny), hidden_installs + sum(tiny)
            for label, n in shown:
                group = _bucket_label(label) if report.has_dimension and label != OTHER else str(label)
                row = {"period": period, **({"dimension": dimension} if report.has_dimension else {})}
                row.update({"group": group, "installs": n, "share_pct": round(100 * n / total, 1)})
                rows.append(row)
    return ReportResult(
        report=report,
        params=params,
        rows=rows,
        min_group_size=k,
        suppressed_groups=hidden_groups,
        suppressed_installs=hidden_installs,
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
    """Answer report ``name`` from ``report_days`` (refresh the rollup first: :func:`reports_rollup.refresh`)."""
    report = REPORTS.get(name)
    if report is None:
        raise NotFoundError(f"no report named {name[:60]!r}; GET /v1/reports lists them", path="name")
    values = {
        "interval": params.interval,
        "from": params.date_from,
        "to": params.date_to,
        "product": params.product,
        "lost_after_days": lost_after_days,
        "today": today,
    }
    raw = await fetch(report.sql, [values[p] for p in report.params])
    return suppress(report, params, raw, min_group_size)


async def list_products(fetch: Fetch, *, min_group_size: int) -> list[str]:
    """Products with at least ``min_group_size`` installs (smaller ones are not named anywhere)."""
    rows = await fetch(
        "SELECT product_name FROM report_days GROUP BY product_name"
        " HAVING count(DISTINCT install_id) >= ? ORDER BY product_name",
        [min_group_size],
    )
    return [str(r[0]) for r in rows]
