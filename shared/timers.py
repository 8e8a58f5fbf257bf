"""Durable timers in PostgreSQL: deadlines that survive restarts and fire once.

Each timer is a row. `TimerScheduler.fire_due(now)` claims due rows with
`FOR UPDATE SKIP LOCKED` (so replicas split the work and never take the same
row), calls the service's `fire` callback in the same transaction, and marks
the row fired: the callback's effects (state change, outbox events) and the
mark commit together, so a timer fires exactly once even across crashes.
The scan uses a partial index on pending timers' due time: its cost follows
what is due, not what is open. Time is passed in, so tests inject it.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from shared.dead_letters import is_transient
from shared.events.envelope import utc_now
from shared.parked import ParkedKind, RetryPolicy, count_parked, describe_error, timer_failed
from shared.postgres import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timer:
    timer_id: str
    kind: str
    subject: str
    due_at: datetime
    payload: dict[str, Any]


# What a firing counts once it has committed (its Prometheus counters): counted inside
# the transaction, a batch that fails and is fired again timer by timer counts twice.
OnCommit = Callable[[], None]
FireTimer = Callable[[Connection, Timer], Awaitable[OnCommit | None]]

# Fires a claimed batch at once (set-based); the scheduler falls back to `FireTimer`
# timer by timer when it fails, so one bad timer is parked alone.
FireTimers = Callable[[Connection, Sequence[Timer]], Awaitable[OnCommit | None]]


def all_of(effects: Sequence[OnCommit]) -> OnCommit:
    """One `OnCommit` for a batch's, run in order."""

    def run_all() -> None:
        for effect in effects:
            effect()

    return run_all


async def schedule(connection: Connection, service: str, timer: Timer) -> None:
    """Create the timer, or move it (a recalculated or extended deadline) if still pending."""
    await connection.execute(
        """
        INSERT INTO timers (service, timer_id, kind, subject, due_at, payload)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (service, timer_id) DO UPDATE
            SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload
            WHERE timers.fired_at IS NULL AND timers.cancelled_at IS NULL
        """,
        service,
        timer.timer_id,
        timer.kind,
        timer.subject,
        timer.due_at,
        json.dumps(timer.payload),
    )


async def cancel(connection: Connection, service: str, timer_id: str) -> None:
    """Cancel a pending timer (the due action happened in time)."""
    await connection.execute(
        """
        UPDATE timers SET cancelled_at = now()
        WHERE service = $1 AND timer_id = $2 AND fired_at IS NULL AND cancelled_at IS NULL
        """,
        service,
        timer_id,
    )


@dataclass(slots=True)
class _Change:
    """What a run of `schedule`/`cancel` calls on one timer does, as one change.

    Followed on each starting state: from absent, the row to insert (`insert`,
    cancelled if a cancel came after it); from pending, the time and payload
    it moves to (`move_to`) and whether it ends cancelled. Fired and cancelled
    timers never change, as with the single calls.
    """

    insert: Timer | None = None
    insert_cancelled: bool = False
    move_to: Timer | None = None
    cancel: bool = False


class TimerChanges:
    """`schedule` and `cancel` calls buffered for a batch, written in one statement.

    The result is the one the same calls would have had one by one, in order:
    a timer scheduled, cancelled and scheduled again stays cancelled.
    """

    def __init__(self) -> None:
        self._changes: dict[str, _Change] = {}
        # The calls in order (a Timer was scheduled, a str is the id cancelled), for fakes.
        self.calls: list[Timer | str] = []

    def __bool__(self) -> bool:
        return bool(self._changes)

    def schedule(self, timer: Timer) -> None:
        self.calls.append(timer)
        change = self._changes.setdefault(timer.timer_id, _Change())
        if not change.insert_cancelled:
            change.insert = timer
        if not change.cancel:
            change.move_to = timer

    def cancel(self, timer_id: str) -> None:
        self.calls.append(timer_id)
        change = self._changes.setdefault(timer_id, _Change())
        change.insert_cancelled = change.insert is not None
        change.cancel = True

    async def write(self, connection: Connection, service: str) -> None:
        """Apply the changes: pending timers first, then the absent ones are inserted."""
        if not self._changes:
            return
        ids = list(self._changes)
        changes = [self._changes[timer_id] for timer_id in ids]
        inserts = [(c.insert, c.insert_cancelled) for c in changes if c.insert is not None]
        await connection.execute(
            """
            WITH change AS (
                SELECT * FROM unnest($2::text[], $3::boolean[], $4::timestamptz[], $5::jsonb[])
                    AS c(timer_id, cancel, due_at, payload)
            ), changed AS (
                UPDATE timers t
                SET cancelled_at = CASE WHEN c.cancel THEN now() END,
                    due_at = coalesce(c.due_at, t.due_at),
                    payload = coalesce(c.payload, t.payload)
                FROM change c
                WHERE t.service = $1 AND t.timer_id = c.timer_id
                  AND t.fired_at IS NULL AND t.cancelled_at IS NULL
            )
            INSERT INTO timers (service, timer_id, kind, subject, due_at, payload, cancelled_at)
            SELECT $1, i.timer_id, i.kind, i.subject, i.due_at, i.payload,
                   CASE WHEN i.cancelled THEN now() END
            FROM unnest($6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::jsonb[],
                        $11::boolean[]) AS i(timer_id, kind, subject, due_at, payload, cancelled)
            ON CONFLICT (service, timer_id) DO NOTHING
            """,
            service,
            ids,
            [c.cancel for c in changes],
            [c.move_to.due_at if c.move_to else None for c in changes],
            [json.dumps(c.move_to.payload) if c.move_to else None for c in changes],
            [t.timer_id for t, _ in inserts],
            [t.kind for t, _ in inserts],
            [t.subject for t, _ in inserts],
            [t.due_at for t, _ in inserts],
            [json.dumps(t.payload) for t, _ in inserts],
            [cancelled for _, cancelled in inserts],
        )
        self._changes.clear()
        self.calls.clear()


