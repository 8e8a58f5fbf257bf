"""Intake's store in memory, and the two backends intake's handler tests run against.

`FakeIdempotencyStore` subclasses the real store so that mypy holds the two
in step; `tests/unit/test_intake_handlers.py` proves it overrides every public
method, and runs one test body against it and against PostgreSQL.
"""

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from services.intake.settings import SERVICE
from services.intake.store import MIGRATIONS, AcceptedRecord, IdempotencyStore
from shared.postgres import migrate

Identity = tuple[str, str]


class FakeIdempotencyStore(IdempotencyStore):
    """`IdempotencyStore` backed by a dict, with the same first-writer-wins rule."""

    def __init__(self) -> None:  # no pool: nothing here touches PostgreSQL
        self.rows: dict[Identity, AcceptedRecord] = {}

    async def fingerprints(self, keys: Sequence[Identity]) -> dict[Identity, str]:
        return {key: self.rows[key].fingerprint for key in keys if key in self.rows}

    async def record_once_published(
        self, records: Sequence[AcceptedRecord], publish: Callable[[], Awaitable[None]]
    ) -> None:
        await publish()
        for accepted in records:
            self.rows.setdefault((accepted.source, accepted.idempotency_key), accepted)


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
