"""Figures as people read them, each in its KPI's own unit: 48.3%, 35 s, 1,204, 4.21.

Targets print in the same unit as the value beside them (a ratio target of
0.75 reads 75.0%), in the JSON-free views: the dashboard, the committee report.
"""

from datetime import date

from services.metrics.domain import TBA, Rag, Target, Trend, Unit
from services.metrics.periods import DateRange, Period, period_label


def format_figure(value: float | None, unit: Unit | str) -> str:
    if value is None:
        return "no data"
    unit = Unit(unit)
    if unit is Unit.RATIO:
        return f"{value * 100:.1f}%"
    if unit is Unit.COUNT:
        return f"{value:,.0f}"
    if unit is Unit.SECONDS:
        return f"{value:.0f} s"
    return f"{value:.2f}"


def format_target(target: Target, unit: Unit | str) -> str:
    if target is None:
        return "none"
    if target == TBA:
        return "TBA"
    assert not isinstance(target, str)
    return format_figure(target, unit)


RAG_LABELS = {
    Rag.GREEN: "Green",
    Rag.AMBER: "Amber",
    Rag.RED: "Red",
    Rag.INSUFFICIENT_DATA: "Insufficient data",
    None: "No target",
}
# A symbol beside the word, so that RAG never rests on colour alone.
RAG_SYMBOLS = {
    Rag.GREEN: "✔",
    Rag.AMBER: "▲",
    Rag.RED: "✖",
    Rag.INSUFFICIENT_DATA: "…",
    None: "-",
}
TREND_ARROWS = {
    Trend.IMPROVING: ("↑", "improving"),
    Trend.WORSENING: ("↓", "worsening"),
    Trend.UNCHANGED: ("→", "unchanged"),
    Trend.UP: ("↗", "up"),
    Trend.DOWN: ("↘", "down"),
    None: ("", "no comparison"),
}


def rag_label(rag: Rag | None) -> str:
    return RAG_LABELS[rag]


def rag_class(rag: Rag | None) -> str:
    return rag.value if rag else "none"


def area_title(service_area: str) -> str:
    return service_area.replace("_", " ").capitalize()


def day_text(day: date) -> str:
    """`1 December 2026`."""
    return f"{day.day} {day:%B %Y}"


def period_title(span: DateRange, period: Period) -> str:
    """A period as a reader says it: December 2026, Q1 2026/27, 2026/27, week of 30 November."""
    if period is Period.MONTH:
        return f"{span.start:%B %Y}"
    if period is Period.WEEK:
        return f"the week of {day_text(span.start)}"
    if period is Period.DAY:
        return day_text(span.start)
    return period_label(span, period)


def days_text(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"
