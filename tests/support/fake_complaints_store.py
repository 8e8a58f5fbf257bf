"""`ComplaintsStore` in memory, for the complaints handlers' fast tests.

It keeps what the real store keeps (processed inputs, complaints, timers, the
outbox, the calendar's fingerprint) in dicts, and stands in for the pool and
connections the handler borrows: `pool.acquire()` yields a `FakeConnection`
whose `transaction()` snapshots the dicts and restores them if the block
raises, nested like PostgreSQL's savepoints. No SQL is faked: the handler only
calls the store's methods and `transaction()`.

tests/unit/test_complaints_store_contract.py runs one test body against this
and against PostgreSQL, so the two cannot drift.
"""

import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast
from uuid import UUID

import asyncpg

from services.complaints.domain import SETTLED, WINDOW_TIMER_KIND, Complaint, Status
from services.complaints.domain.erasure import holds_free_text, without_free_text
from services.complaints.store import (
    ComplaintsStore,
    CustomerCases,
    OpenCount,
    WorklistQuery,
    wanted_timers,
)
from services.complaints.working_days import end_of_local_day
from shared import timers
from shared.events.complaints import ComplaintEvent
from shared.postgres import Connection


@dataclass
class FakeTimer:
    timer: timers.Timer
    fired_at: datetime | None = None
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        return self.fired_at is None and not self.cancelled


@dataclass
class FakeState:
    processed: set[UUID] = field(default_factory=set)
    complaints: dict[str, Complaint] = field(default_factory=dict)
    timers: dict[str, FakeTimer] = field(default_factory=dict)
    outbox: list[ComplaintEvent] = field(default_factory=list)
    fingerprint: str | None = None


class FakeConnection:
    def __init__(self, store: "FakeComplaintsStore") -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        saved = copy.deepcopy(self._store.state)
        try:
            yield
        except BaseException:
            self._store.state = saved
            raise


class FakePool:
    def __init__(self, store: "FakeComplaintsStore") -> None:
        self._store = store

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self._store)


