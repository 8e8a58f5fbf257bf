"""Processed-event records: each consumed event takes effect once.

`first_time` inserts the event's id inside the caller's transaction; when it
returns False the event was applied before (a redelivery or a replay) and the
caller changes nothing. The record and the state change commit together.
"""

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
