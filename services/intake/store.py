"""Intake's PostgreSQL state: which records were already accepted."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg

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

    async def record(self, records: Sequence[AcceptedRecord]) -> None:
        """Remember published records; a row already there (a racing replica) is kept."""
        if not records:
            return
        await self._pool.execute(
            """
            INSERT INTO intake_accepted_records (source, idempotency_key, event_id, fingerprint)
            SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
            ON CONFLICT (source, idempotency_key) DO NOTHING
            """,
            [r.source for r in records],
            [r.idempotency_key for r in records],
            [r.event_id for r in records],
            [r.fingerprint for r in records],
        )
