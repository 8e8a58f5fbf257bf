"""The annual complaints performance and service improvement report (issue 11, item 8).

`GET /v1/reports/complaints?financial_year=2026` covers April 2026 to March 2027:
the Code asks for one a year, and the 2006 and 2009 regulations ask for their
own annual reports, so corporate, adult and children's social care complaints
are separate sections. Counts come from the aggregates (the KPIs' counters);
reasons, decisions and learning actions from the report's notes
(`metrics_complaint_notes`). Every figure says where it comes from: the
`GET /v1/kpis` parameters and KPI that reproduce it, or the counter names, or
the complaints (`GET /v1/complaints/{id}` on the complaints service) it lists.
A year with no data gives a report of zeros, not an error.
"""

from collections.abc import Callable, Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field

from services.metrics import complaints_report_format as report_format
from services.metrics.domain.complaint_notes import ComplaintNote, NoteKind
from services.metrics.domain.measures import ComplaintMeasure, Scope, complaint_measure
from services.metrics.periods import DateRange
from services.metrics.store import MetricsStore
from services.metrics.views import ReportFormat
from shared.events.vocabulary import Channel, ComplaintOutcome, ComplaintProcedure, DeadlineKind

# Which procedure each section reports, its counters' scope and its stages.
SECTIONS: dict[ComplaintProcedure, tuple[Scope, str | None, int]] = {
    ComplaintProcedure.CORPORATE: (Scope.CORPORATE, None, 2),
    ComplaintProcedure.ADULT_SOCIAL_CARE: (Scope.STATUTORY, "adult_social_care", 1),
    ComplaintProcedure.CHILDRENS_SOCIAL_CARE: (Scope.STATUTORY, "childrens_social_care", 3),
}
TIMELINESS = {
    DeadlineKind.ACKNOWLEDGE: (ComplaintMeasure.ACK_DUE, ComplaintMeasure.ACK_ON_TIME),
    DeadlineKind.RESPOND: (ComplaintMeasure.RESPONSE_DUE, ComplaintMeasure.RESPONSE_ON_TIME),
}


class Figure(BaseModel):
    value: float
    previous: float | None = Field(default=None, description="The financial year before.")
    change: float | None = Field(default=None, description="value - previous.")
    source: dict[str, Any] = Field(description="How to reproduce the figure.")


class LearningActionRow(BaseModel):
    complaint_id: str
    learning_action_id: str
    stage: int | None
    description: str
    owner_team: str
    due_date: date | None
    status: str = Field(description="done_on_time, done_late, done, overdue or open.")
    completed_on: date | None


class Section(BaseModel):
    procedure: ComplaintProcedure
    received_by_stage: dict[str, Figure]
    received_by_service_area: dict[str, Figure]
    received_by_channel: dict[str, Figure]
    outcomes_by_stage: dict[str, dict[str, Figure]]
    timeliness_by_stage: dict[str, dict[str, dict[str, Figure]]] = Field(
        description="stage -> deadline -> due (made or breached) and on_time."
    )
    extensions_by_stage: dict[str, Figure]
    extension_reasons: list[dict[str, Any]]
    refusals_by_reason: dict[str, Figure]
    withdrawn: Figure
    ombudsman_referrals: Figure
    ombudsman_decisions: dict[str, Figure]
    learning_actions: list[LearningActionRow]


class ComplaintsReport(BaseModel):
    financial_year: str = Field(examples=["2026/27"])
    start: date
    end: date
    sections: dict[str, Section]


def financial_year_span(year: int) -> DateRange:
    return DateRange(date(year, 4, 1), date(year + 1, 3, 31))


def _kpi_source(kpi: str, span: DateRange, **params: str) -> dict[str, Any]:
    return {
        "endpoint": "/v1/kpis",
        "params": {"from": span.start.isoformat(), "period": "year", **params},
        "kpi": kpi,
    }


def _figure(value: float, previous: float, source: dict[str, Any]) -> Figure:
    return Figure(value=value, previous=previous, change=value - previous, source=source)


def _listed(notes: Sequence[ComplaintNote], **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": "complaints service GET /v1/complaints/{complaint_id}",
        "complaint_ids": sorted({n.complaint_id for n in notes}),
        **extra,
    }


class _Year:
    """One financial year's counters and notes for one section."""

    def __init__(
        self,
        totals: dict[str, float],
        by_area: dict[str, dict[str, float]],
        by_channel: dict[str, dict[str, float]],
        notes: Sequence[ComplaintNote],
        procedure: ComplaintProcedure,
        span: DateRange,
    ) -> None:
        self.totals, self.by_area, self.by_channel = totals, by_area, by_channel
        self.notes = [
            n for n in notes if n.procedure == procedure.value and span.start <= n.day <= span.end
        ]

    def count(self, measure: str) -> float:
        return self.totals.get(measure, 0.0)

    def noted(self, kind: NoteKind) -> list[ComplaintNote]:
        return [n for n in self.notes if n.kind is kind]


