"""The annual complaints report's figures as count KPIs: pure, no I/O.

Every figure of `GET /v1/reports/complaints` is one of these, so the report's
`source` (`GET /v1/kpis?kpi=...`) reproduces it (issue 11, item 8). They are
asked for by name and are not in `KPIS`: the dashboard, the committee report
and the gauges keep their headline set. The statutory scope holds adult and
children's social care together; `service_area` parts them, as in the report.
"""

from collections.abc import Mapping
from typing import get_args

from services.metrics.domain.kpis import KPIS, Direction, Kpi, Unit, plus
from services.metrics.domain.measures import (
    ComplaintMeasure,
    Scope,
    complaint_measure,
    ombudsman_decision_measure,
    refusal_measure,
)
from shared.events.complaints import EscalationRefusalReason, OmbudsmanDecision

STAGES = (1, 2, 3)
STAGED_FIGURES = {
    ComplaintMeasure.RECEIVED: "complaints received at stage {stage}",
    ComplaintMeasure.ACK_DUE: "stage {stage} acknowledgements made or breached",
    ComplaintMeasure.ACK_ON_TIME: "stage {stage} acknowledgements made within target",
    ComplaintMeasure.RESPONSE_DUE: "stage {stage} responses made or breached",
    ComplaintMeasure.RESPONSE_ON_TIME: "stage {stage} responses made within target",
    ComplaintMeasure.EXTENSIONS: "stage {stage} deadlines extended",
    ComplaintMeasure.OUTCOME_UPHELD: "stage {stage} responses upheld",
    ComplaintMeasure.OUTCOME_PARTLY_UPHELD: "stage {stage} responses partly upheld",
    ComplaintMeasure.OUTCOME_NOT_UPHELD: "stage {stage} responses not upheld",
}
UNSTAGED_FIGURES = {
    ComplaintMeasure.WITHDRAWN: "complaints withdrawn",
    ComplaintMeasure.OMBUDSMAN_REFERRALS: "complaints referred to the Ombudsman",
    ComplaintMeasure.LEARNING_ACTIONS: "learning actions set",
    ComplaintMeasure.LEARNING_ACTIONS_DONE: "learning actions done",
    ComplaintMeasure.LEARNING_ACTIONS_DONE_ON_TIME: "learning actions done by their due date",
}
OMBUDSMAN_DECISIONS: tuple[str, ...] = get_args(OmbudsmanDecision)


# Counters a headline KPI already counts alone (complaints received at stage 1, say).
_HEADLINE_COUNTS = {
    kpi.numerator[0][0]: kpi.name
    for kpi in KPIS
    if kpi.denominator is None and len(kpi.numerator) == 1 and kpi.numerator[0][1] == 1
}


def report_kpi_name(measure: str) -> str:
    """The KPI counting one stored measure: a headline KPI if one counts it alone, else
    `report_` and the measure's name."""
    return _HEADLINE_COUNTS.get(measure, f"report_{measure}")


def received_kpi_name(scope: Scope) -> str:
    """Complaints received at any stage (the report's volumes by area and channel)."""
    return f"report_{scope}_complaints_received_any_stage"


def _count(measure: str, title: str) -> Kpi:
    return Kpi(
        report_kpi_name(measure),
        title[0].upper() + title[1:],
        Unit.COUNT,
        Direction.NEITHER,
        plus(measure),
        None,
        f"The annual complaints report's figure: {title} (counter `{measure}`).",
    )


def _report_kpis() -> list[Kpi]:
    kpis = []
    for scope in Scope:
        kind = "corporate" if scope is Scope.CORPORATE else "statutory"
        for measure, title in STAGED_FIGURES.items():
            for stage in STAGES:
                name = complaint_measure(scope, measure, stage)
                kpis.append(_count(name, f"{kind} {title.format(stage=stage)}"))
        for measure, title in UNSTAGED_FIGURES.items():
            kpis.append(_count(complaint_measure(scope, measure), f"{kind} {title}"))
        for reason in EscalationRefusalReason:
            kpis.append(
                _count(
                    refusal_measure(scope, reason.value), f"{kind} escalations refused: {reason}"
                )
            )
        for decision in OMBUDSMAN_DECISIONS:
            kpis.append(
                _count(
                    ombudsman_decision_measure(scope, decision),
                    f"{kind} Ombudsman decisions: {decision}",
                )
            )
        received = tuple(
            complaint_measure(scope, ComplaintMeasure.RECEIVED, stage) for stage in STAGES
        )
        kpis.append(
            Kpi(
                received_kpi_name(scope),
                f"{kind.capitalize()} complaints received at any stage",
                Unit.COUNT,
                Direction.NEITHER,
                plus(*received),
                None,
                "The annual complaints report's volumes: complaints opened plus escalations "
                "asked for, each stage counted.",
            )
        )
    return kpis


# A counter a headline KPI counts is reported by that KPI, not a second one.
REPORT_KPIS: tuple[Kpi, ...] = tuple(
    kpi
    for kpi in _report_kpis()
    if len(kpi.numerator) > 1 or kpi.numerator[0][0] not in _HEADLINE_COUNTS
)
REPORT_KPIS_BY_NAME: Mapping[str, Kpi] = {kpi.name: kpi for kpi in REPORT_KPIS}