async def pending_for(connection: Connection, service: str, subject: str) -> list[Timer]:
    rows = await connection.fetch(
        """
        SELECT timer_id, kind, subject, due_at, payload FROM timers
        WHERE service = $1 AND subject = $2 AND fired_at IS NULL AND cancelled_at IS NULL
        ORDER BY due_at
        """,
        service,
        subject,
    )
    return [_timer(row) for row in rows]


def _timer(row: asyncpg.Record) -> Timer:
    return Timer(
        timer_id=row["timer_id"],
        kind=row["kind"],
        subject=row["subject"],
        due_at=row["due_at"],
        payload=json.loads(row["payload"]),
    )


class TimerMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.parked = Gauge(
            "timers_parked",
            "Timers parked after failing their attempts; `civicpulse parked` lists them.",
            ["service"],
            registry=registry,
        ).labels(service)


class TimerScheduler:
    """Fires a service's due timers; `run()` polls, `fire_due(now)` is one pass."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        service: str,
        fire: FireTimer,
        *,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        retry: RetryPolicy | None = None,
        metrics: TimerMetrics | None = None,
        fire_batch: FireTimers | None = None,
    ) -> None:
        self._pool = pool
        self._service = service
        self._fire = fire
        self._fire_batch_callback = fire_batch
        self._clock = clock
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retry = retry or RetryPolicy()
        self._metrics = metrics
        self._stopping = asyncio.Event()

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (default: the clock); returns how many fired."""
        now = now or self._clock()
        fired = 0
        while True:
            claimed, fired_now = await self._fire_batch(now)
            fired += fired_now
            if claimed < self._batch_size:
                return fired

    async def _fire_batch(self, now: datetime) -> tuple[int, int]:
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """
                SELECT timer_id, kind, subject, due_at, payload FROM timers
                WHERE service = $1 AND due_at <= $2
                  AND fired_at IS NULL AND cancelled_at IS NULL AND parked_at IS NULL
                  AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())
                ORDER BY due_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
                """,
                self._service,
                now,
                self._batch_size,
            )
            on_commit: list[OnCommit] = []
            fired = await self._fire_all(connection, rows, on_commit)
            await connection.execute(
                "UPDATE timers SET fired_at = $3 WHERE service = $1 AND timer_id = ANY($2::text[])",
                self._service,
                fired,
                now,
            )
        for committed in on_commit:
            committed()
        return len(rows), len(fired)

    async def _fire_all(
        self, connection: Connection, rows: Sequence[asyncpg.Record], on_commit: list[OnCommit]
    ) -> list[str]:
        """The batch callback first, in one savepoint; on failure, timer by timer."""
        if self._fire_batch_callback is not None and rows:
            claimed = [_timer(row) for row in rows]
            try:
                async with connection.transaction():
                    committed = await self._fire_batch_callback(connection, claimed)
            except Exception as error:
                if is_transient(error):
                    raise
                log.warning(
                    "timer batch of %s failed (%r); firing timer by timer", self._service, error
                )
            else:
                if committed is not None:
                    on_commit.append(committed)
                return [timer.timer_id for timer in claimed]
        return [row["timer_id"] for row in rows if await self._fire_one(connection, row, on_commit)]

    async def _fire_one(
        self, connection: Connection, row: asyncpg.Record, on_commit: list[OnCommit]
    ) -> bool:
        """Fire one timer in a savepoint; a failure is undone alone and counted."""
        timer = _timer(row)
        try:
            async with connection.transaction():
                committed = await self._fire(connection, timer)
            if committed is not None:
                on_commit.append(committed)
        except Exception as error:
            if is_transient(error):
                raise  # an outage: the whole batch waits for the next pass
            parked = await timer_failed(
                connection, self._service, timer.timer_id, describe_error(error), self._retry
            )
            log.warning(
                "timer %s of %s failed%s: %r",
                timer.timer_id,
                self._service,
                " and is parked" if parked else "; it will be tried again",
                error,
            )
            return False
        return True

    async def refresh_parked(self) -> int:
        async with self._pool.acquire() as connection:
            parked = await count_parked(connection, ParkedKind.TIMERS, self._service)
        if self._metrics:
            self._metrics.parked.set(parked)
        return parked

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.fire_due()
                await self.refresh_parked()
            except Exception as error:
                if is_transient(error):
                    log.warning("timers of %s waiting: %r", self._service, error)
                else:
                    log.exception("timers of %s failed", self._service)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_seconds)

    def stop(self) -> None:
        self._stopping.set()
