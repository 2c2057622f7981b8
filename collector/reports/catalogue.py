"""The report catalogue: each report's name, exact definition, SQL and row shape, for every surface.

Every report reads the ``report_days`` rollup (:mod:`collector.reports.rollup`), buckets days into periods
(day, week starting Monday, or calendar month, all UTC) and counts *distinct installs*, never snapshots, so
one busy install weighs as much as a quiet one. Each report has exactly one SQL statement here; running it,
suppressing small groups and marking partial periods happen in :mod:`collector.reports`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

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
    """DuckDB SQL with numbered parameters; its rows are (period, ...) as :func:`collector.reports.suppress` expects."""
    params: tuple[str, ...] = field(default=())
    """The parameter names, in the order of ``$1``, ``$2``, ..."""
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
