"""Wait for a service's transactional outbox to drain.

The relay deletes a row in the transaction that published it, so an empty
outbox means every event the service committed is on its topic: a read to
the topic's end offsets then sees all of them, and a duplicate would be there.
"""

import asyncio
import time

import asyncpg


async def outbox_drained(database_url: str, service: str, *, within_seconds: float = 30) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within_seconds
        while True:
            left = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE service = $1", service
            )
            if left == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{left} events of {service} still unpublished")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
