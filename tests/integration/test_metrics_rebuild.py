"""A rebuild by replay on real Kafka and PostgreSQL equals the live counting, row for row.

The replay carries counter increments across batches until the switch
(`services.metrics.rebuild`, `CARRY_CELLS`); here the batches are tiny and the carry
is written every few counters, so re-contacts, transfers and surges all cross batch
and carry boundaries. The live side is the live consumer's path, batch by batch, in
the order the events were sent; the expected figures are worked out from what was
sent, independently of either.

DOMAIN.md, KPIs: "First contact resolution: contacts resolved at first contact with no
transfer and no re-contact from the same customer about the same service area within a
window (7 days by default) / contacts received (enquiries and service requests)."
"""

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from civicpulse.infra import scratch_database
from services.metrics import rebuild as rebuild_module
from services.metrics.applier import BatchApplier, LiveConsumer
from services.metrics.domain import Rules
from services.metrics.rebuild import rebuild
from services.metrics.store import MIGRATIONS, MetricsStore
from shared.events import Event
from shared.events.catalogue import topic_for
from shared.events.complaints import ComplaintAcknowledged, ComplaintOpened
from shared.events.vocabulary import Channel, ComplaintProcedure
from shared.kafka import make_broker, publish_events
from shared.postgres import create_pool, migrate
from shared.topics import CANONICAL_TOPICS, CONTACTS
from tests.support.infrastructure import Infrastructure
from tests.support.kafka import end_offsets
from tests.support.metrics import Events, utc_at

pytestmark = pytest.mark.integration
FIRST_DAY = date(2025, 3, 3)
SURGE_DAY = FIRST_DAY + timedelta(days=29)
NOW = datetime(2025, 5, 1, tzinfo=UTC)
RULES = Rules()
APPLIER = BatchApplier(rules=RULES, clock=lambda: NOW, publish_surges=False)
# Tables of a generation, the columns compared, and which rows are this test's (the
# broker is shared: another test's events may be replayed too). A surge's count,
# baseline and threshold are the figures of the batch that found it: left out.
MONTHS = "'2025-03-01' AND '2025-04-30'"
COMPARED = {
    "metrics_aggregates": (
        "day, measure, service_area, channel, round(value::numeric, 9)",
        f"day BETWEEN {MONTHS}",
    ),
    "metrics_monthly": (
        "month, measure, service_area, channel, round(value::numeric, 9)",
        f"month BETWEEN {MONTHS}",
    ),
    "metrics_rollups": (
        "breakdown, grain, start, service_area, channel, measure, round(value::numeric, 9)",
        f"start BETWEEN {MONTHS}",
    ),
    "metrics_contact_facts": (
        "contact_id, customer_ref, day, candidate, lost, transfers",
        "contact_id LIKE $2",
    ),
    "metrics_complaint_facts": ("complaint_id, channel, stage, open", "complaint_id LIKE $2"),
    "metrics_complaint_outcomes": (
        "complaint_id, stage, deadline, on_time",
        "complaint_id LIKE $2",
    ),
    "metrics_complaint_deadlines": (
        "complaint_id, stage, deadline, breached, done",
        "complaint_id LIKE $2",
    ),
    "metrics_surges": ("service_area, measure, day, surge_id", f"day BETWEEN {MONTHS}"),
}


def stream(events: Events) -> tuple[list[Event], int]:
    """Contacts over 30 days with re-contacts (inside and outside the window), transfers,
    a surge day and complaints; and how many FCR candidates lose their FCR.

    Customer c<n> writes every 3 days about waste, resolved each time: each contact but
    the last is re-contacted within 7 days (lost), the last is not. Customer d<n> writes
    twice 10 days apart (kept). Every 5th first contact of c<n> is transferred later.
    """
    sent: list[Event] = []
    lost = 0
    for n in range(12):
        days = list(range(n % 3, 30, 3))
        for i, offset in enumerate(days):
            name = f"c{n}-{i}"
            when = utc_at(FIRST_DAY + timedelta(days=offset), 9 + n % 8)
            sent.append(
                events.received(
                    name, when, channel=Channel.WEB, area="waste", customer=f"c{n}", resolved=True
                )
            )
            if i == 0 and n % 5 == 0:
                sent.append(events.transferred(name, when + timedelta(hours=1), area="waste"))
            lost += 1 if i < len(days) - 1 or (i == 0 and n % 5 == 0) else 0
        for i, offset in enumerate((0, 10)):
            sent.append(
                events.received(
                    f"d{n}-{i}",
                    utc_at(FIRST_DAY + timedelta(days=offset + n), 11),
                    channel=Channel.PHONE,
                    area="planning",
                    customer=f"d{n}",
                    resolved=True,
                    wait=float(n),
                )
            )
    # Two a day on housing for 29 days, then 30 on one day: a surge (threshold 20).
    for offset in range(29):
        for k in range(2):
            when = utc_at(FIRST_DAY + timedelta(days=offset), 10 + k)
            sent.append(
                events.received(f"h{offset}-{k}", when, channel=Channel.EMAIL, area="housing")
            )
    for k in range(30):
        when = utc_at(SURGE_DAY, 8) + timedelta(minutes=k)
        sent.append(events.received(f"s{k}", when, channel=Channel.EMAIL, area="housing"))
    for n in range(6):
        opened = utc_at(FIRST_DAY + timedelta(days=n), 12)
        sent.append(
            events.complaint(
                f"k{n}",
                opened,
                ComplaintOpened,
                procedure=ComplaintProcedure.CORPORATE,
                channel=Channel.WEB,
                service_area="waste",
            )
        )
        sent.append(
            events.complaint(
                f"k{n}",
                opened + timedelta(days=n),
                ComplaintAcknowledged,
                service_area="waste",
                stage=1,
            )
        )
    return sent, lost