def _section(
    procedure: ComplaintProcedure,
    now: _Year,
    before: _Year,
    all_notes: Sequence[ComplaintNote],
    span: DateRange,
    today: date,
) -> Section:
    scope, area, stages = SECTIONS[procedure]
    area_params = {} if area is None else {"service_area": area}
    received = [
        complaint_measure(scope, ComplaintMeasure.RECEIVED, s) for s in range(1, stages + 1)
    ]

    def counted(measure: str, kpi: str | None = None) -> Figure:
        source = (
            _kpi_source(kpi, span, **area_params)
            if kpi
            else {"counters": [measure], "period": [span.start.isoformat(), span.end.isoformat()]}
        )
        return _figure(now.count(measure), before.count(measure), source)

    def per(
        groups: dict[str, dict[str, float]], old: dict[str, dict[str, float]], param: str
    ) -> dict[str, Figure]:
        return {
            key: _figure(
                sum(values.get(m, 0.0) for m in received),
                sum(old.get(key, {}).get(m, 0.0) for m in received),
                {
                    "counters": received,
                    **_kpi_source("complaints_received_stage_1", span, **{param: key}),
                },
            )
            for key, values in sorted(groups.items())
            if any(values.get(m) for m in received)
        }

    stage_kpis = {1: "complaints_received_stage_1", 2: "complaints_received_stage_2"}
    by_stage = {
        str(s): counted(
            received[s - 1],
            stage_kpis.get(s)
            if scope is Scope.CORPORATE
            else ("statutory_complaints_received" if s == 1 else None),
        )
        for s in range(1, stages + 1)
    }
    outcomes: dict[str, dict[str, Figure]] = {}
    for s in range(1, stages + 1):
        responses = [n for n in now.noted(NoteKind.RESPONSE) if n.stage == s]
        earlier = [n for n in before.noted(NoteKind.RESPONSE) if n.stage == s]
        outcomes[str(s)] = {
            o.value: _figure(
                sum(n.detail["outcome"] == o.value for n in responses),
                sum(n.detail["outcome"] == o.value for n in earlier),
                _listed([n for n in responses if n.detail["outcome"] == o.value]),
            )
            for o in ComplaintOutcome
        }
    timeliness = {
        str(s): {
            kind.value: {
                "due": counted(complaint_measure(scope, due, s)),
                "on_time": counted(complaint_measure(scope, on_time, s)),
            }
            for kind, (due, on_time) in TIMELINESS.items()
        }
        for s in range(1, stages + 1)
    }
    extensions = now.noted(NoteKind.EXTENSION)
    extensions_before = before.noted(NoteKind.EXTENSION)
    refusals = now.noted(NoteKind.ESCALATION_REFUSED)
    refusals_before = before.noted(NoteKind.ESCALATION_REFUSED)
    refused_reasons = sorted({n.detail["reason"] for n in [*refusals, *refusals_before]})
    decisions = now.noted(NoteKind.OMBUDSMAN_DECISION)
    decisions_before = before.noted(NoteKind.OMBUDSMAN_DECISION)
    referral_kpi = (
        "ombudsman_referrals" if scope is Scope.CORPORATE else "statutory_ombudsman_referrals"
    )
    return Section(
        procedure=procedure,
        received_by_stage=by_stage,
        received_by_service_area=per(now.by_area, before.by_area, "service_area")
        if area is None
        else {},
        received_by_channel=per(now.by_channel, before.by_channel, "channel"),
        outcomes_by_stage=outcomes,
        timeliness_by_stage=timeliness,
        extensions_by_stage={
            str(s): _figure(
                sum(n.stage == s for n in extensions),
                sum(n.stage == s for n in extensions_before),
                _listed([n for n in extensions if n.stage == s]),
            )
            for s in range(1, stages + 1)
        },
        extension_reasons=[
            {"complaint_id": n.complaint_id, "stage": n.stage, "on": n.day, **n.detail}
            for n in extensions
        ],
        refusals_by_reason={
            reason: _figure(
                sum(n.detail["reason"] == reason for n in refusals),
                sum(n.detail["reason"] == reason for n in refusals_before),
                _listed([n for n in refusals if n.detail["reason"] == reason]),
            )
            for reason in refused_reasons
        },
        withdrawn=counted(complaint_measure(scope, ComplaintMeasure.WITHDRAWN)),
        ombudsman_referrals=counted(
            complaint_measure(scope, ComplaintMeasure.OMBUDSMAN_REFERRALS), referral_kpi
        ),
        ombudsman_decisions={
            decision: _figure(
                sum(n.detail["decision"] == decision for n in decisions),
                sum(n.detail["decision"] == decision for n in decisions_before),
                _listed([n for n in decisions if n.detail["decision"] == decision]),
            )
            for decision in sorted({n.detail["decision"] for n in [*decisions, *decisions_before]})
        },
        learning_actions=_learning_actions(now.noted(NoteKind.LEARNING_ACTION), all_notes, today),
    )


