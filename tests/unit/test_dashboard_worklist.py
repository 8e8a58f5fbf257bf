"""The Complaints page's "due this week", read from the complaints service's worklist.

Issue 13: the Complaints page shows "open by stage and procedure, due this week,
overdue (from the complaints worklist where issue F has landed …)". The worklist
is `GET /v1/complaints` on the complaints service (X-API-Key, `state`,
`due_before`, cursor pages); when it cannot be reached the page says so, never 500.
"""

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.metrics.dashboard import DashboardContext, dashboard_router
from services.metrics.dashboard.worklist import (
    MAX_PAGES,
    PAGE_SIZE,
    DueComplaint,
    DueThisWeek,
    HttpWorklist,
    UnconfiguredWorklist,
    end_of_week,
    worklist_of,
)
from services.metrics.report import Judging
from services.metrics.settings import MetricsSettings
from services.metrics.targets import load_targets
from shared.vocabulary import load_service_areas
from tests.support.fake_metrics_store import FakeMetricsStore
from tests.support.metrics import MANAGER, TOKENS

TODAY = date(2025, 2, 20)  # a Thursday
NEXT_MONDAY = date(2025, 2, 24)
KEY = "dashboard-key-0123456789"


def worklist_row(complaint_id: str, due: date, *, overdue: bool, days: int) -> dict[str, Any]:
    """A row as the complaints service's `WorklistRow` gives it (with fields the page skips)."""
    return {
        "complaint_id": complaint_id,
        "procedure": "corporate",
        "statutory": False,
        "service_area": "waste",
        "channel": "web",
        "stage": 1,
        "status": "open",
        "received_at": "2025-02-10T09:00:00Z",
        "next_due_date": due.isoformat(),
        "next_due": "acknowledge" if overdue else "respond",
        "working_days_left": days,
        "overdue": overdue,
    }


class FakeWorklist:
    def __init__(self, answer: DueThisWeek | None = None) -> None:
        self.answer = answer
        self.asked: list[date] = []

    async def due_before(self, before: date) -> DueThisWeek:
        self.asked.append(before)
        if self.answer is None:
            return DueThisWeek(before, problem="The complaints service could not be reached.")
        return dataclasses.replace(self.answer, before=before)


def dashboard_context(worklist: Any) -> DashboardContext:
    settings = MetricsSettings(metrics_api_tokens=TOKENS)
    areas = load_service_areas(settings.vocabulary_file)
    store = FakeMetricsStore()
    return DashboardContext(
        store=lambda: store,
        judging=Judging(
            targets=load_targets(settings.metrics_targets_file, areas),
            amber_tolerance=settings.metrics_amber_tolerance,
            minimum_sample=settings.metrics_minimum_sample,
            fcr_window_days=settings.metrics_fcr_window_days,
        ),
        service_areas=areas,
        tokens=TOKENS,
        today=lambda: TODAY,
        fcr_window_days=settings.metrics_fcr_window_days,
        worklist=worklist,
    )


@pytest.fixture
def fake() -> FakeWorklist:
    return FakeWorklist()


