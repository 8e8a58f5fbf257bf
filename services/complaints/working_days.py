"""The working-day calendar complaint deadlines are counted in.

Monday to Friday, minus England and Wales bank holidays (substitute days
included, from the maintained `holidays` package) and the council's own
closure days. Deadlines are local dates in Europe/London: a deadline due on
a date is met by an action any time that day, and breached once the day ends.
"""

import hashlib
from calendar import monthrange
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

LONDON = ZoneInfo("Europe/London")
# England and Wales share their bank holidays; the package's "ENG" subdivision
# gives exactly them. Without a subdivision it gives only the days common to
# the whole UK (no Easter Monday), and "SCT"/"NIR" add 2 January, St Andrew's
# Day, St Patrick's Day and the Twelfth.
HOLIDAY_COUNTRY = "GB"
HOLIDAY_SUBDIVISION = "ENG"
_SATURDAY = 5


class WorkingDayCalendar:
    """Working days for one council: bank holidays plus configured closure days."""

    def __init__(self, closure_days: Iterable[date] = ()) -> None:
        self.closure_days = frozenset(closure_days)
        self._bank_holidays = holidays.country_holidays(HOLIDAY_COUNTRY, subdiv=HOLIDAY_SUBDIVISION)
        self._statutory: WorkingDayCalendar | None = None if self.closure_days else self

    def statutory(self) -> "WorkingDayCalendar":
        """The same days without council closure days: the statutory procedures' working days.

        The 2006 regulations (reg. 2) and the 2009 regulations define a working day
        as any day but a weekend day or a bank holiday; a council's own closures do
        not stop their clocks.
        """
        if self._statutory is None:
            self._statutory = WorkingDayCalendar()
        return self._statutory

    def bank_holiday(self, day: date) -> str | None:
        """The bank holiday's name, if `day` is one (the package fills years lazily)."""
        name: str | None = self._bank_holidays.get(day)
        return name

    def is_working_day(self, day: date) -> bool:
        return (
            day.weekday() < _SATURDAY
            and day not in self.closure_days
            and self.bank_holiday(day) is None
        )

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def on_or_after(self, day: date) -> date:
        """`day` if it is a working day, else the next one."""
        return day if self.is_working_day(day) else self.next_working_day(day)

    def add_working_days(self, start: date, days: int) -> date:
        """The `days`-th working day after `start`: day 1 is the next working day."""
        if days < 0:
            raise ValueError("count forwards only")
        day = start
        for _ in range(days):
            day = self.next_working_day(day)
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """How many working days fall after `start`, up to and including `end`."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count

    def fingerprint(self, years: Iterable[int]) -> str:
        """Changes when the days off in `years` change (a closure day added, a new holiday)."""
        days_off = sorted(
            {*self.closure_days, *(d for y in years for d in self._bank_holidays_in(y))}
        )
        return hashlib.sha256(",".join(map(str, days_off)).encode()).hexdigest()

    def _bank_holidays_in(self, year: int) -> list[date]:
        return list(
            holidays.country_holidays(HOLIDAY_COUNTRY, subdiv=HOLIDAY_SUBDIVISION, years=year)
        )


def local_date(instant: datetime) -> date:
    """The date in Europe/London at `instant`."""
    return instant.astimezone(LONDON).date()


def end_of_local_day(day: date) -> datetime:
    """The UTC instant a deadline due on `day` is breached: the next local midnight."""
    midnight = datetime.combine(day + timedelta(days=1), time(), tzinfo=LONDON)
    return midnight.astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """Calendar months later, clamped to the month's end (31 August + 6 months = 28 February)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def period_commencing_on(day: date, months: int) -> date:
    """The last day of `months` calendar months "commencing on" `day`: the day before the
    anniversary (31 January + 6 months ends 30 July; 31 August ends 28 or 29 February,
    the day before the missing anniversary's 1 March)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    if day.day <= monthrange(year, month)[1]:
        anniversary = date(year, month, day.day)
    else:
        anniversary = date(year + month // 12, month % 12 + 1, 1)
    return anniversary - timedelta(days=1)
