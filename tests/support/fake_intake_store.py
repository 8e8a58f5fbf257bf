"""Intake's store in memory, and the two backends intake's handler tests run against.

`FakeIdempotencyStore` subclasses the real store so that mypy holds the two
in step; `tests/unit/test_intake_handlers.py` proves it overrides every public
method, and runs one test body against it and against PostgreSQL.
"""

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from services.intake.settings import SERVICE
from services.intake.store import (
    MIGRATIONS,
    AcceptedRecord,
    IdempotencyStore,
    KeyRecording,
    KeyRow,
)
from shared.postgres import migrate

Identity = tuple[str, str]


class FakeIdempotencyStore(IdempotencyStore):
    """`IdempotencyStore` backed by a dict, with the same first-writer-wins rule."""

    def __init__(self) -> None:  # no pool: nothing here touches PostgreSQL
        self.rows: dict[Identity, AcceptedRecord] = {}

    async def fingerprints(self, keys: Sequence[Identity]) -> dict[Identity, str]:
        return {key: self.rows[key].fingerprint for key in keys if key in self.rows}

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator[KeyRecording]:
        recording = FakeKeyRecording()
        yield recording
        for accepted in recording.added:
            self.rows.setdefault((accepted.source, accepted.idempotency_key), accepted)


class FakeKeyRecording(KeyRecording):
    """Remembers what was added; the store keeps it if the block ends without an error."""

    def __init__(self) -> None:  # no connection, no transaction
        self.added: list[AcceptedRecord] = []

    def add(self, records: Sequence[KeyRow]) -> None:
        self.added += [
            AcceptedRecord(r.source, r.idempotency_key, r.event_id, r.fingerprint) for r in records
        ]


class FakeIntakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.store = FakeIdempotencyStore()

    async def reset(self) -> None:
        self.store.rows.clear()

    async def stored_keys(self) -> set[Identity]:
        return set(self.store.rows)


class PostgresIntakeBackend:
    name = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.store = IdempotencyStore(pool)

    async def reset(self) -> None:
        """Migrated and empty: the tests reuse idempotency keys, so each starts clean."""
        await migrate(self.pool, SERVICE, MIGRATIONS)
        await self.pool.execute("TRUNCATE intake_accepted_records")

    async def stored_keys(self) -> set[Identity]:
        rows = await self.pool.fetch("SELECT source, idempotency_key FROM intake_accepted_records")
        return {(row["source"], row["idempotency_key"]) for row in rows}


IntakeBackend = FakeIntakeBackend | PostgresIntakeBackend
