"""The KPIs, each defined once as numerator / denominator over measures: pure, no I/O.

A KPI's numerator and denominator are signed sums of measures (the counters
in `services.metrics.measures`) over a period, a service area and a channel.
A KPI whose denominator is zero has no value (`None`): no data is never 0%.
RAG status, direction of travel, the committee grouping and the surge
statistic are here too, so that every rule is unit-tested in one place.
"""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"
    NEITHER = "neither"


class Unit(StrEnum):
    RATIO = "ratio"
    SECONDS = "seconds"
    COUNT = "count"
    SCORE = "score"
    TRANSFERS = "transfers"


Terms = tuple[tuple[str, int], ...]


def plus(*measures: str) -> Terms:
    return tuple((measure, 1) for measure in measures)


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    title: str
    unit: Unit
    direction: Direction
    numerator: Terms
    denominator: Terms | None  # None: a count, whose value is its numerator
    description: str
    provisional_for_window: bool = False  # FCR: final only once the re-contact window passed

    @property
    def measures(self) -> frozenset[str]:
        return frozenset(m for m, _ in self.numerator + (self.denominator or ()))


def _stages(template: str, stages: Iterable[int] = (1, 2)) -> tuple[str, ...]:
    return tuple(template.format(stage=stage) for stage in stages)


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "first_contact_resolution",
        "First contact resolution",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        (("fcr_first_time", 1), ("fcr_lost", -1)),
        plus("fcr_eligible"),
        "Enquiries and service requests resolved at first contact, with no transfer and no "
        "re-contact from the same customer about the same service area within the window, "
        "over enquiries and service requests received. Provisional until the window has "
        "passed for the period's last day.",
        provisional_for_window=True,
    ),
    Kpi(
        "answered_first_time_by_right_team",
        "Calls answered first time by the right team",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        (("calls_answered", 1), ("calls_transferred", -1)),
        plus("calls_answered"),
        "Answered calls with zero transfers over calls answered.",
    ),
    Kpi(
        "transfer_rate",
        "Call transfer rate",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus("calls_transferred"),
        plus("calls_answered"),
        "Answered calls transferred at least once (counted once however often) over calls "
        "answered.",
    ),
    Kpi(
        "average_transfers_per_call",
        "Average transfers per call",
        Unit.TRANSFERS,
        Direction.LOWER_IS_BETTER,
        plus("call_transfers"),
        plus("calls_answered"),
        "Transfers of answered calls over calls answered.",
    ),
    Kpi(
        "abandoned_call_rate",
        "Abandoned (missed) calls",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus("calls_abandoned"),
        plus("calls_answered", "calls_abandoned"),
        "Calls abandoned before answer over calls offered (answered + abandoned).",
    ),
    Kpi(
        "average_speed_of_answer",
        "Average speed of answer",
        Unit.SECONDS,
        Direction.LOWER_IS_BETTER,
        plus("call_wait_seconds"),
        plus("calls_answered_waited"),
        "Total queue wait of answered calls over answered calls (calls whose wait is known).",
    ),
    Kpi(
        "service_level",
        "Service level",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus("calls_within_service_level"),
        plus("calls_answered", "calls_abandoned"),
        "Calls answered within N seconds over calls offered; abandoned calls count as "
        "failures, whatever their wait (N: CIVICPULSE_METRICS_SERVICE_LEVEL_SECONDS).",
    ),
    Kpi(
        "contacts_received",
        "Contacts received",
        Unit.COUNT,
        Direction.NEITHER,
        plus("contacts_received"),
        None,
        "Contacts of every kind received.",
    ),
    Kpi(
        "compliments_received",
        "Compliments received",
        Unit.COUNT,
        Direction.HIGHER_IS_BETTER,
        plus("compliments_received"),
        None,
        "Contacts of kind compliment.",
    ),
    Kpi(
        "complaints_received_stage_1",
        "Complaints received at stage 1",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus("corporate_complaints_received_s1"),
        None,
        "Corporate (Complaint Handling Code) complaints opened.",
    ),
    Kpi(
        "complaints_received_stage_2",
        "Complaints received at stage 2",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus("corporate_complaints_received_s2"),
        None,
        "Corporate complaints whose customer asked for stage 2 (counted when asked).",
    ),
    Kpi(
        "complaints_acknowledged_within_target",
        "Complaints acknowledged within target",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(*_stages("corporate_ack_on_time_s{stage}")),
        plus(*_stages("corporate_ack_due_s{stage}")),
        "Stage 1 and 2 acknowledgements made before their deadline was breached, over "
        "acknowledgements made or breached, on the day the outcome became known.",
    ),
    Kpi(
        "complaints_responded_within_target",
        "Complaints responded to within target",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(*_stages("corporate_response_on_time_s{stage}")),
        plus(*_stages("corporate_response_due_s{stage}")),
        "Stage 1 and 2 responses made before their (possibly extended) deadline was "
        "breached, over responses made or breached, on the day the outcome became known.",
    ),
    Kpi(
        "complaint_escalation_rate",
        "Complaint escalation rate",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus("corporate_complaints_received_s2"),
        plus("corporate_complaints_received_s1"),
        "Corporate complaints escalated to stage 2 over complaints received at stage 1.",
    ),
    Kpi(
        "complaints_upheld",
        "Complaints upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus("corporate_responded_upheld"),
        plus("corporate_responded"),
        "Responses (any stage) with outcome upheld over responses.",
    ),
    Kpi(
        "complaints_partly_upheld",
        "Complaints partly upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus("corporate_responded_partly_upheld"),
        plus("corporate_responded"),
        "Responses (any stage) with outcome partly upheld over responses.",
    ),
    Kpi(
        "complaints_not_upheld",
        "Complaints not upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus("corporate_responded_not_upheld"),
        plus("corporate_responded"),
        "Responses (any stage) with outcome not upheld over responses.",
    ),
    Kpi(
        "complaint_deadline_breaches",
        "Complaint deadlines breached",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus("corporate_deadline_breaches"),
        None,
        "Corporate acknowledgement and response deadlines that passed without the action.",
    ),
    Kpi(
        "ombudsman_referrals",
        "Ombudsman referrals",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus("corporate_ombudsman_referrals"),
        None,
        "Corporate complaints referred to the Local Government or Housing Ombudsman.",
    ),
    Kpi(
        "statutory_ombudsman_referrals",
        "Statutory complaints referred to the Ombudsman",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus("statutory_ombudsman_referrals"),
        None,
        "Adult and children's social care complaints referred to the Ombudsman; counted "
        "apart from the Code's.",
    ),
    Kpi(
        "statutory_complaints_received",
        "Statutory social care complaints received",
        Unit.COUNT,
        Direction.NEITHER,
        plus("statutory_complaints_received_s1"),
        None,
        "Adult and children's social care complaints opened; never counted in the Code KPIs.",
    ),
    Kpi(
        "csat",
        "Customer satisfaction (CSAT)",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus("surveys_satisfied"),
        plus("surveys_responded"),
        "Survey answers of 4 or 5 (overall satisfaction, 1 to 5) over answers.",
    ),
    Kpi(
        "average_ease",
        "Average ease (customer effort, 7 = very easy)",
        Unit.SCORE,
        Direction.HIGHER_IS_BETTER,
        plus("survey_ease_total"),
        plus("surveys_responded"),
        "Sum of ease answers (1 to 7) over answers.",
    ),
    Kpi(
        "survey_response_rate",
        "Survey response rate",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus("surveys_responded"),
        plus("surveys_requested"),
        "Survey answers received in the period over survey requests sent in the period.",
    ),
    Kpi(
        "mystery_shop_score",
        "Mystery shopping score",
        Unit.SCORE,
        Direction.HIGHER_IS_BETTER,
        plus("mystery_score_total"),
        plus("mystery_shops"),
        "Average over assessments of each assessment's mean score (0 to 100).",
    ),
)
KPIS_BY_NAME: Mapping[str, Kpi] = {kpi.name: kpi for kpi in KPIS}
ALL_MEASURES: frozenset[str] = frozenset().union(*(kpi.measures for kpi in KPIS))


@dataclass(frozen=True, slots=True)
class Figure:
    value: float | None
    numerator: float
    denominator: float | None


def _total(terms: Terms, totals: Mapping[str, float]) -> float:
    return sum(sign * totals.get(measure, 0.0) for measure, sign in terms)


def evaluate(kpi: Kpi, totals: Mapping[str, float]) -> Figure:
    """The KPI over summed measures; an empty denominator gives no value."""
    numerator = _total(kpi.numerator, totals)
    if kpi.denominator is None:
        return Figure(numerator, numerator, None)
    denominator = _total(kpi.denominator, totals)
    value = numerator / denominator if denominator > 0 else None
    return Figure(value, numerator, denominator)


# -- targets and RAG -----------------------------------------------------------------


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


# -- surges ---------------------------------------------------------------------------


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
