"""Processed-event records: each consumed event takes effect once.

`first_time` inserts the event's id inside the caller's transaction; when it
returns False the event was applied before (a redelivery or a replay) and the
caller changes nothing. The record and the state change commit together.
"""

from collections.abc import Sequence
from uuid import UUID

from shared.postgres import Connection


async def first_time(connection: Connection, service: str, event_id: UUID) -> bool:
    inserted = await connection.fetchval(
        """
        INSERT INTO processed_events (service, event_id) VALUES ($1, $2)
        ON CONFLICT (service, event_id) DO NOTHING
        RETURNING true
        """,
        service,
        event_id,
    )
    return bool(inserted)


async def first_times(connection: Connection, service: str, event_ids: Sequence[UUID]) -> set[UUID]:
    """`first_time` for a batch in one round trip: the ids not applied before."""
    rows = await connection.fetch(
        """
        INSERT INTO processed_events (service, event_id)
        SELECT $1, unnest($2::uuid[])
        ON CONFLICT (service, event_id) DO NOTHING
        RETURNING event_id
        """,
        service,
        list(event_ids),
    )
    return {row["event_id"] for row in rows}
