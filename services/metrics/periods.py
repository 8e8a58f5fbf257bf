"""Reporting periods: local days in Europe/London, weeks, months, quarters, financial years.

Financial years run April to March, so `year` is the financial year and
quarters are financial quarters (Q1 is April to June), named as councils name
them: "Q1 2026/27" is April to June 2026. A quarter is given as `2026-27-Q1`
(financial) or `2026Q2` (the calendar quarter, the same three months).

A period still running is compared fairly (`fair_comparison`): with the same
number of elapsed days of the period before, never with the whole of it.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
# The days a report may ask about: far enough inside `date`'s range that the
# period before, a whole financial year or twelve periods back all still exist.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class DateRange:
    """Inclusive range of local days."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"range ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


# The Europe/London day of each UTC hour that lies within one local day (London's
# offsets are whole hours, changed on the hour: every hour so far, but each is checked).
_DAY_OF_UTC_HOUR: dict[tuple[int, int, int, int], date] = {}
_HOURS_KEPT = 1 << 16  # about seven years of hours; the table starts again beyond that
_LAST_MICROSECOND = timedelta(hours=1) - timedelta(microseconds=1)


def local_day(instant: datetime) -> date:
    """The Europe/London calendar day of a UTC instant.

    Asked for every event (a batch's thousands, each at its own instant), so the day is
    kept per UTC hour: a look-up instead of a time-zone conversion, which is the costly
    part. An hour is kept only when its first and last microsecond fall on one local day.
    """
    if instant.tzinfo is not UTC:
        return instant.astimezone(LONDON).date()
    hour = (instant.year, instant.month, instant.day, instant.hour)
    day = _DAY_OF_UTC_HOUR.get(hour)
    if day is None:
        day = instant.astimezone(LONDON).date()
        start = instant.replace(minute=0, second=0, microsecond=0)
        try:
            end = start + _LAST_MICROSECOND
        except OverflowError:  # the last hour of year 9999
            return day
        if start.astimezone(LONDON).date() == day == end.astimezone(LONDON).date():
            if len(_DAY_OF_UTC_HOUR) >= _HOURS_KEPT:
                _DAY_OF_UTC_HOUR.clear()
            _DAY_OF_UTC_HOUR[hour] = day
    return day


def financial_year_start(day: date) -> date:
    return date(day.year if day.month >= 4 else day.year - 1, 4, 1)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_containing(day: date, period: Period) -> DateRange:
    if period is Period.DAY:
        return DateRange(day, day)
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return DateRange(start, start + timedelta(days=6))
    if period is Period.MONTH:
        start = _month_start(day)
    elif period is Period.QUARTER:
        start = date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    else:
        start = financial_year_start(day)
    months = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}[period]
    return DateRange(start, _add_months(start, months) - timedelta(days=1))


def previous_range(current: DateRange, period: Period | None) -> DateRange:
    """The period before `current`: the previous calendar period, or as many days before."""
    if period is not None and current == period_containing(current.start, period):
        return period_containing(current.start - timedelta(days=1), period)
    return DateRange(
        current.start - timedelta(days=current.days), current.start - timedelta(days=1)
    )


def ranges_between(span: DateRange, period: Period) -> list[DateRange]:
    """The periods that cover `span`, each whole (for charts)."""
    ranges: list[DateRange] = []
    cursor = span.start
    while cursor <= span.end:
        current = period_containing(cursor, period)
        ranges.append(current)
        cursor = current.end + timedelta(days=1)
    return ranges


def periods_back(end: date, period: Period, count: int) -> date:
    """The first day of the period `count` periods before the one containing `end`."""
    start = period_containing(end, period).start
    for _ in range(count):
        start = period_containing(start - timedelta(days=1), period).start
    return start


def period_label(span: DateRange, period: Period) -> str:
    if period is Period.DAY:
        return span.start.isoformat()
    if period is Period.WEEK:
        year, week, _ = span.start.isocalendar()
        return f"{year}-W{week:02d}"
    if period is Period.MONTH:
        return span.start.strftime("%Y-%m")
    if period is Period.QUARTER:
        return financial_quarter_label(span)
    return financial_year_label(span.start)


def financial_year_label(day: date) -> str:
    start = financial_year_start(day).year
    return f"{start}/{(start + 1) % 100:02d}"


CALENDAR_QUARTER = re.compile(r"(\d{4})Q([1-4])")
FINANCIAL_QUARTER = re.compile(r"(\d{4})-(\d{2})-Q([1-4])")


