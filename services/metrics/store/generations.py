"""Generations of the aggregates: the live one readers use, and the one a rebuild fills.

Each generation deduplicates events on its own (its processed-event records),
so a replay into a new generation applies each event once more.
"""

from collections.abc import Sequence
from uuid import UUID

from services.metrics.settings import SERVICE
from services.metrics.store.base import StoreBase
from shared.postgres import Connection
from shared.processed_events import first_times

GENERATION_TABLES = (
    "metrics_aggregates",
    "metrics_monthly",
    "metrics_rollups",
    "metrics_contact_facts",
    "metrics_complaint_facts",
    "metrics_complaint_outcomes",
    "metrics_surges",
    "metrics_topic_progress",
    "metrics_complaint_deadlines",
    "metrics_complaint_notes",
)


def processed_service(generation: int) -> str:
    """The processed-event records' service name of one generation."""
    return f"{SERVICE}@g{generation}"


async def _drop_generation_rows(connection: Connection, generation: int) -> None:
    for table in GENERATION_TABLES:
        await connection.execute(f"DELETE FROM {table} WHERE generation = $1", generation)
    await connection.execute(
        "DELETE FROM processed_events WHERE service = $1", processed_service(generation)
    )


class Generations(StoreBase):
    async def live_generation(self, *, lock: bool = False) -> int:
        """The generation readers use; `lock` (in a transaction) holds off a switch till it ends."""
        sql = "SELECT generation FROM metrics_current" + (" FOR SHARE" if lock else "")
        generation: int = await (self._tx if lock else self._db).fetchval(sql)
        return generation

    async def first_times(self, generation: int, event_ids: Sequence[UUID]) -> set[UUID]:
        """The events not applied to `generation` before; records them (in the transaction)."""
        return await first_times(self._tx, processed_service(generation), event_ids)

    async def record_new(self, generation: int, event_ids: Sequence[UUID]) -> set[UUID] | None:
        """`first_times`, answering None when every id was new: a batch's usual answer,
        then one value instead of a row per event to send, decode and look up."""
        fresh: list[UUID] | None = await self._tx.fetchval(
            """
            WITH recorded AS (
                INSERT INTO processed_events (service, event_id)
                SELECT $1, unnest($2::uuid[])
                ON CONFLICT (service, event_id) DO NOTHING
                RETURNING event_id
            )
            SELECT CASE WHEN count(*) = cardinality($2::uuid[]) THEN NULL
                        ELSE coalesce(array_agg(event_id), '{}') END
            FROM recorded
            """,
            processed_service(generation),
            list(event_ids),
        )
        return None if fresh is None else set(fresh)

    async def start_generation(self) -> int:
        """A new generation to rebuild into; unfinished rebuilds are discarded first."""
        async with self._pool.acquire() as connection, connection.transaction():
            abandoned = await connection.fetch(
                "DELETE FROM metrics_generations WHERE state = 'building' RETURNING generation"
            )
            for row in abandoned:
                await _drop_generation_rows(connection, row["generation"])
            generation: int = await connection.fetchval(
                """
                INSERT INTO metrics_generations (generation, state)
                SELECT max(generation) + 1, 'building' FROM metrics_generations
                RETURNING generation
                """
            )
        return generation

    async def switch_generation(self, generation: int) -> int:
        """Make `generation` live; returns the one it replaced. Waits for live batches in hand."""
        async with self._pool.acquire() as connection, connection.transaction():
            previous: int = await connection.fetchval(
                "SELECT generation FROM metrics_current FOR UPDATE"
            )
            await connection.execute("UPDATE metrics_current SET generation = $1", generation)
            await connection.execute(
                "UPDATE metrics_generations SET state = 'live', switched_at = now()"
                " WHERE generation = $1",
                generation,
            )
            await connection.execute(
                "UPDATE metrics_generations SET state = 'retired' WHERE generation = $1", previous
            )
        return previous

    async def drop_retired_before(self, generation: int) -> list[int]:
        """Delete retired generations older than `generation` (the one before stays for a look)."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "DELETE FROM metrics_generations WHERE state = 'retired' AND generation < $1"
                " RETURNING generation",
                generation,
            )
            for row in rows:
                await _drop_generation_rows(connection, row["generation"])
        return [row["generation"] for row in rows]
