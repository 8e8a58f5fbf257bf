"""The metrics service on real Kafka and PostgreSQL: a known day gives hand-computed KPIs.

The day's events (tests/support/metrics.py `known_day`) are published straight
to the canonical topics, as intake, complaints and feedback publish them.
Worked by hand:

- FCR: eligible c1 c2 c3 c4 c5 c7 = 6; resolved first time with no transfer
  c1 c3 c5 c7, less c3 (re-contacted by c4) and c7 (transferred later) = 2.
- Calls answered c1 c2 c6 c7 = 4; transferred c2 c7 = 2 (c2 twice: 3 transfers);
  abandoned a1 a2 = 2, so offered 6; waits 10+30+5+50 = 95; within 20 s: c1 c6.
- Complaints (corporate): stage 1 k1 k2, stage 2 k1; acknowledgements on time
  k1 s1, k1 s2, late k2 s1; responses on time 3 of 3; outcomes upheld,
  partly upheld, not upheld; one Ombudsman referral; k3 is statutory.
- Surveys: 4 requested, answers 5/7, 3/4, 4/2, one expired.
"""

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pypdf
import pytest
from faststream.kafka import KafkaBroker

from services.metrics.applier import BatchApplier
from services.metrics.formatting import area_title
from services.metrics.rebuild import rebuild
from shared.events import Event
from shared.events.catalogue import topic_for
from shared.kafka import make_broker, publish_events
from shared.postgres import create_pool
from shared.topics import CANONICAL_TOPICS
from shared.vocabulary import load_service_areas
from tests.support.metrics import (
    MANAGER,
    Events,
    RunningMetrics,
    known_day,
    running_metrics,
)

pytestmark = pytest.mark.integration
DAY = date(2025, 2, 11)
NOW = datetime(2025, 2, 20, 12, tzinfo=UTC)  # the FCR window of DAY has passed


