"""The metrics service's operational side on real Kafka and PostgreSQL: surges, gauges,
dead letters and the ops-only pipeline view."""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families

from shared.events.metrics import SurgeDetected
from shared.events.vocabulary import Channel
from shared.kafka import make_broker, publish_events
from shared.topics import CONTACTS, METRICS
from tests.support.kafka import kcat_produce, read_to_end, read_topic
from tests.support.metrics import MANAGER, OPS, Events, RunningMetrics, running_metrics, utc_at
from tests.support.outbox import outbox_drained

pytestmark = pytest.mark.integration
TODAY = date(2025, 3, 10)
NOW = datetime(2025, 3, 10, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
async def metrics(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningMetrics]:
    async with running_metrics(kafka_bootstrap, database_url, NOW) as running:
        yield running


@pytest.fixture(scope="module")
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(kafka_bootstrap, client_id="test-metrics-operations")
    await broker.start()
    yield broker
    await broker.stop()


async def samples(metrics: RunningMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await metrics.client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def gauge_until(
    metrics: RunningMetrics,
    name: str,
    labels: dict[str, str],
    holds: Callable[[float], bool],
    *,
    within: float = 30,
) -> float:
    """The gauge's value once `holds(value)`; fails if it never does within `within` s."""
    key = (name, frozenset(labels.items()))
    deadline = asyncio.get_running_loop().time() + within
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = (await samples(metrics)).get(key)
        if value is not None and holds(value):
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}{labels} never held its condition in {within} s: last {value}")


async def test_a_surge_publishes_surge_detected_once_and_sets_the_gauge(
    metrics: RunningMetrics, broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    events = Events()
    burst = [
        events.received(f"burst-{n}", utc_at(TODAY, 8, n), channel=Channel.WEB, area="licensing")
        for n in range(25)
    ]
    more = [
        events.received(f"more-{n}", utc_at(TODAY, 10, n), channel=Channel.WEB, area="licensing")
        for n in range(10)
    ]
    surge_id = f"licensing:contacts_received:{TODAY.isoformat()}"

    await publish_events(broker, CONTACTS, burst)
    active = await gauge_until(
        metrics,
        "metrics_surge_active",
        {"service_area": "licensing", "measure": "contacts_received"},
        lambda value: value == 1,
    )
    await publish_events(broker, CONTACTS, more)
    counted = await gauge_until(
        metrics,
        "metrics_kpi_today",
        {"kpi": "contacts_received", "service_area": "licensing", "channel": "all"},
        lambda value: value >= 35,
    )
    await outbox_drained(metrics.settings.database_url, "metrics")
    records = await read_to_end(kafka_bootstrap, METRICS.name)
    surges = [
        SurgeDetected.model_validate_json(r.value)
        for r in records
        if b'"SurgeDetected"' in r.value and surge_id.encode() in r.value
    ]

    assert active == 1
    assert counted == 35
    assert len({s.event_id for s in surges}) == 1  # once per surge, however many events follow
    assert surges[0].payload.count > surges[0].payload.threshold == 20  # the minimum count


async def test_a_surge_that_began_in_replayed_history_is_raised_once_when_it_reaches_today(
    metrics: RunningMetrics, broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    # A backfill: five days of a growing highways surge arrive at once, the
    # first four too old to alert on. The surge is still going on, so it is
    # raised once, under the id of its first day. (Each day stays far above a
    # baseline that includes the days before it.)
    events = Events()
    first_day = TODAY - timedelta(days=4)
    daily = [30, 40, 50, 60, 80]
    backfill = [
        events.received(
            f"backfill-{offset}-{n}",
            utc_at(first_day + timedelta(days=offset), 9) + timedelta(seconds=n),
            channel=Channel.WEB,
            area="highways",
        )
        for offset, count in enumerate(daily)
        for n in range(count)
    ]
    surge_id = f"highways:contacts_received:{first_day.isoformat()}"

    await publish_events(broker, CONTACTS, backfill)
    counted = await gauge_until(
        metrics,
        "metrics_kpi_today",
        {"kpi": "contacts_received", "service_area": "highways", "channel": "all"},
        lambda value: value >= daily[-1],
    )
    records = await read_topic(
        kafka_bootstrap,
        METRICS.name,
        until=lambda rs: any(surge_id.encode() in r.value for r in rs),
        within_seconds=15,
    )
    surges = [
        SurgeDetected.model_validate_json(r.value)
        for r in records
        if b'"SurgeDetected"' in r.value and b"highways" in r.value
    ]

    assert counted == daily[-1]
    assert {s.surge_id for s in surges} == {surge_id}
    assert len({s.event_id for s in surges}) == 1


async def test_an_undecodable_record_is_dead_lettered_and_counted_in_the_gauge(
    metrics: RunningMetrics, kafka_bootstrap: str
) -> None:
    # civicpulse.metrics: only this service consumes it, so no other test sees the record.
    topic = f"{METRICS.name}.dead-letter"
    before = await gauge_until(metrics, "metrics_dead_letters", {"topic": topic}, lambda _: True)
    assert before is not None

    await asyncio.to_thread(kcat_produce, kafka_bootstrap, METRICS.name, b"not an event")
    after = await gauge_until(
        metrics, "metrics_dead_letters", {"topic": topic}, lambda value: value > before
    )

    assert after is not None
    assert after > before


async def test_pipeline_gauges_report_lag_applied_events_and_last_event_age(
    metrics: RunningMetrics, broker: KafkaBroker
) -> None:
    events = Events()
    await publish_events(
        broker,
        CONTACTS,
        [events.received("one", NOW, channel=Channel.PHONE, area="highways", wait=3)],
    )

    lag = await gauge_until(
        metrics, "metrics_consumer_lag_records", {"topic": CONTACTS.name}, lambda v: v == 0
    )
    age = await gauge_until(
        metrics, "metrics_last_event_age_seconds", {"topic": CONTACTS.name}, lambda v: v >= 0
    )
    applied = await gauge_until(
        metrics, "metrics_events_applied", {"topic": CONTACTS.name}, lambda v: v >= 1
    )

    assert lag == 0
    assert age is not None
    assert applied is not None


async def test_the_pipeline_view_is_for_ops_only(metrics: RunningMetrics) -> None:
    as_ops = await metrics.client.get("/v1/pipeline", headers=OPS)
    as_manager = await metrics.client.get("/v1/pipeline", headers=MANAGER)

    assert as_ops.status_code == 200
    assert {t["topic"] for t in as_ops.json()["topics"]} >= {CONTACTS.name}
    assert as_manager.status_code == 403


async def test_healthz_is_ok_when_kafka_and_postgres_answer(metrics: RunningMetrics) -> None:
    response = await metrics.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kafka": True, "postgres": True}
