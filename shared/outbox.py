"""The transactional outbox: events leave a service only after its state commits.

A handler calls `enqueue` inside the transaction that changes its state; the
`OutboxRelay` publishes committed rows with the idempotent producer and then
deletes them. A crash between publish and delete republishes the same events
(same `event_id`), which consumers deduplicate. One relay per service is
active at a time (a PostgreSQL advisory lock), so each subject's events leave
in the order they were written.

A row that cannot be published (for a reason other than an outage) does not
hold up the rest: the batch is retried row by row, the failing row is tried
again after a backoff and parked after its attempt cap (`shared.parked`).
Only the later rows of the same subject (topic and key) wait behind it, so
that subject's order still holds.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence

import asyncpg
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.dead_letters import is_transient
from shared.events.catalogue import topic_for
from shared.events.envelope import Event
from shared.kafka import BulkProducer, OutgoingRecord, event_record, publish_records
from shared.parked import (
    ParkedKind,
    RetryPolicy,
    count_parked,
    describe_error,
    outbox_channel,
    outbox_row_failed,
)
from shared.postgres import Connection

log = logging.getLogger(__name__)
# While rows flow, the backlog and parked gauges are read at most this often: their two
# counts, each on a pool connection of its own (a round trip, then asyncpg's reset),
# were four of the ten round trips of every round.
GAUGE_PERIOD_SECONDS = 1.0


def _lock_id(service: str) -> int:
    digest = hashlib.sha256(f"outbox:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def enqueue(connection: Connection, service: str, events: Sequence[Event]) -> None:
    """Write events to the outbox; call inside the state change's transaction."""
    await enqueue_records(
        connection, service, [event_record(event, topic_for(type(event))) for event in events]
    )


async def enqueue_records(
    connection: Connection, service: str, records: Sequence[OutgoingRecord]
) -> None:
    """Write any records (not only catalogue events) to the outbox, in the caller's transaction.

    The relay is woken when the transaction commits (NOTIFY is transactional).
    """
    if not records:
        return
    # One statement for any number of rows; ids follow the records' order
    # (WITH ORDINALITY), which is the order the relay publishes them in.
    await connection.execute(
        """
        WITH written AS (
            INSERT INTO outbox (service, topic, key, value, headers)
            SELECT $1, topic, key, value, headers
            FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::jsonb[])
                WITH ORDINALITY AS r(topic, key, value, headers, position)
            ORDER BY position
        )
        SELECT pg_notify($6, '')
        """,
        service,
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [json.dumps(r.headers) for r in records],
        outbox_channel(service),
    )


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.published = Counter(
            "outbox_published_events",
            "Events published from the outbox.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.backlog = Gauge(
            "outbox_backlog_events",
            "Events committed but not yet published.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.parked = Gauge(
            "outbox_parked",
            "Outbox rows parked after failing their attempts; `civicpulse parked` lists them.",
            ["service"],
            registry=registry,
        ).labels(service)


class OutboxRelay:
    """Publishes a service's outbox; run `run()` as a task, `stop()` to end it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker | BulkProducer,
        service: str,
        *,
        metrics: OutboxMetrics | None = None,
        batch_size: int = 500,
        idle_poll_seconds: float = 1.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._service = service
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._batch_size = batch_size
        self._idle_poll_seconds = idle_poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False

    async def publish_pending(self) -> int:
        """Publish one batch of committed events; returns how many were published.

        Returns 0 without waiting when another replica's relay holds the lock.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", _lock_id(self._service)
            ):
                return 0
            # Rows waiting for their next attempt are skipped, and so are the later
            # rows of a subject whose earlier row failed: its order holds.
            rows = await connection.fetch(
                """
                SELECT id, topic, key, value, headers FROM outbox o
                WHERE service = $1 AND parked_at IS NULL
                  AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())
                  AND NOT EXISTS (
                      SELECT 1 FROM outbox f
                      WHERE f.service = o.service AND f.attempts > 0
                        AND f.topic = o.topic AND f.key = o.key AND f.id < o.id)
                ORDER BY id LIMIT $2
                """,
                self._service,
                self._batch_size,
            )
            if not rows:
                return 0
            try:
                await publish_records(self._broker, [_record(row) for row in rows])
                published = [row["id"] for row in rows]
            except Exception as error:
                if is_transient(error):
                    raise
                log.warning("outbox batch of %s failed (%r); row by row", self._service, error)
                published = await self._publish_one_by_one(connection, rows)
            await connection.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", published)
        if self._metrics:
            self._metrics.published.inc(len(published))
        return len(published)

    async def _publish_one_by_one(
        self, connection: Connection, rows: Sequence[asyncpg.Record]
    ) -> list[int]:
        published: list[int] = []
        held: set[tuple[str, bytes]] = set()  # subjects with a failed row in this batch
        for row in rows:
            subject = (row["topic"], bytes(row["key"]))
            if subject in held:
                continue
            try:
                await publish_records(self._broker, [_record(row)])
            except Exception as error:
                if is_transient(error):
                    raise
                held.add(subject)
                parked = await outbox_row_failed(
                    connection, self._service, row["id"], describe_error(error), self._retry
                )
                log.warning(
                    "outbox row %d of %s failed%s: %r",
                    row["id"],
                    self._service,
                    " and is parked" if parked else "; it will be tried again",
                    error,
                )
                continue
            published.append(row["id"])
        return published

    async def backlog(self) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM outbox WHERE service = $1", self._service
        )
        return count

    async def parked(self) -> int:
        async with self._pool.acquire() as connection:
            return await count_parked(connection, ParkedKind.OUTBOX, self._service)

    async def run(self) -> None:
        listener = await self._pool.acquire()
        await listener.add_listener(outbox_channel(self._service), self._on_notify)
        gauges_due = 0.0
        try:
            while not self._stopping:
                try:
                    published = await self.publish_pending()
                    # Always before the relay idles, so the gauges never stay stale.
                    if self._metrics and (published == 0 or time.monotonic() >= gauges_due):
                        self._metrics.backlog.set(await self.backlog())
                        self._metrics.parked.set(await self.parked())
                        gauges_due = time.monotonic() + GAUGE_PERIOD_SECONDS
                except Exception as error:
                    if not is_transient(error):
                        log.exception("outbox relay of %s failed", self._service)
                    else:
                        log.warning("outbox relay of %s waiting: %r", self._service, error)
                    published = 0
                if published == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._idle_poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(outbox_channel(self._service), self._on_notify)
            await self._pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def _record(row: asyncpg.Record) -> OutgoingRecord:
    return OutgoingRecord(row["topic"], row["key"], row["value"], json.loads(row["headers"]))
