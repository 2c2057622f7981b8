"""The report catalogue: each report's name, exact definition, SQL and row shape, for every surface.

Every report buckets days into periods (day, week starting Monday, or calendar month, all UTC) and counts
*distinct installs*, never snapshots, so one busy install weighs as much as a quiet one. Each reads the
rollup (:mod:`collector.reports.rollup`), never the raw snapshots: the per-install rows of its periods
(``report_periods``, or ``report_days`` for days), the installs' first and last days (``report_installs``)
or the per-group counts (``report_groups``), all kept exactly as the definitions below take them from
``report_days`` (:mod:`collector.reports.aggregates`). Each report has exactly one SQL statement here; running
it, suppressing small groups and marking partial periods happen in :mod:`collector.reports.answer`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from collector.reports import groups

__all__ = ["INTERVALS", "OTHER", "PERIOD_COLUMNS", "REPORTS", "Fetch", "Report", "Shape"]

INTERVALS: Final = ("day", "week", "month")
OTHER: Final = "(other)"
"""The label of the row that small groups are merged into (no catalogue value has parentheses)."""
PERIOD_COLUMNS: Final = ("partial", "days_elapsed", "days_total")
"""The last columns of every report: whether the row's period has not ended by the collector's today (UTC),
how many of its days have begun (today included) and how many it has."""

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]
"""Runs one read-only query with positional parameters, e.g. ``Store.read``."""

Shape = Literal["count", "groups", "stats"]

# Each install once per period of the range, for the chosen product (NULL: all products together), with
# its values for the stats reports; from report_periods (weeks, months: one row per install and period)
# or report_days (days: its rows, except that an install-day with several products counts once, through
# its all-products row in report_periods). Parameters are named here ($name) and numbered when a report
# is defined (DuckDB rejects parameters a statement does not use).
_VALUES: Final = "install_id, cpu_pct_sum, cpu_pct_count, projects, deployments_delta, deployment_readings"
_PRODUCT: Final = "CAST($product AS VARCHAR)"
SOURCES: Final = {
    "periods": f"""periods AS (
    SELECT period, {_VALUES} FROM report_periods
    WHERE period_kind = $interval AND period BETWEEN $from AND $to AND product_name IS NOT DISTINCT FROM {_PRODUCT}
)""",
    "days": f"""periods AS (
    SELECT day AS period, {_VALUES} FROM report_days WHERE day BETWEEN $from AND $to AND product_name = {_PRODUCT}
    UNION ALL
    SELECT day AS period, {_VALUES} FROM report_days d ANTI JOIN (
        SELECT install_id, period AS day FROM report_periods WHERE period_kind = 'day' AND period BETWEEN $from AND $to
    ) m USING (install_id, day)
    WHERE {_PRODUCT} IS NULL AND d.day BETWEEN $from AND $to
    UNION ALL
    SELECT period, {_VALUES} FROM report_periods
    WHERE period_kind = 'day' AND {_PRODUCT} IS NULL AND product_name IS NULL AND period BETWEEN $from AND $to
)""",
}
"""The ``periods`` rows each stats report reads, by the source its interval uses (:func:`source_of`)."""
# The per-group counts: of closed periods as counted in report_groups, of open ones as tallied now
# (collector.reports.aggregates: the newest days, and the weeks and months that hold them).
_GROUPS: Final = f"""FROM (
    SELECT period_kind, period, product_name, report, dimension, label, installs FROM report_groups
    UNION ALL
    SELECT * FROM ({{open}})
)
WHERE report = '{{report}}' AND period_kind = $interval AND period BETWEEN $from AND $to
    AND product_name IS NOT DISTINCT FROM {_PRODUCT}"""


def _groups(report: str) -> str:
    # _GROUPS for one report (str.replace: the open tally's SQL holds braces).
    return _GROUPS.replace("{report}", report).replace("{open}", groups.OPEN_GROUPS)


_INSTALLS: Final = f"FROM report_installs WHERE product_name IS NOT DISTINCT FROM {_PRODUCT}"
_QUANTILES: Final = "quantile_cont(value, [0.5, 0.9, 0.99])"


def source_of(interval: str) -> str:
    """The key of :data:`SOURCES` a report over ``interval`` periods reads."""
    return "days" if interval == "day" else "periods"


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One report: its name, what it means exactly, its SQL and the shape of its rows."""

    name: str
    title: str
    definition: str
    """The exact definition, as docs/reports.md and the dashboard show it."""
    shape: Shape
    statements: dict[str, tuple[str, tuple[str, ...]]]
    """Per source (:data:`SOURCES`): DuckDB SQL with numbered parameters, and the parameter names in the
    order of ``$1``, ``$2``, ... Its rows are (period, ...) as :func:`collector.reports.suppress` expects.
    One SQL text per report: the sources differ only in where a stats report reads its ``periods``."""
    unit: str = "installs"
    has_total: bool = False
    has_dimension: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of each row (JSON keys, CSV header)."""
        if self.shape == "count":
            return ("period", "installs", "suppressed", *PERIOD_COLUMNS)
        if self.shape == "groups":
            dimension = ("dimension",) if self.has_dimension else ()
            return ("period", *dimension, "group", "installs", "share_pct", *PERIOD_COLUMNS)
        total = ("total",) if self.has_total else ()
        return ("period", "installs", *total, "mean", "p50", "p90", "p99", "suppressed", *PERIOD_COLUMNS)

    def statement(self, interval: str) -> tuple[str, tuple[str, ...]]:
        """The SQL answering this report over ``interval`` periods, and its parameter names in order."""
        return self.statements[source_of(interval)]

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


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"\$([a-z_]+)", number, sql), tuple(names)


def _report(*, sql: str, **kwargs: Any) -> Report:
    # A stats report's SQL starts WITH {periods}; the others read pre-aggregates every interval shares.
    statements = {key: _numbered(sql.replace("{periods}", source)) for key, source in SOURCES.items()}
    return Report(statements=statements, **kwargs)


def _latest(report: str) -> str:
    # Each install counts once per period, in the group it reported last in that period (report_groups
    # holds those counts: collector.reports.periods).
    return (
        f"SELECT period, label, NULL, sum(installs) {_groups(report)} GROUP BY period, label HAVING sum(installs) > 0"
    )


def _stats(per_install: str, total: str) -> str:
    return f"""WITH {{periods}}, per_install AS ({per_install})
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
            sql=f"SELECT period, sum(installs) {_groups('active-installs')} GROUP BY period HAVING sum(installs) > 0",
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
            sql=f"""SELECT CAST(date_trunc($interval, first_day) AS DATE), count(*) {_INSTALLS}
    AND first_day BETWEEN $from AND $to GROUP BY 1""",
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
            sql=f"""WITH lasts AS (SELECT last_day + CAST($lost_after_days AS INTEGER) AS lost_day {_INSTALLS})
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
            sql=_latest("versions"),
        ),
        _report(
            name="os-families",
            title="OS family share",
            definition="Active installs per os.family, each install counted once per period at its last value.",
            shape="groups",
            sql=_latest("os-families"),
        ),
        _report(
            name="os-versions",
            title="OS version share",
            definition="Active installs per os.version, each install counted once per period at its last value.",
            shape="groups",
            sql=_latest("os-versions"),
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
            sql=f"""SELECT period, CAST(label AS BIGINT), dimension, sum(installs) {_groups("hardware")}
GROUP BY period, label, dimension HAVING sum(installs) > 0""",
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
                "SELECT period, install_id, cpu_pct_sum / cpu_pct_count AS value FROM periods WHERE cpu_pct_count > 0",
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
                "SELECT period, install_id, projects AS value FROM periods WHERE projects IS NOT NULL",
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
                "SELECT period, install_id, deployments_delta AS value FROM periods WHERE deployment_readings > 0",
                "sum(value)",
            ),
        ),
    ]
}
