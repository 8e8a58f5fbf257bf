"""KPI rows for a period and the committee view: pure assembly of figures, no I/O."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from services.metrics.domain import (
    KPIS,
    Kpi,
    Rag,
    Standing,
    Target,
    Trend,
    change,
    evaluate,
    rag_status,
    standing,
)
from services.metrics.periods import DateRange
from services.metrics.targets import Targets


@dataclass(frozen=True, slots=True)
class Judging:
    """How figures are judged: targets, amber tolerance, minimum sample, FCR window."""

    targets: Targets
    amber_tolerance: float
    minimum_sample: int
    fcr_window_days: int


@dataclass(frozen=True, slots=True)
class KpiRow:
    kpi: str
    title: str
    unit: str
    direction: str
    value: float | None
    numerator: float
    denominator: float | None
    target: Target
    rag: Rag | None
    previous_value: float | None
    change: float | None
    change_percent: float | None
    trend: Trend | None
    provisional: bool


def is_provisional(kpi: Kpi, span: DateRange, today: date, window_days: int) -> bool:
    """FCR is final once the re-contact window has passed for the period's last day."""
    return kpi.provisional_for_window and span.end + timedelta(days=window_days) >= today


def kpi_row(
    kpi: Kpi,
    current: Mapping[str, float],
    previous: Mapping[str, float],
    *,
    span: DateRange,
    service_area: str | None,
    today: date,
    judging: Judging,
) -> KpiRow:
    figure = evaluate(kpi, current)
    before = evaluate(kpi, previous)
    target = judging.targets.target(kpi.name, service_area)
    moved = change(kpi, figure.value, before.value)
    return KpiRow(
        kpi=kpi.name,
        title=kpi.title,
        unit=kpi.unit.value,
        direction=kpi.direction.value,
        value=figure.value,
        numerator=figure.numerator,
        denominator=figure.denominator,
        target=target,
        rag=rag_status(
            kpi,
            figure,
            target,
            amber_tolerance=judging.amber_tolerance,
            minimum_sample=judging.minimum_sample,
        ),
        previous_value=before.value,
        change=moved.absolute,
        change_percent=None if moved.relative is None else moved.relative * 100,
        trend=moved.trend,
        provisional=is_provisional(kpi, span, today, judging.fcr_window_days),
    )


def kpi_rows(
    current: Mapping[str, float],
    previous: Mapping[str, float],
    *,
    span: DateRange,
    service_area: str | None,
    today: date,
    judging: Judging,
    kpis: Iterable[Kpi] = KPIS,
) -> list[KpiRow]:
    return [
        kpi_row(
            kpi,
            current,
            previous,
            span=span,
            service_area=service_area,
            today=today,
            judging=judging,
        )
        for kpi in kpis
    ]


@dataclass(frozen=True, slots=True)
class ServiceStanding:
    service_area: str
    standing: Standing
    kpis: list[KpiRow]


STANDING_ORDER = (
    Standing.FURTHER_WORK_REQUIRED,
    Standing.AT_RISK,
    Standing.PERFORMING_WELL,
    Standing.NOT_RATED,
)


def committee(
    current_by_area: Mapping[str, Mapping[str, float]],
    previous_by_area: Mapping[str, Mapping[str, float]],
    service_areas: Iterable[str],
    *,
    span: DateRange,
    today: date,
    judging: Judging,
) -> dict[Standing, list[ServiceStanding]]:
    """Each service area in its group: its worst RAG colour over the quarter decides."""
    groups: dict[Standing, list[ServiceStanding]] = {group: [] for group in STANDING_ORDER}
    for area in sorted(service_areas):
        rows = kpi_rows(
            current_by_area.get(area, {}),
            previous_by_area.get(area, {}),
            span=span,
            service_area=area,
            today=today,
            judging=judging,
        )
        group = standing(row.rag for row in rows)
        groups[group].append(ServiceStanding(area, group, rows))
    return groups
