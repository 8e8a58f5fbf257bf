"""The dashboard's pages on the in-memory store: sign-in, bad parameters, figures shown.

The store is filled by the real handlers from the known day of
tests/support/metrics.py, whose figures are worked out by hand in
tests/integration/test_metrics_kpis.py (planning FCR 2 of 6, for example).
"""

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.metrics.applier import BatchApplier, LiveConsumer
from services.metrics.dashboard import DashboardContext, charts, dashboard_router
from services.metrics.dashboard.comments import CommentSource, HttpComments, UnconfiguredComments
from services.metrics.dashboard.committee_page import CommitteeDocument, largest_movements
from services.metrics.dashboard.context import STATIC_FILES
from services.metrics.domain import KPIS_BY_NAME, Rag, Standing, Trend
from services.metrics.formatting import format_target
from services.metrics.periods import LONDON, Period, fair_comparison, parse_quarter
from services.metrics.queries import committee_groups
from services.metrics.report import Judging, KpiRow, ServiceStanding
from services.metrics.settings import MetricsSettings
from services.metrics.targets import load_targets
from shared.api_keys import HEADER
from shared.events.complaints import ComplaintDeadlineBreached, ComplaintOpened
from shared.events.vocabulary import Channel, DeadlineKind
from shared.vocabulary import load_service_areas
from tests.support.fake_metrics_store import FakeMetricsStore
from tests.support.metrics import MANAGER, MANAGER_TOKEN, TOKENS, Events, known_day, utc_at

DAY = date(2025, 2, 11)
TODAY = date(2025, 2, 20)


@pytest.fixture
async def context() -> DashboardContext:
    settings = MetricsSettings(metrics_api_tokens=TOKENS, metrics_minimum_sample=5)
    areas = load_service_areas(settings.vocabulary_file)
    store = FakeMetricsStore()
    now = datetime.combine(TODAY, time(12), tzinfo=LONDON)
    applier = BatchApplier(rules=settings.rules, clock=lambda: now, publish_surges=False)
    await LiveConsumer(store, applier).handle(known_day(Events(), DAY))
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
    )


@pytest.fixture
async def client(context: DashboardContext) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(dashboard_router(context))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        yield http


PAGES = [
    "/dashboard",
    "/dashboard/kpi/first_contact_resolution",
    "/dashboard/complaints",
    "/dashboard/satisfaction",
    "/dashboard/committee",
]


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_without_a_token_is_401_with_the_sign_in_form(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'action="/dashboard/sign-in"' in response.text


async def test_an_unknown_token_is_401_not_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard", headers={"Authorization": "Bearer nope"})
    client.cookies.set("civicpulse_metrics_token", "nope")
    cookie = await client.get("/dashboard")

    assert (response.status_code, cookie.status_code) == (401, 401)


async def test_signing_in_sets_a_cookie_that_opens_every_page(client: httpx.AsyncClient) -> None:
    refused = await client.post("/dashboard/sign-in", content="token=wrong")
    signed = await client.post(
        "/dashboard/sign-in",
        content=f"token={MANAGER_TOKEN}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert refused.status_code == 401
    assert signed.status_code == 303
    assert "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200, path


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/dashboard/kpi/happiness", "kpi"),
        ("/dashboard/kpi/csat?service_area=parking", "service_area"),
        ("/dashboard/kpi/csat?channel=pigeon", "channel"),
        ("/dashboard/kpi/csat?period=century", "period"),
        ("/dashboard?period=fortnight", "period"),
        ("/dashboard/committee?quarter=2025-27-Q1", "quarter"),
        ("/dashboard/committee?format=docx", "format"),
    ],
)
async def test_a_bad_parameter_is_a_readable_422_page_naming_it(
    client: httpx.AsyncClient, path: str, parameter: str
) -> None:
    response = await client.get(path, headers=MANAGER)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert f"<code>{parameter}</code>" in response.text


async def test_the_overview_matrix_shows_value_rag_word_and_links_to_the_kpi_page(
    client: httpx.AsyncClient,
) -> None:
    """Planning's FCR on the known day, by hand: eligible c1 c2 c3 c4 c7 = 5; first time
    c1 only (c2 transferred, c3 re-contacted by c4, c7 transferred later) = 1; 20%
    against a target of 75%: red."""
    response = await client.get("/dashboard?period=month", headers=MANAGER)

    assert response.status_code == 200
    cell = re.search(
        r'<td class="cell rag-(\w+)">\s*<a href="/dashboard/kpi/first_contact_resolution'
        r'\?service_area=planning">([^<]+)</a><br>\s*<span class="rag rag-\w+">'
        r'<span aria-hidden="true">.</span> ([A-Za-z ]+)</span>',
        response.text,
    )
    assert cell is not None, response.text
    assert cell.groups() == ("red", "20.0%", "Red")
    assert "so far (20 days" in response.text  # the fair-period rule, in words


