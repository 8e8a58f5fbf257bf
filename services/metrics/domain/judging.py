"""Judging figures: RAG status against targets, direction of travel, committee standing.

Pure, no I/O.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from services.metrics.domain.kpis import Direction, Figure, Kpi


class Rag(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    INSUFFICIENT_DATA = "insufficient_data"


TBA: Literal["TBA"] = "TBA"
Target = float | Literal["TBA"] | None


def rag_status(
    kpi: Kpi,
    figure: Figure,
    target: Target,
    *,
    amber_tolerance: float,
    minimum_sample: int,
) -> Rag | None:
    """Green meets the target; amber misses it by at most `amber_tolerance` of the target.

    No target, a `TBA` target, a KPI with no direction or no value: no status.
    Fewer observations (the denominator, or the count) than `minimum_sample`:
    insufficient data, so that tiny samples do not rank services.
    """
    if target is None or target == TBA or kpi.direction is Direction.NEITHER:
        return None
    sample = figure.denominator if figure.denominator is not None else figure.numerator
    if kpi.denominator is not None and sample < minimum_sample:
        return Rag.INSUFFICIENT_DATA
    if figure.value is None:
        return Rag.INSUFFICIENT_DATA
    assert not isinstance(target, str)
    allowance = abs(target) * amber_tolerance
    if kpi.direction is Direction.HIGHER_IS_BETTER:
        shortfall = target - figure.value
    else:
        shortfall = figure.value - target
    if shortfall <= 1e-12:
        return Rag.GREEN
    return Rag.AMBER if shortfall <= allowance + 1e-12 else Rag.RED


class Trend(StrEnum):
    IMPROVING = "improving"
    WORSENING = "worsening"
    UNCHANGED = "unchanged"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Change:
    absolute: float | None
    relative: float | None  # e.g. 0.05 for +5%; None when the previous value is 0 or None
    trend: Trend | None


def change(kpi: Kpi, current: float | None, previous: float | None) -> Change:
    """Direction of travel against the previous period."""
    if current is None or previous is None:
        return Change(None, None, None)
    absolute = current - previous
    relative = absolute / previous if previous else None
    if math.isclose(absolute, 0.0, abs_tol=1e-12):
        trend = Trend.UNCHANGED
    elif kpi.direction is Direction.NEITHER:
        trend = Trend.UP if absolute > 0 else Trend.DOWN
    elif (absolute > 0) == (kpi.direction is Direction.HIGHER_IS_BETTER):
        trend = Trend.IMPROVING
    else:
        trend = Trend.WORSENING
    return Change(absolute, relative, trend)


# -- committee view -------------------------------------------------------------------


class Standing(StrEnum):
    PERFORMING_WELL = "performing_well"
    AT_RISK = "at_risk"
    FURTHER_WORK_REQUIRED = "further_work_required"
    NOT_RATED = "not_rated"


def standing(statuses: Iterable[Rag | None]) -> Standing:
    """A service's group: its worst colour decides; no colour at all is not rated."""
    colours = {status for status in statuses if status in (Rag.GREEN, Rag.AMBER, Rag.RED)}
    if Rag.RED in colours:
        return Standing.FURTHER_WORK_REQUIRED
    if Rag.AMBER in colours:
        return Standing.AT_RISK
    if Rag.GREEN in colours:
        return Standing.PERFORMING_WELL
    return Standing.NOT_RATED
