"""Reporting periods: London days, Monday weeks, financial quarters and years."""

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.metrics.periods import (
    LONDON,
    DateRange,
    Period,
    financial_quarter_label,
    local_day,
    parse_quarter,
    period_containing,
    period_label,
    previous_range,
    ranges_between,
    split_whole_months,
)


def test_a_summer_evening_after_eleven_utc_is_the_next_london_day() -> None:
    assert local_day(datetime(2026, 7, 1, 23, 30, tzinfo=UTC)) == date(2026, 7, 2)


def test_a_winter_evening_after_eleven_utc_is_the_same_london_day() -> None:
    assert local_day(datetime(2026, 1, 15, 23, 30, tzinfo=UTC)) == date(2026, 1, 15)


def test_weeks_run_monday_to_sunday() -> None:
    assert period_containing(date(2026, 11, 25), Period.WEEK) == DateRange(
        date(2026, 11, 23), date(2026, 11, 29)
    )


def test_the_financial_year_runs_april_to_march() -> None:
    assert period_containing(date(2027, 2, 1), Period.YEAR) == DateRange(
        date(2026, 4, 1), date(2027, 3, 31)
    )
    assert period_label(period_containing(date(2027, 2, 1), Period.YEAR), Period.YEAR) == "2026/27"


def test_quarters_are_three_months_aligned_with_the_financial_year() -> None:
    assert period_containing(date(2026, 5, 20), Period.QUARTER) == DateRange(
        date(2026, 4, 1), date(2026, 6, 30)
    )


def test_the_previous_month_of_march_is_february_whatever_its_length() -> None:
    march = period_containing(date(2028, 3, 10), Period.MONTH)

    assert previous_range(march, Period.MONTH) == DateRange(date(2028, 2, 1), date(2028, 2, 29))


def test_the_previous_range_of_arbitrary_days_is_as_many_days_before() -> None:
    span = DateRange(date(2026, 1, 10), date(2026, 1, 14))

    assert previous_range(span, None) == DateRange(date(2026, 1, 5), date(2026, 1, 9))


def test_committee_quarter_2026q3_is_july_to_september_and_q2_of_2026_27() -> None:
    span = parse_quarter("2026Q3")

    assert span == DateRange(date(2026, 7, 1), date(2026, 9, 30))
    assert financial_quarter_label(span) == "Q2 2026/27"
    assert financial_quarter_label(parse_quarter("2027Q1")) == "Q4 2026/27"


@pytest.mark.parametrize("text", ["2026Q5", "2026-Q3", "Q3", "26Q1"])
def test_a_malformed_quarter_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYYQn"):
        parse_quarter(text)


@pytest.mark.parametrize("text", ["0000Q1", "0001Q1", "1899Q4", "9999Q4"])
def test_a_quarter_at_the_ends_of_the_calendar_is_refused(text: str) -> None:
    """Its quarter before (the committee's comparison) would be outside `date`'s range."""
    with pytest.raises(ValueError, match="the year must be"):
        parse_quarter(text)


def test_series_ranges_cover_the_span_with_whole_periods() -> None:
    ranges = ranges_between(DateRange(date(2026, 1, 20), date(2026, 3, 2)), Period.MONTH)

    assert [period_label(r, Period.MONTH) for r in ranges] == ["2026-01", "2026-02", "2026-03"]


def test_a_range_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        DateRange(date(2026, 1, 2), date(2026, 1, 1))


def test_a_financial_year_reads_as_twelve_whole_months() -> None:
    split = split_whole_months(DateRange(date(2026, 4, 1), date(2027, 3, 31)))

    assert split.months == DateRange(date(2026, 4, 1), date(2027, 3, 1))
    assert split.days == ()


def test_a_span_reads_whole_months_and_the_days_either_side() -> None:
    split = split_whole_months(DateRange(date(2026, 1, 20), date(2026, 4, 3)))

    assert split.months == DateRange(date(2026, 2, 1), date(2026, 3, 1))
    assert split.days == (
        DateRange(date(2026, 1, 20), date(2026, 1, 31)),
        DateRange(date(2026, 4, 1), date(2026, 4, 3)),
    )


def test_a_span_inside_one_month_reads_only_days() -> None:
    span = DateRange(date(2026, 2, 2), date(2026, 2, 27))

    assert split_whole_months(span).months is None
    assert split_whole_months(span).days == (span,)


def test_local_day_kept_per_hour_is_the_conversion_of_every_instant() -> None:
    """DOMAIN.md: periods are local days in Europe/London. `local_day` keeps each UTC
    hour's day; around both clock changes, local midnights and random instants from 1900
    to 8999 (in UTC and in another zone), it must equal the conversion itself."""
    rng = random.Random(15)
    instants = [
        datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC),  # just before BST begins
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 59, 59, 999_999, tzinfo=UTC),  # just before BST ends
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
        datetime(2026, 6, 30, 22, 59, 59, 999_999, tzinfo=UTC),  # 23:59:59 BST
        datetime(2026, 6, 30, 23, 0, tzinfo=UTC),  # local midnight in summer
        datetime(1941, 5, 4, 0, 30, tzinfo=UTC),  # double summer time (UTC+2)
        datetime(8998, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 7, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ]
    start = datetime(1900, 1, 1, tzinfo=UTC)
    span = int((datetime(8999, 1, 1, tzinfo=UTC) - start).total_seconds())
    instants += [start + timedelta(seconds=rng.randrange(span)) for _ in range(2000)]
    for instant in instants + instants:  # the second time from what was kept
        assert local_day(instant) == instant.astimezone(LONDON).date(), instant
