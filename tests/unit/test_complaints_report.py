"""The annual complaints report from a known set of complaints, through the metrics
handlers and the in-memory store: every figure is worked out by hand from the ledger."""

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import httpx

from services.complaints.domain import Complaint, Context, Decision, decide
from services.complaints.procedures import Policy
from services.complaints.working_days import WorkingDayCalendar
from services.metrics.app import create_app
from services.metrics.applier import BatchApplier
from services.metrics.complaints_report import build_complaints_report
from services.metrics.complaints_report_format import to_csv, to_html
from services.metrics.domain import KPIS_BY_NAME, Rules, evaluate
from services.metrics.domain.report_kpis import REPORT_KPIS_BY_NAME
from services.metrics.periods import DateRange
from services.metrics.settings import MetricsSettings
from shared.events.complaints import ComplaintEvent
from tests.support.complaints import action, london_at
from tests.support.fake_metrics_store import FakeMetricsStore
from tests.support.metrics import MANAGER, TOKENS

CONTEXT = Context(WorkingDayCalendar(), Policy(), recorded_at=datetime(2027, 4, 10, tzinfo=UTC))
APPLIER = BatchApplier(rules=Rules(), clock=lambda: CONTEXT.recorded_at, publish_surges=False)
TODAY = date(2027, 4, 10)


def run(complaint_id: str, steps: list[tuple[str, date, dict[str, Any]]]) -> list[ComplaintEvent]:
    complaint: Complaint | None = None
    events: list[ComplaintEvent] = []
    for n, (kind, day, fields) in enumerate(steps):
        outcome = decide(
            complaint, action(kind, complaint_id, f"a{n}", london_at(day), **fields), CONTEXT
        )
        assert isinstance(outcome, Decision), (kind, outcome)
        complaint, events = outcome.complaint, [*events, *outcome.events]
    return events


def ledger() -> list[ComplaintEvent]:
    learning = {"description": "Brief crews", "owner_team": "waste-ops", "due_date": "2026-06-30"}
    c1 = run(
        "CMP-1",
        [
            ("open", date(2026, 5, 4), {"service_area": "waste", "channel": "web"}),
            ("acknowledge", date(2026, 5, 5), {}),
            ("respond", date(2026, 5, 12), {"outcome": "upheld", "learning_actions": [learning]}),
            ("request_escalation", date(2026, 5, 20), {}),
            ("refuse_escalation", date(2026, 5, 21), {"reason": "legal_proceedings"}),
            ("refer_to_ombudsman", date(2026, 6, 1), {"ombudsman_reference": "LG-1"}),
            ("complete_learning_action", date(2026, 6, 15), {"learning_action_id": "1.1"}),
            ("record_ombudsman_decision", date(2026, 9, 1), {"decision": "upheld"}),
        ],
    )
    c2 = run(
        "CMP-2",
        [
            ("open", date(2026, 6, 1), {"service_area": "housing", "channel": "phone"}),
            ("acknowledge", date(2026, 6, 2), {}),
            ("extend", date(2026, 6, 5), {"days": 5, "reason": "awaiting the repair report"}),
            ("respond", date(2026, 6, 19), {"outcome": "not_upheld"}),
        ],
    )
    adult_learning = {
        "description": "Review care plans",
        "owner_team": "asc",
        "due_date": "2026-09-01",
    }
    c3 = run(
        "CMP-3",
        [
            ("open", date(2026, 7, 1), {"service_area": "adult_social_care", "channel": "phone"}),
            ("acknowledge", date(2026, 7, 2), {}),
            (
                "respond",
                date(2026, 8, 3),
                {"outcome": "partly_upheld", "learning_actions": [adult_learning]},
            ),
        ],
    )
    last_year = run(
        "CMP-0", [("open", date(2025, 5, 5), {"service_area": "waste", "channel": "web"})]
    )
    return [*last_year, *c1, *c2, *c3]


async def report_of(events: list[ComplaintEvent], year: int = 2026) -> Any:
    store = FakeMetricsStore()
    async with store.transaction() as tx:
        await APPLIER.apply(tx, 1, events)
    return await build_complaints_report(store, year, TODAY)


