"""The reports, in the order data flows through them.

- :mod:`~collector.reports.rollup`: ``report_days``, one row per install, product and day, folded from the
  raw snapshots by the writer after loads; every report reads it, never the raw rows.
- :mod:`~collector.reports.aggregates` and :mod:`~collector.reports.groups`: the pre-aggregates over it,
  following each touched install (:mod:`~collector.reports.touched`): per install and period, first and
  last days; per-group counts of closed periods (open ones are tallied as a report reads them).
- :mod:`~collector.reports.catalogue`: each report's name, exact definition and one SQL statement.
- :mod:`~collector.reports.answer`: a question (range, interval, product) asked, small groups suppressed,
  periods marked; what the HTTP API, the CLI and the dashboard call.
- :mod:`~collector.reports.formats`: the rows as CSV or as a text table.
"""

from collector.reports.answer import (
    FIRST_DAY,
    INTERVALS,
    LAST_DAY,
    MAX_RANGE_DAYS,
    OTHER,
    PERIOD_COLUMNS,
    REPORTS,
    Fetch,
    Report,
    ReportParams,
    ReportResult,
    first_day,
    list_products,
    period_progress,
    periods,
    run_report,
    suppress,
)

__all__ = [
    "FIRST_DAY",
    "INTERVALS",
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
