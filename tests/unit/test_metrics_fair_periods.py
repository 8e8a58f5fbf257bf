"""The fair comparison of a period still running, at month, quarter and year boundaries.

DOMAIN.md, KPIs: "Each KPI carries its direction of travel against the previous
period, compared fairly: a period still running is compared with the same
number of elapsed days of the one before, never with the whole of it.
Financial quarters are named as councils name them (Q1 2026/27 is April to
June 2026)." Days are local days in Europe/London.
"""

from datetime import UTC, date, datetime

import pytest

from services.metrics.periods import (
    DateRange,
    Period,
    fair_comparison,
    financial_quarter_id,
    financial_quarter_label,
    last_complete_quarter,
    local_day,
    parse_quarter,
    period_containing,
    period_label,
)

# 31 March 2026, 23:30 UTC: British Summer Time began on 29 March, so it is
# already 00:30 on 1 April in London, the first day of a month, a quarter and
# a financial year.
LAST_EVENING_OF_MARCH = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def running(period: Period, instant: datetime) -> tuple[DateRange, date]:
    today = local_day(instant)
    return period_containing(today, period), today


def test_half_past_eleven_utc_on_31_march_in_summer_time_is_1_april_in_london() -> None:
    assert local_day(LAST_EVENING_OF_MARCH) == date(2026, 4, 1)


def test_the_first_day_of_a_month_is_compared_with_the_first_day_of_the_month_before() -> None:
    span, today = running(Period.MONTH, LAST_EVENING_OF_MARCH)

    comparison = fair_comparison(span, Period.MONTH, today)

    assert comparison.period == DateRange(date(2026, 4, 1), date(2026, 4, 30))
    assert comparison.counted == DateRange(date(2026, 4, 1), date(2026, 4, 1))
    assert comparison.previous == DateRange(date(2026, 3, 1), date(2026, 3, 1))
    assert (comparison.partial, comparison.compared_days) == (True, 1)


def test_the_first_day_of_a_financial_quarter_is_compared_with_the_first_day_of_january() -> None:
    span, today = running(Period.QUARTER, LAST_EVENING_OF_MARCH)

    comparison = fair_comparison(span, Period.QUARTER, today)

    assert financial_quarter_label(span) == "Q1 2026/27"
    assert comparison.counted == DateRange(date(2026, 4, 1), date(2026, 4, 1))
    assert comparison.previous == DateRange(date(2026, 1, 1), date(2026, 1, 1))
    assert comparison.compared_days == 1


def test_the_first_day_of_a_financial_year_is_compared_with_1_april_a_year_before() -> None:
    span, today = running(Period.YEAR, LAST_EVENING_OF_MARCH)

    comparison = fair_comparison(span, Period.YEAR, today)

    assert period_label(span, Period.YEAR) == "2026/27"
    assert comparison.previous == DateRange(date(2025, 4, 1), date(2025, 4, 1))
    assert comparison.partial


def test_half_past_eleven_utc_on_31_march_in_winter_would_still_be_march() -> None:
    """Summer time began on 31 March 2024, so 30 March 23:30 UTC was still GMT: the
    30th in London, day 30 of March, compared with all 29 days of February."""
    instant = datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    span, today = running(Period.MONTH, instant)

    comparison = fair_comparison(span, Period.MONTH, today)

    assert today == date(2024, 3, 30)
    assert comparison.counted == DateRange(date(2024, 3, 1), date(2024, 3, 30))
    assert comparison.previous == DateRange(date(2024, 2, 1), date(2024, 2, 29))  # all 29
    assert comparison.compared_days == 30


def test_the_middle_of_a_quarter_compares_as_many_days_of_the_quarter_before() -> None:
    today = date(2026, 8, 15)  # day 46 of Q2 2026/27 (July has 31 days)
    span = period_containing(today, Period.QUARTER)

    comparison = fair_comparison(span, Period.QUARTER, today)

    assert comparison.compared_days == 46
    assert comparison.previous == DateRange(date(2026, 4, 1), date(2026, 5, 16))


def test_a_finished_period_is_compared_whole_with_the_whole_period_before() -> None:
    span = period_containing(date(2026, 2, 10), Period.MONTH)

    comparison = fair_comparison(span, Period.MONTH, date(2026, 4, 1))

    assert comparison.counted == span
    assert comparison.previous == DateRange(date(2026, 1, 1), date(2026, 1, 31))
    assert (comparison.partial, comparison.compared_days) == (False, 28)


def test_explicit_days_still_running_are_compared_with_as_many_days_before() -> None:
    span = DateRange(date(2026, 5, 10), date(2026, 5, 19))

    comparison = fair_comparison(span, None, date(2026, 5, 12))

    assert comparison.counted == DateRange(date(2026, 5, 10), date(2026, 5, 12))
    assert comparison.previous == DateRange(date(2026, 4, 30), date(2026, 5, 2))


def test_quarters_are_named_and_given_as_councils_name_them() -> None:
    april_to_june = DateRange(date(2026, 4, 1), date(2026, 6, 30))

    assert parse_quarter("2026-27-Q1") == april_to_june
    assert parse_quarter("2026Q2") == april_to_june  # the calendar name of the same months
    assert financial_quarter_label(april_to_june) == "Q1 2026/27"
    assert financial_quarter_id(april_to_june) == "2026-27-Q1"
    assert parse_quarter("2026-27-Q4") == DateRange(date(2027, 1, 1), date(2027, 3, 31))
    assert period_label(april_to_june, Period.QUARTER) == "Q1 2026/27"


@pytest.mark.parametrize("text", ["2026-28-Q1", "2026-27-Q5", "2026-27Q1", "26-27-Q1"])
def test_a_malformed_financial_quarter_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quarter"):
        parse_quarter(text)


def test_the_committee_default_is_the_last_complete_quarter() -> None:
    assert last_complete_quarter(date(2026, 4, 1)) == parse_quarter("2025-26-Q4")
    assert last_complete_quarter(date(2026, 12, 1)) == parse_quarter("2026-27-Q2")