@pytest.fixture
async def client(fake: FakeWorklist) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(dashboard_router(dashboard_context(fake)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        yield http


def table_rows(html: str) -> list[str]:
    table = html.split('<table id="due-this-week">', 1)[1].split("</table>", 1)[0]
    return table.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("</tr>")[:-1]


@pytest.mark.parametrize(
    ("today", "monday"),
    [
        (date(2025, 2, 17), date(2025, 2, 24)),  # a Monday: the whole week
        (TODAY, NEXT_MONDAY),
        (date(2025, 2, 23), date(2025, 2, 24)),  # a Sunday: today only
        (date(2026, 3, 31), date(2026, 4, 6)),  # across the financial year
    ],
)
def test_this_week_ends_before_the_next_monday(today: date, monday: date) -> None:
    assert end_of_week(today) == monday


async def test_the_page_lists_complaints_due_this_week_overdue_first_with_words(
    client: httpx.AsyncClient, fake: FakeWorklist
) -> None:
    fake.answer = DueThisWeek(
        NEXT_MONDAY,
        [
            DueComplaint.model_validate(
                worklist_row("CMP-1", date(2025, 2, 14), overdue=True, days=-4)
            ),
            DueComplaint.model_validate(
                worklist_row("CMP-2", date(2025, 2, 21), overdue=False, days=1)
            ),
        ],
    )

    page = await client.get("/dashboard/complaints", headers=MANAGER)

    assert page.status_code == 200
    assert fake.asked == [NEXT_MONDAY]
    rows = table_rows(page.text)
    assert len(rows) == 2
    assert "CMP-1" in rows[0]
    assert "14 February 2025" in rows[0]
    assert ">-4<" in rows[0]
    assert ">Overdue<" in rows[0]
    assert "acknowledge" in rows[0]
    assert "CMP-2" in rows[1]
    assert "21 February 2025" in rows[1]
    assert ">No<" in rows[1]
    assert "Waste" in rows[1]
    assert "2 due this week" in page.text
    assert "of which 1 overdue" in page.text
    assert "Open complaints due before 24 February 2025" in page.text


async def test_an_unreachable_worklist_is_a_clear_message_not_a_500(
    client: httpx.AsyncClient, fake: FakeWorklist
) -> None:
    fake.answer = None

    page = await client.get("/dashboard/complaints", headers=MANAGER)

    assert page.status_code == 200
    assert 'id="due-this-week-problem"' in page.text
    assert "could not be reached" in page.text
    assert 'id="due-this-week"' not in page.text
    assert "Complaints open now by procedure and stage" in page.text  # the rest still shows


async def test_without_settings_the_page_names_the_missing_settings() -> None:
    answer = await worklist_of(None, SecretStr(KEY)).due_before(NEXT_MONDAY)
    keyless = await worklist_of("http://complaints:8002", None).due_before(NEXT_MONDAY)

    assert isinstance(worklist_of(None, None), UnconfiguredWorklist)
    assert answer.problem is not None
    assert "CIVICPULSE_METRICS_COMPLAINTS_URL" in answer.problem
    assert keyless.problem == answer.problem
    assert isinstance(worklist_of("http://complaints:8002", SecretStr(KEY)), HttpWorklist)


class FakeComplaintsService:
    """The worklist endpoint over httpx's mock transport: checks the key, pages by cursor."""

    def __init__(self, rows: list[dict[str, Any]], *, status: int = 200) -> None:
        self.rows = rows
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("X-API-Key") != KEY:
            return httpx.Response(401, json={"detail": "missing or unknown API key"})
        if self.status != 200:
            return httpx.Response(self.status, text="nope")
        limit = int(request.url.params["limit"])
        start = int(request.url.params.get("cursor", "0"))
        page = self.rows[start : start + limit]
        more = start + limit < len(self.rows)
        body = {"complaints": page, "next_cursor": str(start + limit) if more else None}
        return httpx.Response(200, content=json.dumps(body))


def http_worklist(service: Any, key: str = KEY) -> HttpWorklist:
    return HttpWorklist("http://complaints:8002/", key, transport=httpx.MockTransport(service))


async def test_the_http_worklist_asks_for_open_complaints_due_before_and_follows_cursors() -> None:
    rows = [
        worklist_row(f"CMP-{n}", date(2025, 2, 21), overdue=False, days=1)
        for n in range(PAGE_SIZE + 3)
    ]
    service = FakeComplaintsService(rows)

    answer = await http_worklist(service).due_before(NEXT_MONDAY)

    assert answer.problem is None
    assert [row.complaint_id for row in answer.rows] == [row["complaint_id"] for row in rows]
    assert not answer.truncated
    first = service.requests[0]
    assert first.url.path == "/v1/complaints"
    assert first.url.params["state"] == "open"
    assert first.url.params["due_before"] == "2025-02-24"
    assert [r.url.params.get("cursor") for r in service.requests] == [None, str(PAGE_SIZE)]


async def test_a_refused_key_a_5xx_a_bad_body_and_a_dead_host_are_each_a_message() -> None:
    refused = await http_worklist(FakeComplaintsService([]), "wrong").due_before(NEXT_MONDAY)
    failing = await http_worklist(FakeComplaintsService([], status=503)).due_before(NEXT_MONDAY)
    garbled = await http_worklist(lambda _: httpx.Response(200, text="[1")).due_before(NEXT_MONDAY)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    dead = await http_worklist(refuse).due_before(NEXT_MONDAY)

    assert refused.problem is not None
    assert "CIVICPULSE_METRICS_COMPLAINTS_API_KEY" in refused.problem
    assert failing.problem == "The complaints service answered 503."
    assert garbled.problem is not None
    assert "not understood" in garbled.problem
    assert dead.problem == "The complaints service could not be reached (ConnectError)."
    assert [a.rows for a in (refused, failing, garbled, dead)] == [[], [], [], []]


async def test_more_than_the_table_holds_is_said_not_hidden(
    client: httpx.AsyncClient, fake: FakeWorklist
) -> None:
    rows = [
        worklist_row(f"CMP-{n}", date(2025, 2, 21), overdue=False, days=1)
        for n in range(MAX_PAGES * PAGE_SIZE + 1)
    ]
    fake.answer = await http_worklist(FakeComplaintsService(rows)).due_before(NEXT_MONDAY)

    page = await client.get("/dashboard/complaints", headers=MANAGER)

    assert fake.answer.truncated
    assert len(fake.answer.rows) == MAX_PAGES * PAGE_SIZE
    assert len(table_rows(page.text)) == MAX_PAGES * PAGE_SIZE
    assert f"(the first {MAX_PAGES * PAGE_SIZE} shown; more are due)" in page.text