def _learning_actions(
    set_in_year: Sequence[ComplaintNote], all_notes: Sequence[ComplaintNote], today: date
) -> list[LearningActionRow]:
    done = {
        (n.complaint_id, n.detail["learning_action_id"]): n
        for n in all_notes
        if n.kind is NoteKind.LEARNING_ACTION_DONE
    }
    rows = []
    for note in set_in_year:
        key = (note.complaint_id, note.detail["learning_action_id"])
        due = date.fromisoformat(note.detail["due_date"]) if note.detail.get("due_date") else None
        completed = done.get(key)
        completed_on = date.fromisoformat(completed.detail["completed_on"]) if completed else None
        if completed_on is not None:
            status = (
                "done" if due is None else ("done_on_time" if completed_on <= due else "done_late")
            )
        else:
            status = "overdue" if due is not None and due < today else "open"
        rows.append(
            LearningActionRow(
                complaint_id=note.complaint_id,
                learning_action_id=key[1],
                stage=note.stage,
                description=note.detail["description"],
                owner_team=note.detail["owner_team"],
                due_date=due,
                status=status,
                completed_on=completed_on,
            )
        )
    return rows


async def build_complaints_report(
    store: MetricsStore, financial_year: int, today: date
) -> ComplaintsReport:
    generation = await store.live_generation()
    span, before = financial_year_span(financial_year), financial_year_span(financial_year - 1)
    notes = await store.complaint_notes(generation, DateRange(before.start, span.end))
    years: dict[str, tuple[DateRange, dict[str, float], Any, Any]] = {}
    for name, each in (("now", span), ("before", before)):
        years[name] = (
            each,
            await store.totals(generation, each),
            await store.totals_by(generation, each, "service_area"),
            await store.totals_by(generation, each, "channel"),
        )
    sections = {}
    for procedure, (_, area, _) in SECTIONS.items():
        pair = []
        for name in ("now", "before"):
            each, totals, by_area, by_channel = years[name]
            if area is not None:  # a statutory procedure is its service area's complaints
                totals = by_area.get(area, {})
                by_channel = {
                    c.value: await store.totals(
                        generation, each, service_area=area, channel=c.value
                    )
                    for c in Channel
                }
            pair.append(_Year(totals, by_area, by_channel, notes, procedure, each))
        sections[procedure.value] = _section(procedure, pair[0], pair[1], notes, span, today)
    start = span.start.year
    return ComplaintsReport(
        financial_year=f"{start}/{(start + 1) % 100:02d}",
        start=span.start,
        end=span.end,
        sections=sections,
    )


def add_complaints_report_route(
    app: FastAPI,
    *,
    manager: Any,
    store: Callable[[], MetricsStore],
    today: Callable[[], date],
) -> None:
    """`GET /v1/reports/complaints` on the metrics app (role manager)."""

    @app.get(
        "/v1/reports/complaints",
        response_model=ComplaintsReport,
        tags=["reports"],
        summary="The annual complaints performance and service improvement report",
        description="`financial_year=2026` is April 2026 to March 2027. Corporate, adult and "
        "children's social care complaints in their own sections; each figure with the year "
        "before and its source (GET /v1/kpis parameters, counter names, or the complaints it "
        "lists). `format=csv` or `format=html` (printable). A year with no data is a report "
        "of zeros.",
        responses={
            200: {
                "content": {"text/csv": {}, "text/html": {}},
                "description": "JSON, CSV or HTML by `format`.",
            },
            401: {"description": "No or unknown token."},
            403: {"description": "Not the manager role."},
        },
    )
    async def get_complaints_report(
        _: Annotated[Any, Depends(manager)],
        financial_year: Annotated[
            int, Query(ge=2000, le=2100, description="The year the financial year starts in.")
        ],
        format: ReportFormat = ReportFormat.JSON,
    ) -> Any:
        report = await build_complaints_report(store(), financial_year, today())
        name = f"complaints-report-{financial_year}"
        if format is ReportFormat.CSV:
            return PlainTextResponse(
                report_format.to_csv(report),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        if format is ReportFormat.HTML:
            return HTMLResponse(report_format.to_html(report))
        return report
