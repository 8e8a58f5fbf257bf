"""Metrics' rules that moved into the domain: measure names, transfers, surges, series."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.metrics.domain import ALL_MEASURES, KPIS_BY_NAME, ComplaintMeasure, Measure, Scope
from services.metrics.domain.kpis import bucket_totals, series
from services.metrics.domain.measures import (
    STAGED,
    Cell,
    complaint_measure,
    transfer_increments,
)
from services.metrics.domain.surges import (
    FoundSurge,
    SurgeCheck,
    SurgeRule,
    find_surges,
    raises_alert,
    window_keys,
)
from services.metrics.periods import DateRange, Period, periods_back, ranges_between

DAY = date(2026, 1, 12)
PHONE = Cell(DAY, "waste", "phone")


def every_measure_an_event_can_add() -> set[str]:
    names: set[str] = set(Measure)
    for scope in Scope:
        for measure in ComplaintMeasure:
            if measure in STAGED:
                names |= {complaint_measure(scope, measure, stage) for stage in (1, 2, 3)}
            else:
                names.add(complaint_measure(scope, measure))
    return names


def test_every_measure_a_kpi_reads_is_one_an_event_can_add() -> None:
    """A misspelt measure in a KPI would read a counter nothing writes: a silent zero."""
    read_but_never_written = ALL_MEASURES - every_measure_an_event_can_add()

    assert read_but_never_written == set()


def test_a_staged_complaint_measure_needs_its_stage_and_others_refuse_one() -> None:
    assert complaint_measure(Scope.CORPORATE, ComplaintMeasure.ACK_DUE, 2) == "corporate_ack_due_s2"
    assert complaint_measure(Scope.STATUTORY, ComplaintMeasure.WITHDRAWN) == "statutory_withdrawn"
    with pytest.raises(ValueError, match="stage"):
        complaint_measure(Scope.CORPORATE, ComplaintMeasure.RECEIVED)
    with pytest.raises(ValueError, match="stage"):
        complaint_measure(Scope.CORPORATE, ComplaintMeasure.RESPONDED, 1)


def test_a_call_counts_as_transferred_only_at_its_first_transfer() -> None:
    first = transfer_increments(PHONE, transfers_before=0, added=1)
    later = transfer_increments(PHONE, transfers_before=2, added=1)

    assert {(i.measure, i.amount) for i in first} == {
        (Measure.CALL_TRANSFERS, 1),
        (Measure.CALLS_TRANSFERRED, 1),
    }
    assert {(i.measure, i.amount) for i in later} == {(Measure.CALL_TRANSFERS, 1)}
    assert transfer_increments(PHONE, transfers_before=0, added=0) == []
    assert transfer_increments(Cell(DAY, "waste", "web"), transfers_before=0, added=1) == []


RULE = SurgeRule(window_days=7, k=3.0, ratio=2.0, minimum=5)


def test_consecutive_surge_days_share_the_first_days_surge_id() -> None:
    first, second = DAY, DAY + timedelta(days=1)
    counts = {("waste", "contacts_received", DAY - timedelta(days=n)): 2.0 for n in range(1, 8)}
    counts |= {("waste", "contacts_received", first): 12.0}
    counts |= {("waste", "contacts_received", second): 12.0}
    touched = [("waste", "contacts_received", second), ("waste", "contacts_received", first)]

    found = find_surges(touched, counts, {}, RULE)

    assert [(s.key[2], s.surge_id, s.continues) for s in found] == [
        (first, f"waste:contacts_received:{first}", False),
        (second, f"waste:contacts_received:{first}", True),
    ]


def test_a_day_already_recorded_as_a_surge_is_not_found_again() -> None:
    key = ("waste", "contacts_received", DAY)

    assert find_surges([key], {key: 100.0}, {key: "waste:contacts_received:x"}, RULE) == []


def surge_on(day: date, *, continues: bool) -> FoundSurge:
    return FoundSurge(("waste", "contacts_received", day), "id", SurgeCheck(9, 1, 5), continues)


def test_a_surge_alerts_on_its_first_recent_day_only() -> None:
    today = DAY
    yesterday = today - timedelta(days=1)

    assert raises_alert(surge_on(today, continues=False), today)
    assert raises_alert(surge_on(yesterday, continues=False), today)
    assert not raises_alert(surge_on(today, continues=True), today)  # yesterday alerted
    assert raises_alert(surge_on(yesterday, continues=True), today)  # began in history
    assert not raises_alert(surge_on(today - timedelta(days=2), continues=False), today)


def test_a_series_sums_each_periods_days_before_dividing() -> None:
    buckets = ranges_between(DateRange(date(2026, 1, 1), date(2026, 2, 28)), Period.MONTH)
    days = {
        date(2026, 1, 5): {"calls_answered": 10.0, "calls_transferred": 1.0},
        date(2026, 1, 20): {"calls_answered": 30.0, "calls_transferred": 9.0},
        date(2026, 2, 2): {"calls_answered": 4.0},
        date(2026, 3, 1): {"calls_answered": 99.0},  # outside every bucket
    }

    figures = series(KPIS_BY_NAME["transfer_rate"], buckets, days)

    assert bucket_totals(buckets, days)[0] == {"calls_answered": 40.0, "calls_transferred": 10.0}
    assert [(f.value, f.numerator, f.denominator) for f in figures] == [
        (0.25, 10.0, 40.0),
        (0.0, 0.0, 4.0),
    ]


def test_twelve_months_back_starts_eleven_months_before_this_one() -> None:
    assert periods_back(date(2026, 1, 12), Period.MONTH, 11) == date(2025, 2, 1)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["waste", "planning"]),
            st.sampled_from(["contacts_received", "complaints_opened"]),
            st.dates(date(2026, 1, 1), date(2026, 6, 30)),
        ),
        max_size=40,
    )
)
def test_window_keys_are_every_window_day_once(touched: list[tuple[str, str, date]]) -> None:
    """DOMAIN.md: "Surge: a service's daily count far above its own recent baseline".
    The baseline is the `window_days` days before a day, so the surge ids of each touched
    day and of its whole window are read; each key once, however the windows overlap.
    """
    rule = SurgeRule()
    keys = window_keys(sorted(set(touched)), rule)
    expected = {
        (area, measure, day - timedelta(days=back))
        for area, measure, day in touched
        for back in range(rule.window_days + 1)
    }
    assert len(keys) == len(set(keys))
    assert set(keys) == expected