async def test_the_annual_report_counts_each_section_from_the_ledger() -> None:
    """Code, annual complaints performance and service improvement report: volumes by
    stage, outcomes, timeliness, extensions, refusals and why, Ombudsman referrals and
    decisions, learning actions, change against the previous year; the 2009 regulations
    (reg. 18) ask for the statutory annual report in its own section."""
    report = await report_of(ledger())

    corporate = report.sections["corporate"]
    adult = report.sections["adult_social_care"]
    assert report.financial_year == "2026/27"
    assert (report.start, report.end) == (date(2026, 4, 1), date(2027, 3, 31))
    assert {k: (f.value, f.previous) for k, f in corporate.received_by_stage.items()} == {
        "1": (2, 1),
        "2": (1, 0),
    }
    assert corporate.received_by_stage["1"].source["kpi"] == "complaints_received_stage_1"
    assert corporate.received_by_stage["1"].source["params"] == {
        "from": "2026-04-01",
        "period": "year",
        "kpi": "complaints_received_stage_1",
    }
    assert {k: f.value for k, f in corporate.received_by_service_area.items()} == {
        "housing": 1,
        "waste": 2,
    }
    assert {k: f.value for k, f in corporate.outcomes_by_stage["1"].items()} == {
        "upheld": 1,
        "partly_upheld": 0,
        "not_upheld": 1,
    }
    ack = corporate.timeliness_by_stage["1"]["acknowledge"]
    assert (ack["due"].value, ack["on_time"].value) == (2, 2)
    assert corporate.extensions_by_stage["1"].value == 1
    # Listed without its text, which stays with the case (issue 12, item 7).
    assert [
        (e["complaint_id"], e["stage"], e["deadline"]) for e in corporate.extension_reasons
    ] == [("CMP-2", 1, "respond")]
    assert "awaiting the repair report" not in report.model_dump_json()
    assert {k: f.value for k, f in corporate.refusals_by_reason.items()} == {"legal_proceedings": 1}
    assert corporate.refusals_by_reason["legal_proceedings"].source == {
        "endpoint": "/v1/kpis",
        "params": {
            "from": "2026-04-01",
            "period": "year",
            "kpi": "report_corporate_escalations_refused_legal_proceedings",
        },
        "kpi": "report_corporate_escalations_refused_legal_proceedings",
    }
    assert adult.outcomes_by_stage["1"]["partly_upheld"].source["params"]["service_area"] == (
        "adult_social_care"
    )
    assert corporate.ombudsman_referrals.value == 1
    assert {k: f.value for k, f in corporate.ombudsman_decisions.items()} == {"upheld": 1}
    assert [(a.complaint_id, a.status) for a in corporate.learning_actions] == [
        ("CMP-1", "done_on_time")
    ]
    assert adult.received_by_stage["1"].value == 1
    assert adult.outcomes_by_stage["1"]["partly_upheld"].value == 1
    assert [(a.owner_team, a.status) for a in adult.learning_actions] == [("asc", "overdue")]
    assert report.sections["childrens_social_care"].received_by_stage["1"].value == 0


async def test_a_year_with_no_complaints_is_a_report_of_zeros() -> None:
    """Issue 11: a financial_year outside the data gives an empty report, not an error."""
    report = await report_of(ledger(), year=2030)

    corporate = report.sections["corporate"]
    assert corporate.received_by_stage["1"].value == 0
    assert corporate.learning_actions == []
    assert corporate.refusals_by_reason == {}


async def test_the_report_prints_as_csv_and_escaped_html() -> None:
    events = ledger()
    report = await report_of(events)

    rows = list(csv.reader(io.StringIO(to_csv(report))))
    page = to_html(report)

    assert rows[0] == ["section", "figure", "key", "value", "previous_year"]
    assert ["corporate", "received_by_stage", "1", "2.0", "1.0"] in rows
    assert "Adult social care (2009 regulations)" in page
    assert "<script" not in page
    # Text from case systems is escaped, never markup.
    hostile = run(
        "CMP-9",
        [
            ("open", date(2026, 5, 4), {"service_area": "waste", "channel": "web"}),
            ("acknowledge", date(2026, 5, 5), {}),
            (
                "respond",
                date(2026, 5, 6),
                {
                    "outcome": "upheld",
                    "learning_actions": [
                        {"description": "<script>alert(1)</script>", "owner_team": "waste-ops"}
                    ],
                },
            ),
        ],
    )
    hostile_page = to_html(await report_of([*events, *hostile]))
    assert "<script>" not in hostile_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_page
    assert "Review care plans" in page


def figures_of(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "value" in node and "source" in node:
            return [(path, node)]
        return [f for k, v in node.items() for f in figures_of(v, f"{path}.{k}")]
    return []


async def test_every_figure_s_source_names_a_kpi_that_counts_the_same_number() -> None:
    """Issue 11 item 8: "every figure must be traceable: the JSON gives, for each figure,
    the query parameters that reproduce it from GET /v1/kpis". Each source's KPI, over
    the financial year and the source's service area and channel, gives the figure."""
    events = ledger()
    store = FakeMetricsStore()
    async with store.transaction() as tx:
        await APPLIER.apply(tx, 1, events)
    report = await build_complaints_report(store, 2026, TODAY)
    generation = await store.live_generation()

    figures = figures_of(report.model_dump(mode="json"))
    for path, figure in figures:
        params = figure["source"]["params"]
        assert figure["source"]["endpoint"] == "/v1/kpis", path
        assert (params["from"], params["period"]) == ("2026-04-01", "year"), path
        kpi = KPIS_BY_NAME.get(params["kpi"]) or REPORT_KPIS_BY_NAME[params["kpi"]]
        totals = await store.totals(
            generation,
            DateRange(report.start, report.end),
            service_area=params.get("service_area"),
            channel=params.get("channel"),
        )
        assert evaluate(kpi, totals).value == figure["value"], (path, params)
    traced = {path: figure["value"] for path, figure in figures}
    assert traced[".sections.corporate.extensions_by_stage.1"] == 1
    assert traced[".sections.corporate.ombudsman_decisions.upheld"] == 1
    assert traced[".sections.adult_social_care.outcomes_by_stage.1.partly_upheld"] == 1
    assert traced[".sections.corporate.learning_action_counts.learning_actions_done_on_time"] == 1


async def test_get_kpis_refuses_an_unknown_kpi_name_naming_the_parameter() -> None:
    # No lifespan: the name is checked before the database is needed.
    app = create_app(MetricsSettings(metrics_api_tokens=TOKENS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        response = await client.get("/v1/kpis", params={"kpi": "report_nonsense"}, headers=MANAGER)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "kpi"]
