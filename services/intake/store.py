"""Intake's PostgreSQL state: which records were already accepted."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
from asyncpg.transaction import Transaction

from shared.postgres import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    source: str
    idempotency_key: str
    event_id: UUID
    fingerprint: str


class IdempotencyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Fingerprints of the (source, idempotency_key) pairs already accepted."""
        if not keys:
            return {}
        rows = await self._pool.fetch(
            """
            SELECT a.source, a.idempotency_key, a.fingerprint
            FROM intake_accepted_records a
            JOIN unnest($1::text[], $2::text[]) AS k(source, idempotency_key)
              USING (source, idempotency_key)
            """,
            [source for source, _ in keys],
            [key for _, key in keys],
        )
        return {(row["source"], row["idempotency_key"]): row["fingerprint"] for row in rows}

    async def record_once_published(
        self, records: Sequence[AcceptedRecord], publish: Callable[[], Awaitable[None]]
    ) -> None:
        """Call `publish` (the records' publishing) and remember the records once it succeeds.

        The rows are written while the records are published, in a transaction that
        commits only after `publish` returns: the write overlaps the wait for the
        broker, yet a key is never stored for a record the broker does not have. If
        `publish` fails, the rows are rolled back and its error raised; if the write
        fails, its error is raised, before publishing if it failed to begin, else once
        `publish` has returned. A row already there (a racing replica) is kept.
        """
        if not records:
            await publish()
            return
        async with self._pool.acquire() as connection:
            transaction = connection.transaction()
            begun = asyncio.get_running_loop().create_future()
            writing = asyncio.create_task(self._write(connection, transaction, records, begun))
            try:
                # Publishing keeps the CPU until it waits for the broker: once the
                # transaction has begun the write is on its way, and PostgreSQL does it
                # meanwhile.
                await asyncio.wait([writing, begun], return_when=asyncio.FIRST_COMPLETED)
                if writing.done():
                    await writing  # if it failed already, nothing is published
                await publish()
                await writing
            except BaseException:
                await asyncio.wait([writing])
                if not writing.cancelled():
                    writing.exception()  # retrieved: the error raised is the first one
                with contextlib.suppress(Exception):  # not begun, or the connection is gone
                    await transaction.rollback()
                raise
            await transaction.commit()

    @staticmethod
    async def _write(
        connection: Connection,
        transaction: Transaction,
        records: Sequence[AcceptedRecord],
        begun: "asyncio.Future[None]",
    ) -> None:
        await transaction.start()
        begun.set_result(None)
        # Rows locked in key order: two transactions writing the same keys cannot deadlock.
        await connection.execute(
            """
            INSERT INTO intake_accepted_records (source, idempotency_key, event_id, fingerprint)
            SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
              AS r(source, idempotency_key, event_id, fingerprint)
            ORDER BY source, idempotency_key
            ON CONFLICT (source, idempotency_key) DO NOTHING
            """,
            [r.source for r in records],
            [r.idempotency_key for r in records],
            [r.event_id for r in records],
            [r.fingerprint for r in records],
        )
