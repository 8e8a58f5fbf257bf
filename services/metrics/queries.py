"""Figures for a view: the store's sums judged by the pure rules, shared by the JSON API,
the dashboard and the committee report so that the three always agree.

Every comparison with a previous period goes through `periods.fair_comparison`
(DOMAIN.md, KPIs: a period still running is compared with the same number of
elapsed days of the one before, never with the whole of it).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial

from services.metrics.domain import Kpi, Standing, series
from services.metrics.kpi_cache import KpiTotalsCache
from services.metrics.periods import (
    Comparison,
    DateRange,
    Period,
    period_label,
    periods_back,
    ranges_between,
)
from services.metrics.report import (
    Judging,
    KpiRow,
    ServiceStanding,
    committee,
    is_provisional,
    kpi_rows,
)
from services.metrics.store import MetricsStore, OpenComplaints


@dataclass(frozen=True, slots=True)
class Point:
    """One period of a chart (read by `views.SeriesPoint`)."""

    label: str
    start: date
    end: date
    value: float | None
    numerator: float
    denominator: float | None
    provisional: bool
    partial: bool


@dataclass(frozen=True, slots=True)
class Filters:
    service_area: str | None = None
    channel: str | None = None


async def kpi_figures(
    store: MetricsStore,
    generation: int,
    comparison: Comparison,
    *,
    filters: Filters,
    today: date,
    judging: Judging,
    kpis: Iterable[Kpi] | None = None,
) -> list[KpiRow]:
    """Every KPI (or those named) over the counted days, against the fair previous span."""
    current = await store.totals(
        generation,
        comparison.counted,
        service_area=filters.service_area,
        channel=filters.channel,
    )
    previous = await store.totals(
        generation,
        comparison.previous,
        service_area=filters.service_area,
        channel=filters.channel,
    )
    return kpi_rows(
        current,
        previous,
        span=comparison.period,
        service_area=filters.service_area,
        today=today,
        judging=judging,
        **({} if kpis is None else {"kpis": kpis}),
    )


@dataclass(frozen=True, slots=True)
class KpiView:
    """What `GET /v1/kpis` shows: the figures, the generation they come from, and the
    complaints open now."""

    generation: int
    rows: list[KpiRow]
    open_complaints: list[OpenComplaints]


async def kpi_view(
    store: MetricsStore,
    comparison: Comparison,
    *,
    filters: Filters,
    today: date,
    judging: Judging,
    kpis: Iterable[Kpi] | None = None,
    cache: KpiTotalsCache | None = None,
) -> KpiView:
    """`kpi_figures` and the open complaints, read in one statement from one snapshot.

    With a `cache`: the applied mark first (one small round trip), and the statement only
    when nothing was read under that mark before.
    """
    read = store.kpi_totals if cache is None else partial(cache.kpi_totals, store)
    totals = await read(
        comparison.counted,
        comparison.previous,
        service_area=filters.service_area,
        channel=filters.channel,
    )
    rows = kpi_rows(
        totals.current,
        totals.previous,
        span=comparison.period,
        service_area=filters.service_area,
        today=today,
        judging=judging,
        **({} if kpis is None else {"kpis": kpis}),
    )
    return KpiView(totals.generation, rows, totals.open_complaints)


def series_buckets(end: date, period: Period, count: int) -> list[DateRange]:
    """The last `count` whole periods up to the one containing `end`."""
    return ranges_between(DateRange(periods_back(end, period, count - 1), end), period)


async def series_points(
    store: MetricsStore,
    generation: int,
    kpi: Kpi,
    buckets: Sequence[DateRange],
    *,
    period: Period,
    filters: Filters,
    today: date,
    fcr_window_days: int,
) -> list[Point]:
    """One point per bucket; the bucket still running is `partial` (counted up to today)."""
    days = await store.daily_totals(
        generation,
        DateRange(buckets[0].start, buckets[-1].end),
        sorted(kpi.measures),
        service_area=filters.service_area,
        channel=filters.channel,
    )
    return [
        Point(
            label=period_label(bucket, period),
            start=bucket.start,
            end=bucket.end,
            value=figure.value,
            numerator=figure.numerator,
            denominator=figure.denominator,
            provisional=is_provisional(kpi, bucket, today, fcr_window_days),
            partial=bucket.contains(today),
        )
        for bucket, figure in zip(buckets, series(kpi, buckets, days), strict=True)
    ]


async def committee_groups(
    store: MetricsStore,
    generation: int,
    comparison: Comparison,
    service_areas: Iterable[str],
    *,
    today: date,
    judging: Judging,
) -> dict[Standing, list[ServiceStanding]]:
    """Every service area's KPIs over the counted days, in its committee group."""
    return committee(
        await store.totals_by(generation, comparison.counted, "service_area"),
        await store.totals_by(generation, comparison.previous, "service_area"),
        service_areas,
        span=comparison.period,
        today=today,
        judging=judging,
    )
