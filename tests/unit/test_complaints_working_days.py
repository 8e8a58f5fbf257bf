"""The working-day calendar complaint deadlines are counted in (England and Wales)."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.complaints.working_days import (
    WorkingDayCalendar,
    add_months,
    end_of_local_day,
    local_date,
)

CALENDAR = WorkingDayCalendar()
LONDON = ZoneInfo("Europe/London")


def test_christmas_on_a_friday_moves_boxing_day_to_monday_and_new_year_skips_too() -> None:
    # 2026: Christmas Fri 25, Boxing Day Sat 26 -> substitute Mon 28; New Year Fri 1 Jan.
    assert CALENDAR.bank_holiday(date(2026, 12, 28)) == "Boxing Day (observed)"
    assert CALENDAR.add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 29)
    assert CALENDAR.add_working_days(date(2026, 12, 24), 5) == date(2027, 1, 5)


def test_christmas_on_a_sunday_gives_a_substitute_tuesday() -> None:
    # 2022: Christmas Sun 25 -> Tue 27; Boxing Day Mon 26.
    assert not CALENDAR.is_working_day(date(2022, 12, 26))
    assert not CALENDAR.is_working_day(date(2022, 12, 27))
    assert CALENDAR.add_working_days(date(2022, 12, 23), 1) == date(2022, 12, 28)


def test_new_year_on_a_weekend_gives_a_substitute_monday() -> None:
    assert CALENDAR.bank_holiday(date(2022, 1, 3)) == "New Year's Day (observed)"
    assert CALENDAR.bank_holiday(date(2023, 1, 2)) == "New Year's Day (observed)"
    assert CALENDAR.add_working_days(date(2022, 12, 30), 1) == date(2023, 1, 3)


def test_easter_skips_good_friday_and_easter_monday() -> None:
    # 2026: Good Friday 3 April, Easter Monday 6 April.
    assert CALENDAR.add_working_days(date(2026, 4, 2), 1) == date(2026, 4, 7)
    assert CALENDAR.add_working_days(date(2026, 4, 2), 5) == date(2026, 4, 13)


def test_a_receipt_on_a_saturday_counts_day_one_from_monday() -> None:
    assert CALENDAR.add_working_days(date(2026, 1, 10), 1) == date(2026, 1, 12)
    assert CALENDAR.add_working_days(date(2026, 1, 10), 5) == date(2026, 1, 16)


def test_a_late_evening_receipt_before_a_bank_holiday_weekend_counts_from_tuesday() -> None:
    # Friday 28 August 2026, 22:30 in London (21:30 UTC); Monday 31 is a bank holiday.
    received = datetime(2026, 8, 28, 21, 30, tzinfo=UTC)

    assert local_date(received) == date(2026, 8, 28)
    assert CALENDAR.add_working_days(local_date(received), 1) == date(2026, 9, 1)
    assert CALENDAR.add_working_days(local_date(received), 5) == date(2026, 9, 7)


def test_a_receipt_just_after_london_midnight_belongs_to_the_london_day_not_the_utc_one() -> None:
    # 23:30 UTC on Thursday 27 August is 00:30 on Friday 28 in London (BST).
    received = datetime(2026, 8, 27, 23, 30, tzinfo=UTC)

    assert local_date(received) == date(2026, 8, 28)
    assert CALENDAR.add_working_days(local_date(received), 1) == date(2026, 9, 1)


def test_only_england_and_wales_bank_holidays_count() -> None:
    assert CALENDAR.bank_holiday(date(2026, 4, 6)) == "Easter Monday"  # not in Scotland
    assert CALENDAR.is_working_day(date(2026, 1, 2))  # Scotland's 2 January
    assert CALENDAR.is_working_day(date(2026, 11, 30))  # St Andrew's Day
    assert CALENDAR.is_working_day(date(2026, 3, 17))  # St Patrick's Day
    assert CALENDAR.is_working_day(date(2026, 7, 13))  # the Twelfth's substitute day


def test_council_closure_days_are_not_working_days() -> None:
    closed = WorkingDayCalendar([date(2026, 12, 29), date(2026, 12, 30), date(2026, 12, 31)])

    assert closed.add_working_days(date(2026, 12, 24), 1) == date(2027, 1, 4)
    assert closed.fingerprint([2026]) != CALENDAR.fingerprint([2026])


def test_working_days_between_counts_after_the_start_up_to_the_end() -> None:
    assert CALENDAR.working_days_between(date(2026, 12, 24), date(2027, 1, 5)) == 5
    assert CALENDAR.working_days_between(date(2026, 1, 12), date(2026, 1, 12)) == 0


def test_a_deadline_is_breached_at_the_end_of_its_london_day() -> None:
    assert end_of_local_day(date(2026, 7, 1)) == datetime(2026, 7, 1, 23, tzinfo=UTC)  # BST
    assert end_of_local_day(date(2026, 1, 5)) == datetime(2026, 1, 6, tzinfo=UTC)  # GMT
    # The clocks go forward on Sunday 29 March 2026; Saturday's end is still GMT midnight.
    assert end_of_local_day(date(2026, 3, 28)) == datetime(2026, 3, 29, tzinfo=UTC)


def test_months_are_clamped_to_the_end_of_a_shorter_month() -> None:
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2027, 8, 31), 6) == date(2028, 2, 29)
    assert add_months(date(2026, 1, 15), 6) == date(2026, 7, 15)


closure_days = st.frozensets(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2036, 12, 31)), max_size=30
)


@given(
    start=st.dates(min_value=date(2025, 1, 1), max_value=date(2035, 12, 31)),
    days=st.integers(min_value=1, max_value=130),
    closed=closure_days,
)
def test_every_deadline_falls_on_a_working_day_after_its_start(
    start: date, days: int, closed: frozenset[date]
) -> None:
    calendar = WorkingDayCalendar(closed)

    due = calendar.add_working_days(start, days)

    assert calendar.is_working_day(due)
    assert due > start
    assert calendar.working_days_between(start, due) == days
    assert due.weekday() < 5
    assert due not in closed
    assert calendar.bank_holiday(due) is None


@given(instant=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2035, 12, 31)))
def test_the_end_of_the_local_day_is_after_every_instant_of_that_day(instant: datetime) -> None:
    aware = instant.replace(tzinfo=UTC)
    day = local_date(aware)

    end = end_of_local_day(day)

    start = datetime.combine(day, time(), tzinfo=LONDON).astimezone(UTC)
    assert start <= aware < end
    # A London day lasts 23 hours in March, 25 in October, 24 otherwise.
    assert end - start in {timedelta(hours=hours) for hours in (23, 24, 25)}
    assert local_date(end) == day + timedelta(days=1)


def test_the_first_hour_of_the_25_hour_october_day_ends_more_than_a_day_later() -> None:
    # 00:30 BST on Sunday 25 October 2026; clocks go back at 02:00 BST, so the
    # local day ends at midnight GMT, 24.5 hours later.
    first_hour = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)

    end = end_of_local_day(local_date(first_hour))

    assert local_date(first_hour) == date(2026, 10, 25)
    assert end == datetime(2026, 10, 26, 0, 0, tzinfo=UTC)
    assert end - first_hour == timedelta(hours=24, minutes=30)
