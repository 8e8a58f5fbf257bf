"""The figures of each dashboard page, read through `queries` so that they agree with the
JSON API: the same fair comparison, the same rows.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from services.metrics.dashboard import charts
from services.metrics.dashboard.context import DashboardContext
from services.metrics.domain import HEADLINE_KPIS, KPIS_BY_NAME, Kpi, Unit
from services.metrics.formatting import day_text, days_text, period_title
from services.metrics.periods import (
    Comparison,
    DateRange,
    Period,
    fair_comparison,
    period_containing,
)
from services.metrics.queries import (
    Filters,
    Point,
    committee_groups,
    kpi_figures,
    series_buckets,
    series_points,
)
from services.metrics.report import KpiRow
from services.metrics.store import MetricsStore, Surge

SERIES_LENGTH = 13  # thirteen months: this month and the same month a year before
YEAR_BACK = {Period.MONTH: 12, Period.WEEK: 52, Period.DAY: 364}
ACTIVE_SURGE_DAYS = 2  # a surge found today or yesterday is still news


@dataclass(frozen=True, slots=True)
class AreaRow:
    service_area: str
    cells: list[KpiRow]  # in HEADLINE_KPIS order


@dataclass(frozen=True, slots=True)
class Banner:
    surges: list[Surge]
    overdue: dict[str, int]

    @property
    def overdue_total(self) -> int:
        return sum(self.overdue.values())


async def banner(context: DashboardContext, store: MetricsStore, generation: int) -> Banner:
    today = context.today()
    recent = DateRange(today - timedelta(days=ACTIVE_SURGE_DAYS - 1), today)
    return Banner(
        await store.surges_between(generation, recent),
        await store.overdue_complaints(generation),
    )


async def matrix(
    context: DashboardContext, store: MetricsStore, generation: int, comparison: Comparison
) -> list[AreaRow]:
    """Services by headline KPIs over the (fairly compared) period."""
    groups = await committee_groups(
        store,
        generation,
        comparison,
        context.service_areas,
        today=context.today(),
        judging=context.judging,
    )
    rows = []
    for services in groups.values():
        for service in services:
            by_name = {row.kpi: row for row in service.kpis}
            rows.append(AreaRow(service.service_area, [by_name[name] for name in HEADLINE_KPIS]))
    return sorted(rows, key=lambda row: row.service_area)


def current(context: DashboardContext, period: Period) -> Comparison:
    today = context.today()
    return fair_comparison(period_containing(today, period), period, today)


@dataclass(frozen=True, slots=True)
class Trend:
    kpi: Kpi
    points: list[Point]
    previous_year: list[Point]
    target: float | None
    spec: charts.Spec


def _shift_back(day: date, period: Period) -> date:
    if period is Period.MONTH:
        return day.replace(year=day.year - 1, day=1)
    return day - timedelta(days=7 * 52 if period is Period.WEEK else 364)


async def trend(
    context: DashboardContext,
    store: MetricsStore,
    generation: int,
    kpi: Kpi,
    *,
    period: Period,
    end: date,
    filters: Filters,
    title: str | None = None,
) -> Trend:
    """The last 13 periods to `end`, the same periods a year before, and the target."""

    async def points(last: date) -> list[Point]:
        return await series_points(
            store,
            generation,
            kpi,
            series_buckets(last, period, SERIES_LENGTH),
            period=period,
            filters=filters,
            today=context.today(),
            fcr_window_days=context.fcr_window_days,
        )

    now = await points(end)
    before = await points(_shift_back(end, period))
    target = context.judging.targets.target(kpi.name, filters.service_area)
    numeric_target = target if isinstance(target, float) else None
    spec = charts.trend_chart(
        title or kpi.title,
        kpi.unit,
        [point.label + (" (so far)" if point.partial else "") for point in now],
        [point.value for point in now],
        [point.value for point in before],
        numeric_target,
    )
    return Trend(kpi, now, before, numeric_target, spec)


def by_dimension_chart(title: str, unit: Unit, rows: Sequence[tuple[str, KpiRow]]) -> charts.Spec:
    return charts.bar_chart(title, unit, [(name, row.value) for name, row in rows])


def headline_kpis() -> list[Kpi]:
    return [KPIS_BY_NAME[name] for name in HEADLINE_KPIS]


async def kpi_rows_for(
    context: DashboardContext,
    store: MetricsStore,
    generation: int,
    comparison: Comparison,
    filters: Filters,
) -> dict[str, KpiRow]:
    rows = await kpi_figures(
        store,
        generation,
        comparison,
        filters=filters,
        today=context.today(),
        judging=context.judging,
    )
    return {row.kpi: row for row in rows}


def comparison_text(comparison: Comparison, period: Period) -> str:
    """How the page's figures are compared, in words (the fair-period rule)."""
    title = period_title(comparison.period, period)
    before = comparison.previous
    if comparison.partial:
        return (
            f"{title[0].upper()}{title[1:]} so far ({days_text(comparison.compared_days)}, to "
            f"{day_text(comparison.counted.end)}), compared with the same days of the period "
            f"before ({day_text(before.start)} to {day_text(before.end)})."
        )
    return (
        f"{title[0].upper()}{title[1:]} ({day_text(comparison.period.start)} to "
        f"{day_text(comparison.period.end)}), compared with {day_text(before.start)} to "
        f"{day_text(before.end)}."
    )
