"""The KPI cache and the rollups behind `GET /v1/kpis`, on the in-memory fake and on PostgreSQL.

Issue 15: "a cache keyed by the query and the store's applied-generation/high-water mark
(invalidated exactly when new events are applied, never serving stale figures after a
write commits - prove it with a test)". DOMAIN.md, KPIs: "Each KPI is defined once ...
per service area and per channel, and can be recomputed from the event history", so the
rollups must sum exactly what the cells hold, whatever the filters.

Expected counts come from the events each test sends, never from what was stored.
"""

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from civicpulse.infra import scratch_database
from services.metrics.applier import BatchApplier
from services.metrics.domain import Rules
from services.metrics.kpi_cache import KpiTotalsCache
from services.metrics.periods import DateRange
from services.metrics.store import MIGRATIONS, KpiTotals, MetricsStore
from shared.events import Event
from shared.events.contacts import ContactReceived
from shared.events.vocabulary import Channel
from shared.postgres import create_pool, migrate
from tests.support.fake_metrics_store import FakeMetricsStore
from tests.support.metrics import Events, utc_at

JUNE = DateRange(date(2024, 6, 1), date(2024, 6, 30))
MAY = DateRange(date(2024, 5, 1), date(2024, 5, 31))
APPLIER = BatchApplier(
    rules=Rules(), clock=lambda: datetime(2024, 7, 1, tzinfo=UTC), publish_surges=False
)
AREAS = ("waste", "housing", "planning")
CHANNELS = (Channel.PHONE, Channel.WEB, Channel.EMAIL)


@pytest.fixture(scope="module")
async def cache_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_database(database_url, f"civicpulse_kpicache_{uuid.uuid4().hex[:8]}") as url:
        pool = await create_pool(url)
        await migrate(pool, "metrics", MIGRATIONS)
        yield pool
        await pool.close()


@pytest.fixture
async def postgres_store(cache_pool: asyncpg.Pool) -> MetricsStore:
    """The freshly migrated state: generation 1 live, nothing counted."""
    await cache_pool.execute(
        "TRUNCATE metrics_aggregates, metrics_monthly, metrics_rollups, metrics_contact_facts,"
        " metrics_complaint_facts, metrics_topic_progress, processed_events"
    )
    await cache_pool.execute("UPDATE metrics_current SET generation = 1")
    await cache_pool.execute("DELETE FROM metrics_generations WHERE generation <> 1")
    await cache_pool.execute("UPDATE metrics_generations SET state = 'live'")
    return MetricsStore(cache_pool)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MetricsStore:
    if request.param == "fake":
        return FakeMetricsStore()
    postgres: MetricsStore = request.getfixturevalue("postgres_store")
    return postgres


async def apply(store: MetricsStore, *batches: Sequence[Event]) -> None:
    for batch in batches:
        async with store.transaction() as tx:
            await APPLIER.apply(tx, await tx.live_generation(lock=True), batch)


def contacts(events: Events, count: int, day: date, prefix: str) -> list[ContactReceived]:
    return [
        events.received(f"{prefix}{n}", utc_at(day, 10), channel=Channel.WEB, area="waste")
        for n in range(count)
    ]


async def counted(cache: KpiTotalsCache, store: MetricsStore, **filters: str) -> float:
    totals = await cache.kpi_totals(
        store,
        JUNE,
        MAY,
        service_area=filters.get("service_area"),
        channel=filters.get("channel"),
    )
    return totals.current.get("contacts_received", 0.0)


async def test_a_batch_committed_after_a_read_is_counted_by_the_next_read(
    store: MetricsStore,
) -> None:
    events = Events()
    cache = KpiTotalsCache()
    await apply(store, contacts(events, 3, date(2024, 6, 3), "a"))

    assert await counted(cache, store) == 3
    assert await counted(cache, store) == 3
    assert (cache.hits, cache.misses) == (1, 1)  # nothing applied between: no second read

    await apply(store, contacts(events, 2, date(2024, 6, 20), "b"))
    assert await counted(cache, store) == 5  # the commit moved the mark: read afresh
    assert cache.misses == 2