@pytest.fixture(scope="module")
async def metrics(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningMetrics]:
    async with running_metrics(
        kafka_bootstrap, database_url, NOW, metrics_minimum_sample=5
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(kafka_bootstrap, client_id="test-metrics-publisher")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(scope="module")
async def day_events() -> list[Event]:
    return known_day(Events(), DAY)


async def publish(broker: KafkaBroker, events: list[Event]) -> None:
    for topic in {topic_for(type(event)) for event in events}:
        await publish_events(broker, topic, [e for e in events if topic_for(type(e)) == topic])


async def kpis(metrics: RunningMetrics, **params: Any) -> dict[str, dict[str, Any]]:
    response = await metrics.client.get(
        "/v1/kpis", params={"from": DAY.isoformat(), "period": "day", **params}, headers=MANAGER
    )
    assert response.status_code == 200, response.text
    return {row["kpi"]: row for row in response.json()["kpis"]}


async def body(metrics: RunningMetrics, **params: Any) -> dict[str, Any]:
    response = await metrics.client.get(
        "/v1/kpis", params={"from": DAY.isoformat(), "period": "day", **params}, headers=MANAGER
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def until_counted(metrics: RunningMetrics, contacts: float, *, within: float = 30) -> None:
    """Wait until the day's aggregates hold `contacts` contacts and all 4 survey requests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        rows = await kpis(metrics)
        if (
            rows["contacts_received"]["value"] == contacts
            and rows["survey_response_rate"]["denominator"] == 4
            and rows["complaints_received_stage_2"]["value"] == 1
            and rows["mystery_shop_score"]["denominator"] == 2
        ):
            await asyncio.sleep(1.0)  # let any stragglers of a redelivery land too
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not counted within {within} s: {await kpis(metrics)}")


EXPECTED: dict[str, tuple[float, float, float | None]] = {
    "first_contact_resolution": (2 / 6, 2, 6),
    "answered_first_time_by_right_team": (2 / 4, 2, 4),
    "transfer_rate": (2 / 4, 2, 4),
    "average_transfers_per_call": (3 / 4, 3, 4),
    "abandoned_call_rate": (2 / 6, 2, 6),
    "average_speed_of_answer": (95 / 4, 95, 4),
    "service_level": (2 / 6, 2, 6),
    "contacts_received": (7, 7, None),
    "compliments_received": (1, 1, None),
    "complaints_received_stage_1": (2, 2, None),
    "complaints_received_stage_2": (1, 1, None),
    "complaints_acknowledged_within_target": (2 / 3, 2, 3),
    "complaints_responded_within_target": (1.0, 3, 3),
    "complaint_escalation_rate": (1 / 2, 1, 2),
    "complaints_upheld": (1 / 3, 1, 3),
    "complaints_partly_upheld": (1 / 3, 1, 3),
    "complaints_not_upheld": (1 / 3, 1, 3),
    "complaint_deadline_breaches": (1, 1, None),
    "ombudsman_referrals": (1, 1, None),
    "statutory_ombudsman_referrals": (0, 0, None),
    "statutory_complaints_received": (1, 1, None),
    "csat": (2 / 3, 2, 3),
    "average_ease": (13 / 3, 13, 3),
    "survey_response_rate": (3 / 4, 3, 4),
    "mystery_shop_score": (80.0, 160, 2),
}


def figures(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[float | None, float, float | None]]:
    return {
        name: (
            None if row["value"] is None else round(row["value"], 9),
            row["numerator"],
            row["denominator"],
        )
        for name, row in rows.items()
    }


def rounded(expected: dict[str, tuple[float, float, float | None]]) -> dict[str, Any]:
    return {name: (round(v, 9), n, d) for name, (v, n, d) in expected.items()}


async def test_a_day_of_known_events_gives_the_kpis_worked_out_by_hand(
    metrics: RunningMetrics, broker: KafkaBroker, day_events: list[Event]
) -> None:
    await publish(broker, day_events)
    await until_counted(metrics, 7)

    rows = await kpis(metrics)

    assert figures(rows) == rounded(EXPECTED)
    assert rows["first_contact_resolution"]["provisional"] is False
    assert rows["first_contact_resolution"]["rag"] == "red"  # 33% against 75%, 6 ≥ 5 observed
    assert rows["csat"]["rag"] == "insufficient_data"  # 3 answers < minimum sample 5
    assert rows["contacts_received"]["previous_value"] == 0


async def test_the_same_events_delivered_twice_give_the_same_values(
    metrics: RunningMetrics, broker: KafkaBroker, day_events: list[Event]
) -> None:
    await publish(broker, day_events)
    await publish(broker, list(reversed(day_events)))
    await until_counted(metrics, 7)

    assert figures(await kpis(metrics)) == rounded(EXPECTED)


async def test_kpis_filter_by_service_area_and_channel(metrics: RunningMetrics) -> None:
    planning_phone = await kpis(metrics, service_area="planning", channel="phone")
    web = await kpis(metrics, channel="web")
    letters = await kpis(metrics, channel="letter")
    planning = await kpis(metrics, service_area="planning")

    assert planning_phone["abandoned_call_rate"]["value"] == 1 / 4  # a1 of c1 c2 c7 a1
    assert web["first_contact_resolution"]["value"] == 0.0  # c3 re-contacted, c4 unresolved
    assert letters["first_contact_resolution"]["value"] is None  # no data is null, not 0%
    assert letters["first_contact_resolution"]["denominator"] == 0
    assert planning["csat"]["target"] == "TBA"
    assert planning["csat"]["rag"] is None


async def test_open_complaints_are_counted_by_scope_and_stage(metrics: RunningMetrics) -> None:
    result = await body(metrics)

    open_now = {(o["scope"], o["stage"]): o["count"] for o in result["open_complaints"]}
    assert open_now[("corporate", 2)] >= 1  # k1 (other runs' complaints may be open too)
    assert open_now[("statutory", 1)] >= 1  # k3


async def test_fcr_of_a_day_inside_the_re_contact_window_is_provisional(
    metrics: RunningMetrics,
) -> None:
    recent = await kpis(metrics, **{"from": "2025-02-14"})

    assert recent["first_contact_resolution"]["provisional"] is True


async def test_series_gives_one_point_per_period(metrics: RunningMetrics) -> None:
    response = await metrics.client.get(
        "/v1/kpis/first_contact_resolution/series",
        params={"from": "2025-02-10", "to": "2025-02-12", "period": "day"},
        headers=MANAGER,
    )

    assert response.status_code == 200
    points = response.json()["points"]
    assert [(p["label"], p["value"]) for p in points] == [
        ("2025-02-10", None),
        ("2025-02-11", 2 / 6),
        ("2025-02-12", None),
    ]


async def test_an_unknown_service_area_is_a_422_naming_the_field(metrics: RunningMetrics) -> None:
    response = await metrics.client.get(
        "/v1/kpis", params={"service_area": "parking"}, headers=MANAGER
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "service_area"]


async def test_committee_report_groups_services_in_json_csv_and_html(
    metrics: RunningMetrics,
) -> None:
    quarter = {"quarter": "2025Q1"}
    as_json = await metrics.client.get("/v1/reports/committee", params=quarter, headers=MANAGER)
    as_csv = await metrics.client.get(
        "/v1/reports/committee", params={**quarter, "format": "csv"}, headers=MANAGER
    )
    as_html = await metrics.client.get(
        "/v1/reports/committee", params={**quarter, "format": "html"}, headers=MANAGER
    )

    assert as_json.status_code == 200
    groups = as_json.json()["groups"]
    planning = [s for s in groups["further_work_required"] if s["service_area"] == "planning"]
    assert planning, groups  # FCR 2 of 6 against a target of 75% is red
    assert as_json.json()["financial_quarter"] == "Q4 2024/25"
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "planning,further_work_required,first_contact_resolution" in as_csv.text
    assert as_html.headers["content-type"].startswith("text/html")
    assert 'data-chart="trend-1-spec"' in as_html.text  # Vega-Lite charts, drawn by vega-embed
    assert "Executive summary" in as_html.text
    assert "Further work required" in as_html.text


async def test_rebuild_by_replay_gives_the_same_values_as_the_live_path(
    metrics: RunningMetrics, database_url: str
) -> None:
    live = await kpis(metrics)
    pool = await create_pool(database_url)
    lines: list[str] = []
    try:
        applier = BatchApplier(
            rules=metrics.settings.rules, clock=lambda: NOW, publish_surges=False
        )
        result = await rebuild(
            pool,
            metrics.settings.kafka_bootstrap,
            applier,
            progress=lines.append,
            topics=CANONICAL_TOPICS,
            start_offsets=metrics.start_offsets,
        )
        rebuilt = await kpis(metrics)
        live_rows = await _aggregates(pool, result.previous_generation)
        rebuilt_rows = await _aggregates(pool, result.generation)
    finally:
        await pool.close()

    assert result.generation > result.previous_generation
    assert (await body(metrics))["generation"] == result.generation
    assert figures(rebuilt) == figures(live) == rounded(EXPECTED)
    assert rebuilt_rows == live_rows
    assert any("is live" in line for line in lines)


async def _aggregates(pool: asyncpg.Pool, generation: int) -> dict[tuple[Any, ...], float]:
    """The day's daily counters and its month's monthly sums."""
    rows = await pool.fetch(
        "SELECT 'day' AS kind, day, measure, service_area, channel, value"
        " FROM metrics_aggregates WHERE generation = $1 AND day = $2"
        " UNION ALL SELECT 'month', month, measure, service_area, channel, value"
        " FROM metrics_monthly WHERE generation = $1 AND month = $3",
        generation,
        DAY,
        DAY.replace(day=1),
    )
    return {
        (r["kind"], r["day"], r["measure"], r["service_area"], r["channel"]): round(r["value"], 9)
        for r in rows
    }


async def test_the_month_still_running_is_compared_with_as_many_days_before(
    metrics: RunningMetrics,
) -> None:
    """DOMAIN.md, KPIs: "a period still running is compared with the same number of
    elapsed days of the one before, never with the whole of it." NOW is 20 February."""
    month = await metrics.client.get("/v1/kpis", params={"period": "month"}, headers=MANAGER)
    series = await metrics.client.get(
        "/v1/kpis/contacts_received/series", params={"period": "month"}, headers=MANAGER
    )

    assert month.status_code == 200
    result = month.json()
    assert (result["partial"], result["compared_days"]) == (True, 20)
    assert (result["previous_start"], result["previous_end"]) == ("2025-01-01", "2025-01-20")
    points = series.json()["points"]
    assert (points[-1]["label"], points[-1]["partial"]) == ("2025-02", True)
    assert points[-2]["partial"] is False


async def test_an_unknown_kpi_is_a_422_naming_it(metrics: RunningMetrics) -> None:
    response = await metrics.client.get("/v1/kpis/happiness/series", headers=MANAGER)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "kpi"]


async def test_the_committee_report_defaults_to_the_last_complete_quarter(
    metrics: RunningMetrics,
) -> None:
    default = await metrics.client.get("/v1/reports/committee", headers=MANAGER)
    financial = await metrics.client.get(
        "/v1/reports/committee", params={"quarter": "2024-25-Q4"}, headers=MANAGER
    )
    bad = await metrics.client.get(
        "/v1/reports/committee", params={"quarter": "2024-26-Q4"}, headers=MANAGER
    )

    assert default.status_code == 200
    assert (default.json()["quarter"], default.json()["financial_quarter"]) == (
        "2024-25-Q3",
        "Q3 2024/25",
    )
    assert financial.json()["start"] == "2025-01-01"
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "quarter"]


async def test_the_committee_pdf_has_its_title_page_numbers_and_every_service_name(
    metrics: RunningMetrics,
) -> None:
    response = await metrics.client.get(
        "/v1/reports/committee",
        params={"quarter": "2024-25-Q4", "format": "pdf"},
        headers=MANAGER,
        timeout=120,
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(response.content))
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    assert "Customer service performance, Q4 2024/25" in text
    assert f"Page 1 of {len(reader.pages)}" in text
    assert "printed 20 February 2025" in text
    for area in load_service_areas(metrics.settings.vocabulary_file):
        assert area_title(area) in text, area


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/kpi/first_contact_resolution?service_area=planning",
        "/dashboard/complaints",
        "/dashboard/satisfaction",
    ],
)
async def test_every_dashboard_page_answers_with_a_token_and_asks_for_one_without(
    metrics: RunningMetrics, path: str
) -> None:
    signed_in = await metrics.client.get(path, headers=MANAGER)
    anonymous = await metrics.client.get(path)

    assert signed_in.status_code == 200
    assert "<h1>" in signed_in.text
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
