"""Intake's PostgreSQL state: which records were already accepted."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import asyncpg
from asyncpg.transaction import Transaction

from shared.postgres import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


class KeyRow(Protocol):
    """What is stored of an accepted record (`domain.Accepted` is one, as it is)."""

    @property
    def source(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...

    @property
    def event_id(self) -> str: ...  # as text: asyncpg reads it in C (a `UUID` costs a call)

    @property
    def fingerprint(self) -> str: ...


class AcceptedRecord(NamedTuple):
    """A stored row, as the store's fakes and tests hold one."""

    source: str
    idempotency_key: str
    event_id: str
    fingerprint: str


# Columns go to PostgreSQL as one text each, split there: asyncpg checks every element of
# an array parameter against abstract base classes, in Python, 2 us a record of intake's
# time for its six arrays. No key, source, id or fingerprint intake accepts holds a line
# break (`records.RawRecord`'s patterns); `_lines` makes sure, else the array is sent.
_SPLIT = "string_to_array($%d, E'\\n')"


def _lines(values: Sequence[str]) -> str | Sequence[str]:
    """`values` as one text of lines when that reads back as them, else the list itself."""
    joined = "\n".join(values)
    # One empty text would split into no lines at all.
    if joined and joined.count("\n") == len(values) - 1:
        return joined
    return values


def _column(values: Sequence[str], number: int, pg_type: str) -> tuple[str, str | Sequence[str]]:
    """A column's SQL (its lines split, or the array) and its parameter."""
    lines = _lines(values)
    if isinstance(lines, str):
        return f"{_SPLIT % number}::{pg_type}[]", lines
    return f"${number}::{pg_type}[]", lines


class IdempotencyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Fingerprints of the (source, idempotency_key) pairs already accepted."""
        if not keys:
            return {}
        (sources, source_values), (names, name_values) = (
            _column([source for source, _ in keys], 1, "text"),
            _column([key for _, key in keys], 2, "text"),
        )
        rows = await self._pool.fetch(
            f"""
            SELECT a.source, a.idempotency_key, a.fingerprint
            FROM intake_accepted_records a
            JOIN unnest({sources}, {names}) AS k(source, idempotency_key)
              USING (source, idempotency_key)
            """,
            source_values,
            name_values,
        )
        return {(row["source"], row["idempotency_key"]): row["fingerprint"] for row in rows}

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator["KeyRecording"]:
        """A transaction that writes the records `add`ed while the block goes on, and
        commits when the block ends without an error (else rolls back).

        The caller leaves the block only once the broker has every record it added,
        so a key is never stored for a record the broker does not have, yet the
        writes overlap the wait for the broker. A row already there (a racing
        replica) is kept. A failed write is raised by the next `add`, or on leaving.
        The transaction begins at the caller's next await, not at its first `add`: the
        round trip is then made while the caller builds what it adds.
        """
        async with self._pool.acquire() as connection:
            recording = KeyRecording(connection)
            try:
                yield recording
                await recording.finish()
            except BaseException:
                await recording.abandon()
                raise


class KeyRecording:
    """One transaction's writes, queued by `add` and made one after another meanwhile."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._transaction: Transaction = connection.transaction()
        self._queue: asyncio.Queue[Sequence[KeyRow] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] = asyncio.create_task(self._write_all())

    def add(self, records: Sequence[KeyRow]) -> None:
        """Queue `records` for writing in this transaction; raises a write that failed.

        They go to PostgreSQL at the caller's next await."""
        if self._writer.done():
            self._writer.result()  # the error, if it failed: nothing more is published
        if records:
            self._queue.put_nowait(records)

    async def finish(self) -> None:
        self._queue.put_nowait(None)
        await self._writer
        await self._transaction.commit()

    async def abandon(self) -> None:
        self._writer.cancel()
        await asyncio.wait([self._writer])
        if not self._writer.cancelled():
            self._writer.exception()  # retrieved: the error raised is the first one
        with contextlib.suppress(Exception):  # not begun, or the connection is gone
            await self._transaction.rollback()

    async def _write_all(self) -> None:
        await self._transaction.start()
        while (records := await self._queue.get()) is not None:
            # Rows locked in key order, so two one-write transactions on the same keys
            # cannot deadlock. Two-write ones (batches over a chunk) can; PostgreSQL
            # then fails one, a transient error: its batch is redelivered.
            columns = [
                _column([r.source for r in records], 1, "text"),
                _column([r.idempotency_key for r in records], 2, "text"),
                _column([r.event_id for r in records], 3, "uuid"),
                _column([r.fingerprint for r in records], 4, "text"),
            ]
            await self._connection.execute(
                f"""
                INSERT INTO intake_accepted_records (source, idempotency_key, event_id, fingerprint)
                SELECT * FROM unnest({", ".join(sql for sql, _ in columns)})
                  AS r(source, idempotency_key, event_id, fingerprint)
                ORDER BY source, idempotency_key
                ON CONFLICT (source, idempotency_key) DO NOTHING
                """,
                *(values for _, values in columns),
            )