async def test_a_redelivered_batch_keeps_the_mark_and_the_figures(store: MetricsStore) -> None:
    events = Events()
    cache = KpiTotalsCache()
    batch = contacts(events, 4, date(2024, 6, 3), "a")
    await apply(store, batch)
    first = await store.applied_mark()
    assert await counted(cache, store) == 4

    await apply(store, batch)  # every event a duplicate: nothing counted, nothing written

    assert await store.applied_mark() == first
    assert await counted(cache, store) == 4
    assert cache.hits == 1


async def test_a_batch_committing_while_a_read_misses_is_kept_under_its_own_mark(
    store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark is read, a batch commits, then the sums are read: they include the batch,
    and are kept under the mark of their own snapshot, so a read after the commit is a
    hit with the batch counted, never the figures from before it."""
    events = Events()
    await apply(store, contacts(events, 1, date(2024, 6, 3), "a"))
    before = await store.applied_mark()

    late = contacts(events, 6, date(2024, 6, 4), "late")
    read_mark = store.applied_mark

    async def mark_then_commit() -> tuple[int, int]:
        mark = await read_mark()
        await apply(store, late)
        return mark

    cache = KpiTotalsCache()
    monkeypatch.setattr(store, "applied_mark", mark_then_commit)
    assert await counted(cache, store) == 7
    monkeypatch.undo()

    after = await store.applied_mark()
    assert after != before
    assert await counted(cache, store) == 7
    assert (cache.hits, cache.misses) == (1, 1)


async def test_a_generation_switch_reads_the_new_generation(store: MetricsStore) -> None:
    events = Events()
    cache = KpiTotalsCache()
    await apply(store, contacts(events, 2, date(2024, 6, 3), "a"))
    assert await counted(cache, store) == 2

    generation = await store.start_generation()
    replayed = contacts(events, 2, date(2024, 6, 3), "a")[:1]  # a replay that saw less
    async with store.transaction() as tx:
        await APPLIER.apply(tx, generation, replayed)
    await store.switch_generation(generation)

    totals: KpiTotals = await cache.kpi_totals(store, JUNE, MAY, service_area=None, channel=None)
    assert totals.generation == generation
    assert totals.current["contacts_received"] == 1


async def test_every_filter_sums_what_was_sent_over_whole_months_and_odd_days(
    store: MetricsStore,
) -> None:
    """Rollups (all areas, one area, one channel) and cells (area and channel) agree
    with a count of the events sent, over spans with whole months and ragged ends."""
    events = Events()
    rng = random.Random(15)
    start = date(2024, 3, 20)
    sent = [
        events.received(
            f"c{n}",
            utc_at(start + timedelta(days=rng.randrange(120)), 11),
            channel=rng.choice(CHANNELS),
            area=rng.choice(AREAS),
        )
        for n in range(300)
    ]
    await apply(store, sent[:100], sent[100:250], sent[250:])
    spans = [
        DateRange(date(2024, 3, 25), date(2024, 6, 10)),  # odd days, whole April and May
        DateRange(date(2024, 4, 1), date(2024, 6, 30)),  # whole months only
        DateRange(date(2024, 5, 3), date(2024, 5, 19)),  # days inside one month
    ]
    filters: list[tuple[str | None, Channel | None]] = [
        (None, None),
        ("housing", None),
        (None, Channel.WEB),
        ("waste", Channel.PHONE),
    ]
    for span in spans:
        for area, channel in filters:
            expected = sum(
                1
                for e in sent
                if span.contains(e.occurred_at.date())
                and area in (None, e.payload.service_area)
                and channel in (None, e.payload.channel)
            )
            totals = await store.kpi_totals(
                span, MAY, service_area=area, channel=channel.value if channel else None
            )
            assert totals.current.get("contacts_received", 0) == expected, (span, area, channel)
            daily = await store.daily_totals(
                1,
                span,
                ["contacts_received"],
                service_area=area,
                channel=channel.value if channel else None,
            )
            assert sum(d["contacts_received"] for d in daily.values()) == expected
        by_area = await store.totals_by(1, span, "service_area")
        for area in AREAS:
            expected = sum(
                1
                for e in sent
                if span.contains(e.occurred_at.date()) and e.payload.service_area == area
            )
            assert by_area.get(area, {}).get("contacts_received", 0) == expected
