"""The machinery services share, on the real database and broker."""

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from shared import timers
from shared.events import ComplaintOpened, ComplaintOpenedPayload, Event
from shared.kafka import BulkProducer, OutgoingRecord, make_broker
from shared.outbox import OutboxMetrics, OutboxRelay, enqueue, enqueue_records
from shared.parked import ParkedKind, RetryPolicy, list_parked, retry_parked
from shared.postgres import (
    SHARED_MIGRATIONS,
    Connection,
    MigrationError,
    apply_migrations,
    create_pool,
)
from shared.processed_events import first_time
from shared.topics import COMPLAINTS
from tests.support.kafka import Record, read_topic

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


async def test_a_relay_through_the_bulk_producer_keeps_each_subject_s_order(
    pool: asyncpg.Pool, kafka_bootstrap: str, topics: None
) -> None:
    """The relay feedback runs (aiokafka's batches, not faststream's publish) publishes
    every row once, each subject's events in the order they were written, over many
    rounds; its backlog gauge, read at most once a second while rows flow, ends at 0."""
    service = service_name()
    events = [complaint_opened(f"{service}-{n % 3}") for n in range(50)]
    async with pool.acquire() as connection, connection.transaction():
        await enqueue(connection, service, events)
    registry = CollectorRegistry()
    metrics = OutboxMetrics(registry, service)
    producer = BulkProducer(kafka_bootstrap, client_id=service)
    await producer.start()
    relay = OutboxRelay(pool, producer, service, metrics=metrics, batch_size=5)
    running = asyncio.create_task(relay.run())

    def mine(records: Sequence[Record]) -> list[Record]:
        return [r for r in records if (r.key or b"").startswith(service.encode())]

    def backlog_gauge() -> float | None:
        return registry.get_sample_value("outbox_backlog_events", {"service": service})

    try:
        records = mine(
            await read_topic(
                kafka_bootstrap, COMPLAINTS.name, until=lambda rs: len(mine(rs)) >= len(events)
            )
        )
        for _ in range(100):  # the gauge is read again within a second or when idle
            if backlog_gauge() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        relay.stop()
        await running
        await producer.stop()

    written: dict[bytes, list[str]] = {}
    for event in events:
        written.setdefault(event.key.encode(), []).append(str(event.event_id))
    published: dict[bytes, list[str]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        published.setdefault(record.key or b"", []).append(json.loads(record.value)["event_id"])
    assert published == written  # each once, in order per subject
    assert backlog_gauge() == 0
    assert await relay.backlog() == 0


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


async def test_what_a_firing_counts_is_counted_once_and_only_after_its_commit(
    pool: asyncpg.Pool,
) -> None:
    """A firing's Prometheus counts (timers.OnCommit) run after the scheduler's commit: a
    batch that fails at COMMIT counts nothing, and a batch that fails and is fired again
    timer by timer counts each timer once."""
    service = service_name()
    async with pool.acquire() as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS test_fails_at_commit "
            "(id int, CONSTRAINT test_once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        for name in ("a", "b", "bad"):
            await timers.schedule(connection, service, timers.Timer(name, "ack", name, NOW, {}))
    counted: list[str] = []

    def counting(ids: list[str]) -> timers.OnCommit:
        return lambda: counted.extend(ids)

    async def fails_at_commit(
        connection: Connection, due: Sequence[timers.Timer]
    ) -> timers.OnCommit:
        # A deferred constraint: the statement succeeds and the COMMIT fails.
        await connection.execute("INSERT INTO test_fails_at_commit VALUES (1), (1)")
        return counting([t.timer_id for t in due])

    async def one(connection: Connection, timer: timers.Timer) -> timers.OnCommit:
        if timer.timer_id == "bad":
            raise RuntimeError("this timer's firing fails")
        return counting([timer.timer_id])

    async def batch_with_a_bad_timer(
        connection: Connection, due: Sequence[timers.Timer]
    ) -> timers.OnCommit:
        for timer in due:
            await one(connection, timer)
        return counting([t.timer_id for t in due])

    at_commit = timers.TimerScheduler(pool, service, one, fire_batch=fails_at_commit, retry=QUICK)
    with pytest.raises(asyncpg.UniqueViolationError):
        await at_commit.fire_due(NOW)
    assert counted == []

    fallback = timers.TimerScheduler(
        pool, service, one, fire_batch=batch_with_a_bad_timer, retry=QUICK
    )
    assert await fallback.fire_due(NOW) == 2
    assert sorted(counted) == ["a", "b"]


async def test_a_timer_whose_firing_fails_stays_pending(pool: asyncpg.Pool) -> None:
    service = service_name()
    async with pool.acquire() as connection:
        await timers.schedule(connection, service, timers.Timer("x", "ack", "C1", NOW, {}))

    async def failing(connection: Connection, timer: timers.Timer) -> None:
        raise RuntimeError("outbox write failed")

    assert await timers.TimerScheduler(pool, service, failing, retry=QUICK).fire_due(NOW) == 0
    async with pool.acquire() as connection:
        assert [t.timer_id for t in await timers.pending_for(connection, service, "C1")] == ["x"]
    await asyncio.sleep(QUICK.backoff_seconds * 2)
    fired: list[str] = []
    await timers.TimerScheduler(pool, service, lambda c, t: _record_firing(fired, c, t)).fire_due(
        NOW
    )

    assert fired == ["x"]


# -- nothing blocks behind one bad row ------------------------------------------------

QUICK = RetryPolicy(max_attempts=3, backoff_seconds=0.05, backoff_max_seconds=0.2)


async def _parked_timers(pool: asyncpg.Pool, service: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT timer_id, attempts, last_error FROM timers"
        " WHERE service = $1 AND parked_at IS NOT NULL",
        service,
    )


async def test_one_failing_timer_is_retried_then_parked_while_the_others_fire(
    pool: asyncpg.Pool,
) -> None:
    """Issue 9, item 5: a failing timer no longer rolls back its whole batch every poll."""
    service = service_name()
    async with pool.acquire() as connection:
        for n in range(5):
            timer = timers.Timer(f"t{n}", "ack", f"C{n}", NOW, {})
            await timers.schedule(connection, service, timer)
    fired: list[str] = []
    tries: list[str] = []

    async def fire(connection: Connection, timer: timers.Timer) -> None:
        tries.append(timer.timer_id)
        await _record_firing(fired, connection, timer)  # its effects must be undone too
        if timer.timer_id == "t2":
            await connection.execute("SELECT 1/0")

    registry = CollectorRegistry()
    scheduler = timers.TimerScheduler(
        pool, service, fire, retry=QUICK, metrics=timers.TimerMetrics(registry, service)
    )
    first = await scheduler.fire_due(NOW)
    at_once = await scheduler.fire_due(NOW)  # in backoff: not tried again at once
    for _ in range(QUICK.max_attempts):
        await asyncio.sleep(QUICK.backoff_max_seconds)
        await scheduler.fire_due(NOW)
    parked = await scheduler.refresh_parked()

    assert (first, at_once) == (4, 0)
    assert sorted(set(fired) - {"t2"}) == ["t0", "t1", "t3", "t4"]
    assert tries.count("t2") == QUICK.max_attempts
    [row] = await _parked_timers(pool, service)
    assert row["timer_id"] == "t2"
    assert row["attempts"] == QUICK.max_attempts
    assert "DivisionByZeroError" in row["last_error"]
    assert parked == 1
    assert registry.get_sample_value("timers_parked", {"service": service}) == 1

    async with pool.acquire() as connection:
        [item] = await list_parked(connection, service)
        assert (item.kind, item.item_id) == (ParkedKind.TIMERS, "t2")
        assert await retry_parked(connection, service) == 1
    fixed = timers.TimerScheduler(pool, service, lambda c, t: _record_firing(fired, c, t))
    assert await fixed.fire_due(NOW) == 1
    assert await _parked_timers(pool, service) == []


async def test_one_outbox_row_that_cannot_publish_is_parked_and_later_rows_flow(
    pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    """Issue 9, item 5: one row too large for the broker no longer blocks its service.

    Later rows of the same subject wait behind it (each subject's events leave in order).
    """
    service = service_name()
    good = [complaint_opened(f"{service}-good-{n}") for n in range(3)]
    too_large = OutgoingRecord(COMPLAINTS.name, f"{service}-big".encode(), b"x" * 2_000_000, {})
    behind = OutgoingRecord(COMPLAINTS.name, too_large.key, b"{}", {})
    async with pool.acquire() as connection, connection.transaction():
        await enqueue(connection, service, good[:1])
        await enqueue_records(connection, service, [too_large, behind])
        await enqueue(connection, service, good[1:])
    broker = make_broker(kafka_bootstrap, client_id=service)
    registry = CollectorRegistry()
    relay = OutboxRelay(
        pool, broker, service, retry=QUICK, metrics=OutboxMetrics(registry, service)
    )
    await broker.start()
    try:
        published = [await relay.publish_pending()]
        for _ in range(QUICK.max_attempts):
            await asyncio.sleep(QUICK.backoff_max_seconds)
            published.append(await relay.publish_pending())
        parked = await relay.parked()
        backlog = await relay.backlog()
    finally:
        await broker.stop()

    wanted = {event.key.encode() for event in good}
    records = await read_topic(
        kafka_bootstrap, COMPLAINTS.name, until=lambda rs: wanted <= {r.key for r in rs}
    )
    assert wanted <= {r.key for r in records}
    assert published[0] == 3
    assert sum(published) == 3
    assert (parked, backlog) == (1, 2)  # the parked row, and the one behind it
    [row] = await pool.fetch(
        "SELECT attempts, last_error FROM outbox WHERE service = $1 AND parked_at IS NOT NULL",
        service,
    )
    assert row["attempts"] == QUICK.max_attempts
    assert "MessageSizeTooLarge" in row["last_error"]


def test_the_operator_command_lists_and_retries_parked_items(database_url: str) -> None:
    async def park() -> str:
        pool = await create_pool(database_url)
        try:
            await apply_migrations(pool, "shared", SHARED_MIGRATIONS)
            service = service_name()
            async with pool.acquire() as connection:
                await timers.schedule(connection, service, timers.Timer("p", "ack", "C9", NOW, {}))
                await connection.execute(
                    "UPDATE timers SET parked_at = now(), attempts = 5, last_error = 'boom'"
                    " WHERE service = $1",
                    service,
                )
            return service
        finally:
            await pool.close()

    service = asyncio.run(park())
    command = [sys.executable, "-m", "civicpulse", "parked"]
    url = ["--database-url", database_url]

    listed = subprocess.run([*command, "list", *url], capture_output=True, text=True, check=True)
    retried = subprocess.run(
        [*command, "retry", "--service", "complaints", *url], capture_output=True, text=True
    )

    assert any(service in line and "boom" in line for line in listed.stdout.splitlines())
    assert "retrying 0" in retried.stdout  # another service's name: nothing of complaints'
    assert retried.returncode == 1