async def test_the_kpi_page_has_a_chart_spec_and_its_table_with_numerator_and_denominator(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/dashboard/kpi/first_contact_resolution?service_area=planning&period=day",
        headers=MANAGER,
    )

    assert response.status_code == 200
    assert 'data-chart="kpi-chart-spec"' in response.text
    assert '"$schema": "https://vega.github.io/schema/vega-lite/v6.json"' in response.text
    row = re.search(
        r"<th scope=\"row\">2025-02-11</th>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>"
        r"\s*<td>([^<]*)</td>",
        response.text,
    )
    assert row is not None
    assert row.groups() == ("20.0%", "1", "5")


async def test_static_files_are_only_the_named_assets(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dashboard/static/dashboard.js")).status_code == 200
    assert (await client.get("/dashboard/static/..%2Fcontext.py")).status_code == 404


def test_a_target_prints_in_its_kpis_own_unit() -> None:
    assert format_target(0.75, KPIS_BY_NAME["first_contact_resolution"].unit) == "75.0%"
    assert format_target(30.0, KPIS_BY_NAME["average_speed_of_answer"].unit) == "30 s"
    assert format_target("TBA", KPIS_BY_NAME["csat"].unit) == "TBA"


async def test_the_committee_page_has_summary_matrix_trends_and_units(
    context: DashboardContext,
) -> None:
    store = context.store()
    span = parse_quarter("2024-25-Q4")
    comparison = fair_comparison(span, Period.QUARTER, TODAY)
    groups = await committee_groups(
        store, 1, comparison, context.service_areas, today=TODAY, judging=context.judging
    )

    page = await CommitteeDocument(context).html(store, 1, comparison, groups, TODAY)

    assert "Customer service performance, Q4 2024/25" in page
    assert "2024Q" not in page
    assert "2025Q" not in page
    assert "Executive summary" in page
    assert "RAG matrix" in page
    assert page.count('data-chart="trend-') == 6
    text = re.sub(r"<script.*?</script>", "", page, flags=re.DOTALL)  # what a reader sees
    assert "0.75" not in text
    assert "<td>75.0%</td>" in text  # FCR's target, in the unit of the value beside it
    assert "counter(page)" in page


def feedback_comments(answer: httpx.Response | None = None) -> HttpComments:
    """Feedback's GET /v1/comments, answering `answer` or one escaped-worthy comment."""

    def serve(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/comments"
        assert request.headers[HEADER] == "dashboard-key"
        assert request.url.params["limit"] == "20"
        return answer or httpx.Response(
            200,
            json={
                "comments": [
                    {
                        "comment_ref": "r-1",
                        "answered_at": "2025-02-11T17:00:00Z",
                        "service_area": "waste",
                        "channel": "web",
                        "overall": 1,
                        "comment": "<b>Bins</b> missed",
                    }
                ]
            },
        )

    return HttpComments(
        "http://feedback:8003/", "dashboard-key", transport=httpx.MockTransport(serve)
    )


async def satisfaction_page(context: DashboardContext, comments: CommentSource) -> httpx.Response:
    app = FastAPI()
    app.include_router(dashboard_router(dataclasses.replace(context, comments=comments)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        return await http.get("/dashboard/satisfaction", headers=MANAGER)


async def test_the_satisfaction_page_shows_the_latest_comments_escaped(
    context: DashboardContext,
) -> None:
    """Issue 12, item 7: the comments are the feedback service's (erasable there); the
    page reads them from its API and keeps no copy."""
    page = await satisfaction_page(context, feedback_comments())

    assert page.status_code == 200
    assert "<td>&lt;b&gt;Bins&lt;/b&gt; missed</td>" in page.text
    assert "<b>Bins</b>" not in page.text
    assert "comments-problem" not in page.text


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (UnconfiguredComments(), "CIVICPULSE_METRICS_FEEDBACK_URL"),
        (feedback_comments(httpx.Response(401)), "API key (401)"),
        (feedback_comments(httpx.Response(200, json={"rows": 1})), "not understood"),
        (feedback_comments(httpx.Response(503)), "answered 503"),
    ],
)
async def test_the_satisfaction_page_says_why_comments_are_missing_and_shows_the_rest(
    context: DashboardContext, source: CommentSource, says: str
) -> None:
    page = await satisfaction_page(context, source)

    assert page.status_code == 200
    assert 'id="comments-problem"' in page.text
    assert says in page.text
    assert "Satisfaction by service area" in page.text


async def test_the_banner_names_an_active_surge_and_the_complaints_overdue(
    context: DashboardContext, client: httpx.AsyncClient
) -> None:
    """A complaint open at stage 1 whose acknowledgement deadline was breached, and not yet
    acknowledged, is overdue (the known day's k2 was acknowledged late, then closed: not).
    A surge found today is still news."""
    store = context.store()
    events = Events()
    opened = events.complaint(
        "k9", utc_at(DAY, 9), ComplaintOpened, service_area="planning", channel=Channel.WEB
    )
    breached = events.complaint(
        "k9",
        utc_at(DAY + timedelta(days=7), 0, 5),
        ComplaintDeadlineBreached,
        service_area="planning",
        stage=1,
        deadline=DeadlineKind.ACKNOWLEDGE,
        due_date=DAY + timedelta(days=7),
    )
    settings = MetricsSettings()
    applier = BatchApplier(
        rules=settings.rules, clock=lambda: utc_at(TODAY, 9), publish_surges=False
    )
    await LiveConsumer(store, applier).handle([opened, breached])
    async with store.transaction() as tx:
        await tx.record_surge(
            1, ("waste", "contacts_received", TODAY), "s-1", count=90, baseline=30, threshold=60
        )
    page = await client.get("/dashboard", headers=MANAGER)
    report = await client.get("/dashboard/committee?quarter=2024-25-Q4", headers=MANAGER)

    banner = re.search(r'<section class="banner".*?</section>', page.text, flags=re.DOTALL)
    assert banner is not None, page.text
    assert "Waste, contacts received on 20 February: 90 against a usual 30" in banner[0]
    assert "Complaints overdue:</strong> 1 open past a deadline (Planning 1)" in banner[0]
    assert report.status_code == 200
    assert "Waste, contacts received on 20 February: 90" in report.text  # Q4 2024/25


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_text_colour_of_the_stylesheet_passes_wcag_aa_on_its_background() -> None:
    """WCAG 2.2, 1.4.3 Contrast (Minimum), level AA: text at least 4.5:1; 1.4.11 Non-text
    Contrast: chart lines and marks at least 3:1 against the white page."""
    css = STATIC_FILES["dashboard.css"].read_text()
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", css)
    pairs = []
    for selector, body in rules:
        colour = re.search(r"(?<![-\w])color:\s*(#[0-9a-f]{6})", body)
        background = re.search(r"background:\s*(#[0-9a-f]{6})", body)
        if colour:
            pairs.append((selector.strip(), colour[1], background[1] if background else "#ffffff"))
    assert len(pairs) >= 8
    weak = [(s, c, b, round(contrast(c, b), 2)) for s, c, b in pairs if contrast(c, b) < 4.5]
    assert weak == []
    marks = [charts.THIS_PERIOD, charts.PREVIOUS_YEAR, charts.TARGET, charts.BAR]
    assert all(contrast(mark, "#ffffff") >= 3 for mark in marks)


def test_the_largest_movements_skip_small_samples_and_kpis_without_direction() -> None:
    def row(kpi: str, change: float, denominator: float | None, rag: Rag | None) -> KpiRow:
        return KpiRow(
            kpi,
            kpi,
            "ratio",
            "",
            0.5,
            1,
            denominator,
            None,
            rag,
            0.4,
            0.1,
            change,
            Trend.IMPROVING,
            False,
        )

    groups = {
        Standing.AT_RISK: [
            ServiceStanding(
                "waste",
                Standing.AT_RISK,
                [
                    row("csat", 50, 100, Rag.AMBER),
                    row("complaints_upheld", 90, 100, None),  # no direction of travel
                    row("first_contact_resolution", 80, 3, Rag.INSUFFICIENT_DATA),
                    row("service_level", -60, 100, Rag.RED),
                ],
            )
        ]
    }

    moved = largest_movements(groups, minimum_sample=30, count=5)

    assert [m.row.kpi for m in moved] == ["service_level", "csat"]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/kpi/%00",
        "/dashboard/kpi/csat?service_area=%3Cscript%3E",
        "/dashboard/kpi/csat?channel=" + "x" * 5000,
        "/dashboard/kpi/csat?period=",
        "/dashboard/committee?quarter=9999-00-Q1",
        "/dashboard/committee?quarter=0001Q1",
        "/dashboard/committee?quarter=%F0%9F%92%A5",
        "/dashboard?period=%00",
        "/dashboard/static/%2e%2e%2fcontext.py",
    ],
)
async def test_hostile_input_is_answered_4xx_never_500(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=MANAGER)

    assert 400 <= response.status_code < 500, response.text
    assert "<script>" not in response.text


async def test_a_hostile_sign_in_body_is_refused_politely(client: httpx.AsyncClient) -> None:
    for body in (b"\xff\xfe\x00", b"token=" + b"A" * 100_000, b"token=a&token=b", b""):
        response = await client.post("/dashboard/sign-in", content=body)
        assert response.status_code == 401
