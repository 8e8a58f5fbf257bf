"""The machinery services share, on the real database and broker."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from shared import timers
from shared.events import ComplaintOpened, ComplaintOpenedPayload, Event
from shared.kafka import make_broker
from shared.outbox import OutboxRelay, enqueue
from shared.postgres import (
    SHARED_MIGRATIONS,
    Connection,
    MigrationError,
    apply_migrations,
    create_pool,
)
from shared.processed_events import first_time
from shared.topics import COMPLAINTS
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration
NOW = datetime(2026, 1, 12, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    await apply_migrations(pool, "shared", SHARED_MIGRATIONS)
    yield pool
    await pool.close()


def service_name() -> str:
    return f"test_{uuid.uuid4().hex[:8]}"


def complaint_opened(complaint_id: str) -> Event:
    return ComplaintOpened(
        complaint_id=complaint_id,
        occurred_at=NOW,
        source="test",
        payload=ComplaintOpenedPayload(service_area="waste", channel="web"),
    )


async def test_migrations_apply_once_and_refuse_an_edited_file(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    service = service_name()
    (tmp_path / "001_table.sql").write_text(f"CREATE TABLE {service}_things (id int);")

    first = await apply_migrations(pool, service, tmp_path)
    second = await apply_migrations(pool, service, tmp_path)
    (tmp_path / "001_table.sql").write_text(f"CREATE TABLE {service}_things (id bigint);")

    assert first == ["001_table.sql"]
    assert second == []
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(pool, service, tmp_path)


async def test_an_event_is_processed_the_first_time_only(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    async with pool.acquire() as connection:
        assert await first_time(connection, "svc", event_id)
        assert not await first_time(connection, "svc", event_id)
        assert await first_time(connection, "other_svc", event_id)


async def _enqueue_then_fail(connection: Connection, service: str, event: Event) -> None:
    async with connection.transaction():
        await enqueue(connection, service, [event])
        raise RuntimeError("the state change failed")


async def test_the_outbox_publishes_committed_events_once_and_rolled_back_never(
    pool: asyncpg.Pool, kafka_bootstrap: str, topics: None
) -> None:
    service = service_name()
    committed = [complaint_opened(f"{service}-kept-{n}") for n in range(20)]
    rolled_back = complaint_opened(f"{service}-rolled-back")
    async with pool.acquire() as connection:
        async with connection.transaction():
            await enqueue(connection, service, committed)
        with pytest.raises(RuntimeError):
            await _enqueue_then_fail(connection, service, rolled_back)
    broker = make_broker(kafka_bootstrap, client_id=service)
    await broker.start()
    try:
        # Two relays racing, as two replicas would: the lock lets one publish.
        relays = [OutboxRelay(pool, broker, service) for _ in range(2)]
        await asyncio.gather(*(relay.publish_pending() for relay in relays))
        await asyncio.gather(*(relay.publish_pending() for relay in relays))
        backlog = await relays[0].backlog()
    finally:
        await broker.stop()

    wanted = {event.key.encode() for event in committed}
    records = await read_topic(
        kafka_bootstrap, COMPLAINTS.name, until=lambda rs: wanted <= {r.key for r in rs}
    )
    mine = [r.key for r in records if r.key and r.key.startswith(service.encode())]
    assert sorted(key for key in mine if key) == sorted(wanted)
    assert backlog == 0


async def _record_firing(fired: list[str], connection: Connection, timer: timers.Timer) -> None:
    await connection.execute("SELECT 1")  # runs inside the claiming transaction
    fired.append(timer.timer_id)


async def test_due_timers_fire_once_and_pending_ones_wait(pool: asyncpg.Pool) -> None:
    service = service_name()
    async with pool.acquire() as connection:
        for name, due in [
            ("due", NOW - timedelta(minutes=1)),
            ("now", NOW),
            ("later", NOW + timedelta(days=1)),
        ]:
            await timers.schedule(connection, service, timers.Timer(name, "ack", "C1", due, {}))
    fired: list[str] = []
    scheduler = timers.TimerScheduler(pool, service, lambda c, t: _record_firing(fired, c, t))

    first = await scheduler.fire_due(NOW)
    second = await scheduler.fire_due(NOW)

    assert (first, second) == (2, 0)
    assert sorted(fired) == ["due", "now"]
    async with pool.acquire() as connection:
        assert [t.timer_id for t in await timers.pending_for(connection, service, "C1")] == [
            "later"
        ]


async def test_two_schedulers_side_by_side_fire_each_timer_once(pool: asyncpg.Pool) -> None:
    service = service_name()
    async with pool.acquire() as connection:
        for n in range(300):
            timer = timers.Timer(f"t{n}", "respond", f"C{n}", NOW - timedelta(seconds=n), {})
            await timers.schedule(connection, service, timer)
    fired: list[str] = []

    async def slow_fire(connection: Connection, timer: timers.Timer) -> None:
        await asyncio.sleep(0)  # let the other replica interleave
        await _record_firing(fired, connection, timer)

    replicas = [timers.TimerScheduler(pool, service, slow_fire, batch_size=25) for _ in range(2)]
    counts = await asyncio.gather(*(replica.fire_due(NOW) for replica in replicas))

    assert sum(counts) == 300
    assert sorted(fired) == sorted(f"t{n}" for n in range(300))


async def test_a_cancelled_timer_never_fires_and_a_moved_one_fires_at_its_new_time(
    pool: asyncpg.Pool,
) -> None:
    service = service_name()
    async with pool.acquire() as connection:
        await timers.schedule(connection, service, timers.Timer("a", "ack", "C1", NOW, {}))
        await timers.schedule(connection, service, timers.Timer("b", "ack", "C2", NOW, {}))
        await timers.cancel(connection, service, "a")
        moved = timers.Timer("b", "ack", "C2", NOW + timedelta(days=2), {"extended": True})
        await timers.schedule(connection, service, moved)
    fired: list[str] = []
    scheduler = timers.TimerScheduler(pool, service, lambda c, t: _record_firing(fired, c, t))

    assert await scheduler.fire_due(NOW) == 0
    assert await scheduler.fire_due(NOW + timedelta(days=2)) == 1
    assert fired == ["b"]


async def test_a_timer_whose_firing_fails_stays_pending(pool: asyncpg.Pool) -> None:
    service = service_name()
    async with pool.acquire() as connection:
        await timers.schedule(connection, service, timers.Timer("x", "ack", "C1", NOW, {}))

    async def failing(connection: Connection, timer: timers.Timer) -> None:
        raise RuntimeError("outbox write failed")

    with pytest.raises(RuntimeError):
        await timers.TimerScheduler(pool, service, failing).fire_due(NOW)
    fired: list[str] = []
    await timers.TimerScheduler(pool, service, lambda c, t: _record_firing(fired, c, t)).fire_due(
        NOW
    )

    assert fired == ["x"]
