"""Surges: a day's count far above its area's usual, and when one raises an alert. Pure, no I/O.

A surge is kept per (service area, measure, local day). Consecutive surge
days share the surge id of the first, so one surge is one alert however long
it lasts.
"""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from services.metrics.domain.measures import SURGE_MEASURES, Measure

SurgeKey = tuple[str, str, date]  # (service area, measure, local day)
# What a SurgeDetected event calls each measure checked.
SURGE_SUBJECTS: Mapping[str, Literal["contacts", "complaints"]] = {
    Measure.CONTACTS_RECEIVED: "contacts",
    Measure.COMPLAINTS_OPENED: "complaints",
}


@dataclass(frozen=True, slots=True)
class SurgeRule:
    """A day is a surge when its count exceeds max(mean + k·sd, mean·ratio, minimum).

    mean and sd are over the `window_days` days before it (days without
    events count as 0). The minimum keeps quiet areas from surging on a handful.
    """

    window_days: int = 28
    k: float = 3.0
    ratio: float = 2.0
    minimum: int = 20


@dataclass(frozen=True, slots=True)
class SurgeCheck:
    count: float
    baseline: float
    threshold: float

    @property
    def surging(self) -> bool:
        return self.count > self.threshold


def baseline(days: Sequence[tuple[float, bool]]) -> list[float]:
    """The baseline window's counts, with days that were themselves surges set to
    the mean of the ordinary days: a surge must not become its own baseline, or
    a sustained one (ten snowy days) would stop counting as a surge by its fourth.
    """
    ordinary = [count for count, surged in days if not surged]
    usual = statistics.fmean(ordinary) if ordinary else 0.0
    return [usual if surged else count for count, surged in days]


def check_surge(count: float, history: Sequence[float], rule: SurgeRule) -> SurgeCheck:
    """`history`: the daily counts of the baseline window (zeros included)."""
    if len(history) != rule.window_days:
        raise ValueError(f"expected {rule.window_days} days of history, got {len(history)}")
    mean = statistics.fmean(history)
    spread = statistics.pstdev(history)
    threshold = max(mean + rule.k * spread, mean * rule.ratio, float(rule.minimum))
    return SurgeCheck(count, mean, threshold)


def surge_keys(keys: Iterable[tuple[str, str, date]]) -> list[SurgeKey]:
    """The (area, measure, day)s among `keys` whose measure is checked, in day order."""
    return sorted(
        {(area, measure, day) for area, measure, day in keys if measure in SURGE_MEASURES}
    )


def counts_needed(touched: Sequence[SurgeKey], rule: SurgeRule) -> tuple[date, date]:
    """First and last day of the daily counts that checking `touched` reads."""
    days = [day for _, _, day in touched]
    return min(days) - timedelta(days=rule.window_days + 1), max(days)


def window_keys(touched: Sequence[SurgeKey], rule: SurgeRule) -> list[SurgeKey]:
    """Each touched day and its baseline window: the days whose surge ids matter.

    Each key once: the windows of a batch's days overlap, and asking for every
    day of every window made thousands of keys (and a slow query) per batch.
    """
    days_by_subject: dict[tuple[str, str], set[date]] = {}
    for area, measure, day in touched:
        days_by_subject.setdefault((area, measure), set()).add(day)
    window = timedelta(days=rule.window_days)
    keys: list[SurgeKey] = []
    for (area, measure), days in days_by_subject.items():
        covered_until: date | None = None  # windows in day order, each day once
        for day in sorted(days):
            first = day - window
            if covered_until is not None and first <= covered_until:
                first = covered_until + timedelta(days=1)
            keys += [
                (area, measure, first + timedelta(days=n)) for n in range((day - first).days + 1)
            ]
            covered_until = day
    return keys


@dataclass(frozen=True, slots=True)
class FoundSurge:
    key: SurgeKey
    surge_id: str
    check: SurgeCheck
    continues: bool  # the day before was this surge too


def find_surges(
    touched: Sequence[SurgeKey],
    counts: Mapping[SurgeKey, float],
    known: Mapping[SurgeKey, str],
    rule: SurgeRule,
) -> list[FoundSurge]:
    """New surge days among `touched` (a day already recorded is not found again).

    `counts` holds the daily counts (absent: 0), `known` the surge ids already
    recorded over the windows. Days are checked in order, so a surge found
    feeds the next day's baseline and lends it its id.
    """
    surges = dict(known)
    found: list[FoundSurge] = []
    for area, measure, day in sorted(touched, key=lambda key: key[2]):
        key = (area, measure, day)
        if key in surges:
            continue  # this day already raised (or continued) its surge
        count = counts.get(key, 0.0)
        if count <= rule.minimum:
            continue  # the threshold is never below the minimum: no need to work it out
        history = baseline(
            [
                (counts.get(past, 0.0), past in surges)
                for back in range(rule.window_days, 0, -1)
                for past in [(area, measure, day - timedelta(days=back))]
            ]
        )
        if count <= statistics.fmean(history) * rule.ratio:
            continue  # nor below mean * ratio (the costly spread is left out)
        check = check_surge(count, history, rule)
        if not check.surging:
            continue
        previous = surges.get((area, measure, day - timedelta(days=1)))
        surge_id = previous or f"{area}:{measure}:{day.isoformat()}"
        surges[key] = surge_id
        found.append(FoundSurge(key, surge_id, check, continues=previous is not None))
    return found


def is_recent(day: date, today: date) -> bool:
    """Alerts are for what is happening now: today or yesterday."""
    return day >= today - timedelta(days=1)


def raises_alert(surge: FoundSurge, today: date) -> bool:
    """A surge alerts on its first recent day: its first day when it is happening now,
    or today's when it began in replayed history (a backfill, a restart after days
    away). History replayed, or a late event about an old day, records the surge
    but raises nothing.
    """
    day = surge.key[2]
    return is_recent(day, today) and (
        not surge.continues or not is_recent(day - timedelta(1), today)
    )