class FakeComplaintsStore(ComplaintsStore):
    """Subclassed, so that mypy holds its signatures to the real store's."""

    def __init__(self) -> None:  # no pool: nothing here touches PostgreSQL
        self.state = FakeState()
        self.pool = cast(asyncpg.Pool, FakePool(self))

    def connection(self) -> Connection:
        """A connection for calls the scheduler would make (`fire_timer`)."""
        return cast(Connection, FakeConnection(self))

    # -- what tests look at ----------------------------------------------------------

    @property
    def outbox(self) -> list[ComplaintEvent]:
        return self.state.outbox

    def pending_timers(self) -> dict[str, timers.Timer]:
        return {k: t.timer for k, t in self.state.timers.items() if t.pending}

    def due_timers(self, now: datetime) -> list[timers.Timer]:
        """What `TimerScheduler.fire_due(now)` would claim, in due order."""
        due = [t.timer for t in self.state.timers.values() if t.pending and t.timer.due_at <= now]
        return sorted(due, key=lambda t: t.due_at)

    def mark_fired(self, timer_id: str, now: datetime) -> None:
        self.state.timers[timer_id].fired_at = now

    # -- the store's methods ----------------------------------------------------------

    async def first_time(self, connection: Connection, input_id: UUID) -> bool:
        if input_id in self.state.processed:
            return False
        self.state.processed.add(input_id)
        return True

    async def load(
        self, connection: Connection, complaint_id: str, *, lock: bool = False
    ) -> Complaint | None:
        return self.state.complaints.get(complaint_id)

    async def save(self, connection: Connection, complaint: Complaint) -> None:
        self.state.complaints[complaint.complaint_id] = complaint

    async def erase_free_text(self, connection: Connection, customer_ref: str) -> CustomerCases:
        theirs = [c for c in self.state.complaints.values() if c.customer_ref == customer_ref]
        scrubbed = [c for c in theirs if holds_free_text(c)]
        for complaint in scrubbed:
            self.state.complaints[complaint.complaint_id] = without_free_text(complaint)
        return CustomerCases(
            complaints=len(theirs),
            scrubbed=len(scrubbed),
            last_updated_at=max((c.received_at for c in theirs), default=None),  # no save times
            published_before_v2=0,  # the fake has always kept reasons apart
        )

    async def sync_timers(
        self, connection: Connection, before: Complaint | None, after: Complaint
    ) -> None:
        earlier = wanted_timers(before) if before else {}
        wanted = wanted_timers(after)
        for timer_id, timer in wanted.items():
            if earlier.get(timer_id) == timer:
                continue
            existing = self.state.timers.get(timer_id)
            if existing is None:
                self.state.timers[timer_id] = FakeTimer(timer)
            elif existing.pending:  # moved; a fired or cancelled one stays as it was
                existing.timer = timer
        for timer_id in earlier.keys() - wanted.keys():
            existing = self.state.timers.get(timer_id)
            if existing is not None and existing.pending:
                existing.cancelled = True

    async def first_times(self, connection: Connection, input_ids: Sequence[UUID]) -> set[UUID]:
        return {i for i in input_ids if await self.first_time(connection, i)}

    async def forget(self, connection: Connection, input_ids: Sequence[UUID]) -> None:
        self.state.processed.difference_update(input_ids)

    async def load_many(
        self, connection: Connection, complaint_ids: Sequence[str]
    ) -> dict[str, Complaint]:
        found = {i: self.state.complaints.get(i) for i in complaint_ids}
        return {i: c for i, c in found.items() if c is not None}

    async def save_many(self, connection: Connection, complaints: Sequence[Complaint]) -> None:
        for complaint in complaints:
            await self.save(connection, complaint)

    async def write_timers(self, connection: Connection, changes: timers.TimerChanges) -> None:
        """The buffered calls replayed one by one, with the single calls' rules."""
        for call in changes.calls:
            if isinstance(call, str):
                existing = self.state.timers.get(call)
                if existing is not None and existing.pending:
                    existing.cancelled = True
                continue
            existing = self.state.timers.get(call.timer_id)
            if existing is None:
                self.state.timers[call.timer_id] = FakeTimer(call)
            elif existing.pending:
                existing.timer = call
        changes.calls.clear()

    async def enqueue(self, connection: Connection, events: Sequence[ComplaintEvent]) -> None:
        self.state.outbox.extend(events)

    async def lock_recalculation(self, connection: Connection) -> None:
        return None

    async def calendar_fingerprint(self, connection: Connection) -> str | None:
        return self.state.fingerprint

    async def save_calendar_fingerprint(self, connection: Connection, fingerprint: str) -> None:
        self.state.fingerprint = fingerprint

    async def open_complaints(
        self, connection: Connection, *, batch_size: int = 500
    ) -> AsyncIterator[Sequence[Complaint]]:
        def may_run(c: Complaint) -> bool:
            window = c.escalation_window
            closed_in_window = c.status is Status.CLOSED and window is not None and window.open
            return c.status not in SETTLED or closed_in_window

        unsettled = sorted(
            filter(may_run, self.state.complaints.values()), key=lambda c: c.complaint_id
        )
        for start in range(0, len(unsettled), batch_size):
            yield unsettled[start : start + batch_size]

    async def get(self, complaint_id: str) -> Complaint | None:
        return self.state.complaints.get(complaint_id)

    async def open_counts(self) -> list[OpenCount]:
        counts: dict[tuple[str, int, str], int] = {}
        for c in self.state.complaints.values():
            if c.status not in SETTLED:
                key = (c.procedure.value, c.stage, c.status.value)
                counts[key] = counts.get(key, 0) + 1
        return [OpenCount(p, stage, status, n) for (p, stage, status), n in counts.items()]

    async def deadlines_due_on(self, day: date) -> int:
        end = end_of_local_day(day)
        return sum(
            1
            for t in self.state.timers.values()
            if t.pending and t.timer.kind != WINDOW_TIMER_KIND and t.timer.due_at == end
        )

    async def learning_actions_overdue(self, today: date) -> int:
        return sum(
            1
            for c in self.state.complaints.values()
            for a in c.learning_actions
            if a.completed_on is None and a.due_date is not None and a.due_date < today
        )

    async def worklist(self, query: WorklistQuery) -> list[Complaint]:
        def wanted(c: Complaint) -> bool:
            due, deadline = c.next_due_date(), c.next_deadline()
            checks: list[Any] = [
                query.state == "all" or (query.state == "open") == (c.status not in SETTLED),
                query.stage is None or c.stage == query.stage,
                query.procedure is None or c.procedure.value == query.procedure,
                query.service_area is None or c.service_area == query.service_area,
                query.due_before is None or (due is not None and due < query.due_before),
                not query.overdue or (deadline is not None and deadline < query.today),
            ]
            return all(checks)

        def order(c: Complaint) -> tuple[bool, date, str]:
            due = c.next_due_date()
            return (due is None, due or date.min, c.complaint_id)

        rows = sorted(filter(wanted, self.state.complaints.values()), key=order)
        if query.after is not None:
            after_due, after_id = query.after
            mark = (after_due is None, after_due or date.min, after_id)
            rows = [c for c in rows if order(c) > mark]
        return rows[: query.limit]