@pytest.fixture
async def pool(infrastructure: Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: these tests switch generations."""
    name = f"civicpulse_rebuild_{uuid.uuid4().hex[:8]}"
    async with scratch_database(infrastructure.database_url, name) as url:
        pool = await create_pool(url)
        await migrate(pool, "metrics", MIGRATIONS)
        yield pool
        await pool.close()


@pytest.fixture(scope="module")
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(kafka_bootstrap, client_id="test-metrics-rebuild")
    await broker.start()
    yield broker
    await broker.stop()


async def publish(broker: KafkaBroker, events: Sequence[Event]) -> None:
    for topic in CANONICAL_TOPICS:
        ours = [e for e in events if topic_for(type(e)) == topic]
        if ours:
            await publish_events(broker, topic, ours)


async def publish_garbage(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(CONTACTS.name, b'{"event_type": "ContactReceived"', b"junk")
    finally:
        await producer.stop()


async def count_live(store: MetricsStore, events: Sequence[Event], chunk: int) -> None:
    consumer = LiveConsumer(store, APPLIER)
    for first in range(0, len(events), chunk):
        await consumer.handle(events[first : first + chunk])


async def rows(
    pool: asyncpg.Pool, generation: int, events: Events
) -> dict[str, list[tuple[Any, ...]]]:
    result = {}
    for table, (columns, ours) in COMPARED.items():
        records = await pool.fetch(
            f"SELECT {columns} FROM {table} WHERE generation = $1 AND ({ours})"
            f" AND $2::text IS NOT NULL",
            generation,
            f"{events.prefix}-%",
        )
        result[table] = sorted(tuple(r) for r in records)
    return result


async def sent_and_offsets(
    kafka_bootstrap: str, broker: KafkaBroker, events: Events
) -> tuple[list[Event], int, dict[TopicPartition, int]]:
    start = await end_offsets(kafka_bootstrap, [t.name for t in CANONICAL_TOPICS])
    sent, lost = stream(events)
    await publish(broker, sent)
    await publish_garbage(kafka_bootstrap)
    return sent, lost, start


async def test_a_rebuild_in_small_batches_with_a_small_carry_equals_the_live_counting(
    pool: asyncpg.Pool,
    kafka_bootstrap: str,
    topics: None,
    broker: KafkaBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = Events()
    sent, lost, start = await sent_and_offsets(kafka_bootstrap, broker, events)
    store = MetricsStore(pool)
    await count_live(store, sent, chunk=25)
    monkeypatch.setattr(rebuild_module, "CARRY_CELLS", 10)  # written every batch or two
    lines: list[str] = []

    result = await rebuild(
        pool, kafka_bootstrap, APPLIER, progress=lines.append, start_offsets=start, batch=16
    )

    live, rebuilt = (
        await rows(pool, result.previous_generation, events),
        await rows(pool, result.generation, events),
    )
    assert (result.previous_generation, result.generation) == (1, 2)
    assert await store.live_generation() == 2
    # At least: another test may have published to the shared broker meanwhile.
    assert result.events_read >= len(sent) + 1
    assert result.events_applied >= len(sent)
    assert result.records_skipped >= 1  # the undecodable record, skipped
    assert rebuilt == live
    facts = rebuilt["metrics_contact_facts"]
    assert sum(1 for f in facts if f[4]) == lost  # lost: worked out from what was sent
    assert [s[2] for s in rebuilt["metrics_surges"]] == [SURGE_DAY]
    assert len(sent) > 16 * 10  # many batches, so re-contacts cross batch boundaries


class FailingApplier(BatchApplier):
    """Fails on its `fail_at`th batch, as a crash or a lost database would."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(rules=RULES, clock=lambda: NOW, publish_surges=False)
        self.fail_at = fail_at
        self.batches = 0

    async def apply(
        self, store: MetricsStore, generation: int, events: Sequence[Event], **kwargs: Any
    ) -> int:
        self.batches += 1
        if self.batches == self.fail_at:
            raise ConnectionError("database went away")
        return await super().apply(store, generation, events, **kwargs)


async def test_a_rebuild_that_fails_midway_leaves_the_live_generation_serving(
    pool: asyncpg.Pool, kafka_bootstrap: str, topics: None, broker: KafkaBroker
) -> None:
    events = Events()
    sent, _, start = await sent_and_offsets(kafka_bootstrap, broker, events)
    store = MetricsStore(pool)
    await count_live(store, sent, chunk=40)
    live = await rows(pool, 1, events)

    with pytest.raises(ConnectionError):
        await rebuild(
            pool,
            kafka_bootstrap,
            FailingApplier(fail_at=5),
            progress=print,
            start_offsets=start,
            batch=16,
        )

    assert await store.live_generation() == 1
    assert await rows(pool, 1, events) == live
    states = await pool.fetch("SELECT generation, state FROM metrics_generations ORDER BY 1")
    assert [tuple(s) for s in states] == [(1, "live"), (2, "building")]
    assert (
        await pool.fetchval("SELECT count(*) FROM metrics_contact_facts WHERE generation = 2") > 0
    )  # its first batches were written, and are dropped by the next rebuild

    result = await rebuild(pool, kafka_bootstrap, APPLIER, progress=print, start_offsets=start)

    # The unfinished generation's rows and processed-event records went first (its
    # number is taken again): left over, they would add to the counters or hide events.
    assert (result.previous_generation, result.generation) == (1, 2)
    assert await store.live_generation() == 2
    assert await rows(pool, 2, events) == live
