"""The KPIs, each defined once as numerator / denominator over measures: pure, no I/O.

A KPI's numerator and denominator are signed sums of measures (the counters
named in `services.metrics.domain.measures`) over a period, a service area and
a channel. A KPI whose denominator is zero has no value (`None`): no data is
never 0%. A chart's series sums the days of each period before evaluating.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.metrics.domain.measures import ComplaintMeasure, Measure, Scope, complaint_measure
from services.metrics.periods import DateRange


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


def corporate(measure: ComplaintMeasure, stage: int | None = None) -> str:
    return complaint_measure(Scope.CORPORATE, measure, stage)


def statutory(measure: ComplaintMeasure, stage: int | None = None) -> str:
    return complaint_measure(Scope.STATUTORY, measure, stage)


def code_stages(measure: ComplaintMeasure, stages: Iterable[int] = (1, 2)) -> tuple[str, ...]:
    """A staged corporate measure at each stage of the Code."""
    return tuple(corporate(measure, stage) for stage in stages)


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "first_contact_resolution",
        "First contact resolution",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        ((Measure.FCR_FIRST_TIME, 1), (Measure.FCR_LOST, -1)),
        plus(Measure.FCR_ELIGIBLE),
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
        ((Measure.CALLS_ANSWERED, 1), (Measure.CALLS_TRANSFERRED, -1)),
        plus(Measure.CALLS_ANSWERED),
        "Answered calls with zero transfers over calls answered.",
    ),
    Kpi(
        "transfer_rate",
        "Call transfer rate",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus(Measure.CALLS_TRANSFERRED),
        plus(Measure.CALLS_ANSWERED),
        "Answered calls transferred at least once (counted once however often) over calls "
        "answered.",
    ),
    Kpi(
        "average_transfers_per_call",
        "Average transfers per call",
        Unit.TRANSFERS,
        Direction.LOWER_IS_BETTER,
        plus(Measure.CALL_TRANSFERS),
        plus(Measure.CALLS_ANSWERED),
        "Transfers of answered calls over calls answered.",
    ),
    Kpi(
        "abandoned_call_rate",
        "Abandoned (missed) calls",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus(Measure.CALLS_ABANDONED),
        plus(Measure.CALLS_ANSWERED, Measure.CALLS_ABANDONED),
        "Calls abandoned before answer over calls offered (answered + abandoned).",
    ),
    Kpi(
        "average_speed_of_answer",
        "Average speed of answer",
        Unit.SECONDS,
        Direction.LOWER_IS_BETTER,
        plus(Measure.CALL_WAIT_SECONDS),
        plus(Measure.CALLS_ANSWERED_WAITED),
        "Total queue wait of answered calls over answered calls (calls whose wait is known).",
    ),
    Kpi(
        "service_level",
        "Service level",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.CALLS_WITHIN_SERVICE_LEVEL),
        plus(Measure.CALLS_ANSWERED, Measure.CALLS_ABANDONED),
        "Calls answered within N seconds over calls offered; abandoned calls count as "
        "failures, whatever their wait (N: CIVICPULSE_METRICS_SERVICE_LEVEL_SECONDS).",
    ),
    Kpi(
        "contacts_received",
        "Contacts received",
        Unit.COUNT,
        Direction.NEITHER,
        plus(Measure.CONTACTS_RECEIVED),
        None,
        "Contacts of every kind received.",
    ),
    Kpi(
        "compliments_received",
        "Compliments received",
        Unit.COUNT,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.COMPLIMENTS_RECEIVED),
        None,
        "Contacts of kind compliment.",
    ),
    Kpi(
        "complaints_received_stage_1",
        "Complaints received at stage 1",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus(corporate(ComplaintMeasure.RECEIVED, 1)),
        None,
        "Corporate (Complaint Handling Code) complaints opened.",
    ),
    Kpi(
        "complaints_received_stage_2",
        "Complaints received at stage 2",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus(corporate(ComplaintMeasure.RECEIVED, 2)),
        None,
        "Corporate complaints whose customer asked for stage 2 (counted when asked).",
    ),
    Kpi(
        "complaints_acknowledged_within_target",
        "Complaints acknowledged within target",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(*code_stages(ComplaintMeasure.ACK_ON_TIME)),
        plus(*code_stages(ComplaintMeasure.ACK_DUE)),
        "Stage 1 and 2 acknowledgements made before their deadline was breached, over "
        "acknowledgements made or breached, on the day the outcome became known.",
    ),
    Kpi(
        "complaints_responded_within_target",
        "Complaints responded to within target",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(*code_stages(ComplaintMeasure.RESPONSE_ON_TIME)),
        plus(*code_stages(ComplaintMeasure.RESPONSE_DUE)),
        "Stage 1 and 2 responses made before their (possibly extended) deadline was "
        "breached, over responses made or breached, on the day the outcome became known.",
    ),
    Kpi(
        "complaint_escalation_rate",
        "Complaint escalation rate",
        Unit.RATIO,
        Direction.LOWER_IS_BETTER,
        plus(corporate(ComplaintMeasure.RECEIVED, 2)),
        plus(corporate(ComplaintMeasure.RECEIVED, 1)),
        "Corporate complaints escalated to stage 2 over complaints received at stage 1.",
    ),
    Kpi(
        "complaints_upheld",
        "Complaints upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus(corporate(ComplaintMeasure.RESPONDED_UPHELD)),
        plus(corporate(ComplaintMeasure.RESPONDED)),
        "Responses (any stage) with outcome upheld over responses.",
    ),
    Kpi(
        "complaints_partly_upheld",
        "Complaints partly upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus(corporate(ComplaintMeasure.RESPONDED_PARTLY_UPHELD)),
        plus(corporate(ComplaintMeasure.RESPONDED)),
        "Responses (any stage) with outcome partly upheld over responses.",
    ),
    Kpi(
        "complaints_not_upheld",
        "Complaints not upheld",
        Unit.RATIO,
        Direction.NEITHER,
        plus(corporate(ComplaintMeasure.RESPONDED_NOT_UPHELD)),
        plus(corporate(ComplaintMeasure.RESPONDED)),
        "Responses (any stage) with outcome not upheld over responses.",
    ),
    Kpi(
        "complaint_deadline_breaches",
        "Complaint deadlines breached",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus(corporate(ComplaintMeasure.DEADLINE_BREACHES)),
        None,
        "Corporate acknowledgement and response deadlines that passed without the action.",
    ),
    Kpi(
        "ombudsman_referrals",
        "Ombudsman referrals",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus(corporate(ComplaintMeasure.OMBUDSMAN_REFERRALS)),
        None,
        "Corporate complaints referred to the Local Government or Housing Ombudsman.",
    ),
    Kpi(
        "statutory_ombudsman_referrals",
        "Statutory complaints referred to the Ombudsman",
        Unit.COUNT,
        Direction.LOWER_IS_BETTER,
        plus(statutory(ComplaintMeasure.OMBUDSMAN_REFERRALS)),
        None,
        "Adult and children's social care complaints referred to the Ombudsman; counted "
        "apart from the Code's.",
    ),
    Kpi(
        "statutory_complaints_received",
        "Statutory social care complaints received",
        Unit.COUNT,
        Direction.NEITHER,
        plus(statutory(ComplaintMeasure.RECEIVED, 1)),
        None,
        "Adult and children's social care complaints opened; never counted in the Code KPIs.",
    ),
    Kpi(
        "csat",
        "Customer satisfaction (CSAT)",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.SURVEYS_SATISFIED),
        plus(Measure.SURVEYS_RESPONDED),
        "Survey answers of 4 or 5 (overall satisfaction, 1 to 5) over answers.",
    ),
    Kpi(
        "average_ease",
        "Average ease (customer effort, 7 = very easy)",
        Unit.SCORE,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.SURVEY_EASE_TOTAL),
        plus(Measure.SURVEYS_RESPONDED),
        "Sum of ease answers (1 to 7) over answers.",
    ),
    Kpi(
        "survey_response_rate",
        "Survey response rate",
        Unit.RATIO,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.SURVEYS_RESPONDED),
        plus(Measure.SURVEYS_REQUESTED),
        "Survey answers received in the period over survey requests sent in the period.",
    ),
    Kpi(
        "mystery_shop_score",
        "Mystery shopping score",
        Unit.SCORE,
        Direction.HIGHER_IS_BETTER,
        plus(Measure.MYSTERY_SCORE_TOTAL),
        plus(Measure.MYSTERY_SHOPS),
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


def bucket_totals(
    buckets: Sequence[DateRange], days: Mapping[date, Mapping[str, float]]
) -> list[dict[str, float]]:
    """The measures summed over each bucket's days (a series' points, before evaluating)."""
    summed: list[dict[str, float]] = [{} for _ in buckets]
    for day, measures in days.items():
        for bucket, totals in zip(buckets, summed, strict=True):
            if bucket.contains(day):
                for measure, value in measures.items():
                    totals[measure] = totals.get(measure, 0.0) + value
    return summed


def series(
    kpi: Kpi, buckets: Sequence[DateRange], days: Mapping[date, Mapping[str, float]]
) -> list[Figure]:
    """The KPI over each bucket (a period of a chart) from daily totals of its measures."""
    return [evaluate(kpi, totals) for totals in bucket_totals(buckets, days)]


# The KPIs of the dashboard's overview matrix and the committee report's trend charts:
# one per area councils report on (seeds 002 to 004): resolution, calls, complaints,
# satisfaction.
HEADLINE_KPIS: tuple[str, ...] = (
    "first_contact_resolution",
    "abandoned_call_rate",
    "service_level",
    "complaints_responded_within_target",
    "complaint_escalation_rate",
    "csat",
)
