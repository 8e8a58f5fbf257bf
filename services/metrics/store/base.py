"""What every part of the metrics store stands on: the pool, and a transaction's connection."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

import asyncpg

from shared.postgres import Connection


class NotInTransactionError(RuntimeError):
    """A write was called on the store outside `transaction()`."""


class StoreBase:
    """Reads run on the pool, or on the transaction's connection when inside one;
    writes need the transaction, so that a batch's counters and its processed-event
    records commit together.
    """

    def __init__(self, pool: asyncpg.Pool, connection: Connection | None = None) -> None:
        self._pool = pool
        self._connection = connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """The same store, bound to one transaction: committed when the block ends."""
        if self._connection is not None:
            raise RuntimeError("already in a transaction: use this store, not a new one")
        async with self._pool.acquire() as connection, connection.transaction():
            yield type(self)(self._pool, connection)

    @property
    def _db(self) -> asyncpg.Pool | Connection:
        return self._connection if self._connection is not None else self._pool

    @property
    def _tx(self) -> Connection:
        if self._connection is None:
            raise NotInTransactionError("metrics store writes run inside `transaction()`")
        return self._connection