def parse_quarter(text: str) -> DateRange:
    """`2026-27-Q1` (financial: April to June 2026) or `2026Q2` (calendar: the same)."""
    financial = FINANCIAL_QUARTER.fullmatch(text)
    if financial:
        start_year, end_year, quarter = (int(group) for group in financial.groups())
        if not FIRST_DAY.year <= start_year < LAST_DAY.year:
            raise ValueError(
                f"quarter {text!r}: the year must be {FIRST_DAY.year} to {LAST_DAY.year - 1}"
            )
        if (start_year + 1) % 100 != end_year:
            raise ValueError(f"quarter {text!r}: {end_year:02d} does not follow {start_year}")
        return period_containing(
            _add_months(date(start_year, 4, 1), 3 * (quarter - 1)), Period.QUARTER
        )
    calendar = CALENDAR_QUARTER.fullmatch(text)
    if not calendar:
        raise ValueError(
            f"quarter {text!r}: expected a financial quarter YYYY-YY-Qn such as 2026-27-Q1 "
            "(April to June 2026) or a calendar quarter YYYYQn such as 2026Q2"
        )
    year, quarter = int(calendar.group(1)), int(calendar.group(2))
    if not FIRST_DAY.year <= year <= LAST_DAY.year:
        raise ValueError(f"quarter {text!r}: the year must be {FIRST_DAY.year} to {LAST_DAY.year}")
    return period_containing(date(year, quarter * 3 - 2, 1), Period.QUARTER)


def financial_quarter_label(span: DateRange) -> str:
    """`Q2 2026/27` for July to September 2026."""
    return f"Q{_financial_quarter(span.start)} {financial_year_label(span.start)}"


def financial_quarter_id(span: DateRange) -> str:
    """`2026-27-Q2` for July to September 2026: the form `quarter=` accepts."""
    start = financial_year_start(span.start).year
    return f"{start}-{(start + 1) % 100:02d}-Q{_financial_quarter(span.start)}"


def _financial_quarter(day: date) -> int:
    return (day.month - 4) % 12 // 3 + 1


def last_complete_quarter(today: date) -> DateRange:
    """The quarter before the one containing `today`: the committee report's default."""
    current = period_containing(today, Period.QUARTER)
    return period_containing(current.start - timedelta(days=1), Period.QUARTER)


@dataclass(frozen=True, slots=True)
class Comparison:
    """What a period's figures count and what they are compared with.

    `counted` is the period up to today when it is still running (`partial`),
    else the whole period; `previous` is the same number of days
    (`compared_days`) from the start of the period before, or all of it when
    it is shorter.
    """

    period: DateRange
    counted: DateRange
    previous: DateRange
    partial: bool
    compared_days: int


def fair_comparison(span: DateRange, period: Period | None, today: date) -> Comparison:
    """The fair comparison of `span` with the period before it.

    DOMAIN.md, KPIs: "Each KPI carries its direction of travel against the
    previous period, compared fairly: a period still running is compared with
    the same number of elapsed days of the one before, never with the whole of
    it." A period is still running when it contains `today` (the local day in
    Europe/London); today counts as elapsed. `period` is how the span was
    chosen (None: explicit days, compared with as many days before).
    """
    before = previous_range(span, period)
    if not span.contains(today):
        return Comparison(span, span, before, partial=False, compared_days=span.days)
    elapsed = (today - span.start).days + 1
    previous_end = min(before.end, before.start + timedelta(days=elapsed - 1))
    return Comparison(
        span,
        DateRange(span.start, today),
        DateRange(before.start, previous_end),
        partial=True,
        compared_days=elapsed,
    )


@dataclass(frozen=True, slots=True)
class MonthSplit:
    """A span as whole months (first days, inclusive) plus the days around them."""

    months: DateRange | None
    days: tuple[DateRange, ...]


def split_whole_months(span: DateRange) -> MonthSplit:
    first = span.start if span.start.day == 1 else _add_months(span.start, 1)
    after = span.end + timedelta(days=1)
    end = after.replace(day=1)  # first day of the month after the last whole one
    if first >= end:
        return MonthSplit(None, (span,))
    days = []
    if span.start < first:
        days.append(DateRange(span.start, first - timedelta(days=1)))
    if end <= span.end:
        days.append(DateRange(end, span.end))
    return MonthSplit(DateRange(first, _add_months(end, -1)), tuple(days))
