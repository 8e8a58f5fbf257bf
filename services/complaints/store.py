"""The complaints service's PostgreSQL state: complaints, their timers and the worklist.

`ComplaintsStore` is handed to the handler. Methods that change state take the
connection of the caller's transaction, so that the processed-input record,
the complaint, its timers and its outgoing events commit together; reads for
the HTTP API and the gauges borrow a connection from the pool.
tests/support/fake_complaints_store.py is its in-memory twin, held to the
same behaviour by tests/unit/test_complaints_store_contract.py.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from uuid import UUID

import asyncpg

from services.complaints.domain import SETTLED, WINDOW_TIMER_KIND, Complaint, Deadline
from services.complaints.domain.erasure import holds_free_text, without_free_text
from services.complaints.settings import SERVICE
from services.complaints.working_days import end_of_local_day
from shared import timers
from shared.events.complaints import ComplaintEvent
from shared.outbox import enqueue
from shared.postgres import Connection
from shared.processed_events import first_time, first_times

MIGRATIONS = Path(__file__).with_name("migrations")
_SETTLED = [status.value for status in SETTLED]
_RECALCULATION_LOCK = 0x636F6D706C61  # "compla": one replica recounts at a time


@dataclass(frozen=True, slots=True)
class OpenCount:
    procedure: str
    stage: int
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class WorklistQuery:
    """The officer's filters; `after` is the last row of the previous page (keyset)."""

    today: date
    state: str = "open"  # open, closed or all
    stage: int | None = None
    procedure: str | None = None
    service_area: str | None = None
    due_before: date | None = None
    overdue: bool = False
    after: tuple[date | None, str] | None = None
    limit: int = 50


def timer_for(complaint: Complaint, deadline: Deadline) -> timers.Timer:
    return timers.Timer(
        timer_id=f"{complaint.complaint_id}/{deadline.timer_id}",
        kind=deadline.kind.value,
        subject=complaint.complaint_id,
        due_at=end_of_local_day(deadline.due_date),
        payload={"stage": deadline.stage, "due_date": deadline.due_date.isoformat()},
    )


def wanted_timers(complaint: Complaint) -> dict[str, timers.Timer]:
    """The timers a complaint's state asks for: running deadlines and an open window."""
    wanted = {
        f"{complaint.complaint_id}/{d.timer_id}": timer_for(complaint, d)
        for d in complaint.pending_deadlines()
    }
    window = complaint.escalation_window
    if window is not None and window.open:
        timer_id = f"{complaint.complaint_id}/{window.timer_id}"
        wanted[timer_id] = timers.Timer(
            timer_id=timer_id,
            kind=WINDOW_TIMER_KIND,
            subject=complaint.complaint_id,
            due_at=end_of_local_day(window.ends),
            payload={"stage": window.stage, "due_date": window.ends.isoformat()},
        )
    return wanted


def note_timers(changes: timers.TimerChanges, before: Complaint | None, after: Complaint) -> None:
    """Buffer the timer changes from `before` to `after`: started, moved or cancelled."""
    earlier = wanted_timers(before) if before else {}
    wanted = wanted_timers(after)
    for timer_id, timer in wanted.items():
        if earlier.get(timer_id) != timer:
            changes.schedule(timer)
    for timer_id in earlier.keys() - wanted.keys():
        # A no-op for a timer that has fired: the breach stays recorded.
        changes.cancel(timer_id)


@dataclass(frozen=True, slots=True)
class CustomerCases:
    """What erasure found of one customer's complaints."""

    complaints: int
    scrubbed: int  # those whose officers' free text was removed
    last_updated_at: datetime | None
    published_before_v2: int


class ComplaintsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- inside the caller's transaction ------------------------------------------

    async def first_time(self, connection: Connection, input_id: UUID) -> bool:
        """Record that an input (event or action) was processed; False if it was before."""
        return await first_time(connection, SERVICE, input_id)

    async def load(
        self, connection: Connection, complaint_id: str, *, lock: bool = False
    ) -> Complaint | None:
        """The complaint, locked for this transaction when `lock` (actions on it queue up)."""
        state = await connection.fetchval(
            "SELECT state FROM complaints WHERE complaint_id = $1"
            + (" FOR UPDATE" if lock else ""),
            complaint_id,
        )
        return None if state is None else Complaint.model_validate_json(state)

    async def save(self, connection: Connection, complaint: Complaint) -> None:
        await connection.execute(
            """
            INSERT INTO complaints (complaint_id, procedure, statutory, service_area, channel,
                                    stage, status, next_deadline, next_due_date, state,
                                    received_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (complaint_id) DO UPDATE
                SET stage = EXCLUDED.stage, status = EXCLUDED.status,
                    next_deadline = EXCLUDED.next_deadline,
                    next_due_date = EXCLUDED.next_due_date, state = EXCLUDED.state,
                    updated_at = now()
            """,
            complaint.complaint_id,
            complaint.procedure.value,
            complaint.statutory,
            complaint.service_area,
            complaint.channel.value,
            complaint.stage,
            complaint.status.value,
            complaint.next_deadline(),
            complaint.next_due_date(),
            complaint.model_dump_json(),
            complaint.received_at,
        )

    async def sync_timers(
        self, connection: Connection, before: Complaint | None, after: Complaint
    ) -> None:
        """One timer per running deadline and open window: started, moved or cancelled."""
        earlier = wanted_timers(before) if before else {}
        wanted = wanted_timers(after)
        for timer_id, timer in wanted.items():
            if earlier.get(timer_id) != timer:
                await timers.schedule(connection, SERVICE, timer)
        for timer_id in earlier.keys() - wanted.keys():
            # A no-op for a timer that has fired: the breach stays recorded.
            await timers.cancel(connection, SERVICE, timer_id)

    # -- a batch's reads and writes, one statement each -------------------------------

    async def first_times(self, connection: Connection, input_ids: Sequence[UUID]) -> set[UUID]:
        """`first_time` for a batch: the ids not processed before, now recorded."""
        return await first_times(connection, SERVICE, input_ids)

    async def forget(self, connection: Connection, input_ids: Sequence[UUID]) -> None:
        """Undo `first_times` for refused inputs, as a refused input's savepoint would."""
        if input_ids:
            await connection.execute(
                "DELETE FROM processed_events WHERE service = $1 AND event_id = ANY($2::uuid[])",
                SERVICE,
                list(input_ids),
            )

    async def load_many(
        self, connection: Connection, complaint_ids: Sequence[str]
    ) -> dict[str, Complaint]:
        """The complaints that exist, locked in id order (two batches never deadlock)."""
        rows = await connection.fetch(
            """
            SELECT complaint_id, state FROM complaints WHERE complaint_id = ANY($1::text[])
            ORDER BY complaint_id FOR UPDATE
            """,
            list(complaint_ids),
        )
        return {row["complaint_id"]: Complaint.model_validate_json(row["state"]) for row in rows}

    async def save_many(self, connection: Connection, complaints: Sequence[Complaint]) -> None:
        """`save` for a batch: one upsert from arrays, one row per complaint."""
        if not complaints:
            return
        await connection.execute(
            """
            INSERT INTO complaints (complaint_id, procedure, statutory, service_area, channel,
                                    stage, status, next_deadline, next_due_date, state,
                                    received_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::text[],
                                 $6::int[], $7::text[], $8::date[], $9::date[], $10::jsonb[],
                                 $11::timestamptz[])
            ON CONFLICT (complaint_id) DO UPDATE
                SET stage = EXCLUDED.stage, status = EXCLUDED.status,
                    next_deadline = EXCLUDED.next_deadline,
                    next_due_date = EXCLUDED.next_due_date, state = EXCLUDED.state,
                    updated_at = now()
            """,
            [c.complaint_id for c in complaints],
            [c.procedure.value for c in complaints],
            [c.statutory for c in complaints],
            [c.service_area for c in complaints],
            [c.channel.value for c in complaints],
            [c.stage for c in complaints],
            [c.status.value for c in complaints],
            [c.next_deadline() for c in complaints],
            [c.next_due_date() for c in complaints],
            [c.model_dump_json() for c in complaints],
            [c.received_at for c in complaints],
        )

    async def write_timers(self, connection: Connection, changes: timers.TimerChanges) -> None:
        await changes.write(connection, SERVICE)

    async def enqueue(self, connection: Connection, events: Sequence[ComplaintEvent]) -> None:
        """Outgoing events, in the transaction of the state that caused them."""
        await enqueue(connection, SERVICE, events)

    async def lock_recalculation(self, connection: Connection) -> None:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _RECALCULATION_LOCK)

    async def calendar_fingerprint(self, connection: Connection) -> str | None:
        fingerprint: str | None = await connection.fetchval(
            "SELECT fingerprint FROM complaints_calendar WHERE id = 1"
        )
        return fingerprint

    async def save_calendar_fingerprint(self, connection: Connection, fingerprint: str) -> None:
        await connection.execute(
            """
            INSERT INTO complaints_calendar (id, fingerprint) VALUES (1, $1)
            ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, updated_at = now()
            """,
            fingerprint,
        )

    async def open_complaints(
        self, connection: Connection, *, batch_size: int = 500
    ) -> AsyncIterator[Sequence[Complaint]]:
        """Every complaint whose deadlines or escalation window may still run, locked, in
        batches (keyset paging): the unsettled ones, and those closed by hand inside their
        window (the customer may still ask for the next stage)."""
        after = ""
        while True:
            rows = await connection.fetch(
                """
                SELECT complaint_id, state FROM complaints
                WHERE (status <> ALL($1::text[])
                       OR (status = 'closed'
                           AND (state->'escalation_window'->>'used')::boolean IS false
                           AND (state->'escalation_window'->>'lapsed')::boolean IS false))
                  AND complaint_id > $2
                ORDER BY complaint_id LIMIT $3
                FOR UPDATE
                """,
                _SETTLED,
                after,
                batch_size,
            )
            if not rows:
                return
            after = rows[-1]["complaint_id"]
            yield [Complaint.model_validate_json(row["state"]) for row in rows]

    async def erase_free_text(self, connection: Connection, customer_ref: str) -> CustomerCases:
        """Remove officers' free text from the customer's complaints, in the caller's
        transaction (each complaint locked, as an action would lock it)."""
        rows = await connection.fetch(
            """
            SELECT c.state, c.updated_at, b.complaint_id IS NOT NULL AS before_v2
            FROM complaints c LEFT JOIN complaints_before_v2 b USING (complaint_id)
            WHERE c.state->>'customer_ref' = $1 FOR UPDATE OF c
            """,
            customer_ref,
        )
        theirs = [Complaint.model_validate_json(row["state"]) for row in rows]
        scrubbed = [without_free_text(c) for c in theirs if holds_free_text(c)]
        await self.save_many(connection, scrubbed)
        return CustomerCases(
            complaints=len(rows),
            scrubbed=len(scrubbed),
            last_updated_at=max((row["updated_at"] for row in rows), default=None),
            published_before_v2=sum(row["before_v2"] for row in rows),
        )

    # -- reads on their own connection ----------------------------------------------

    async def get(self, complaint_id: str) -> Complaint | None:
        async with self.pool.acquire() as connection:
            return await self.load(connection, complaint_id)

    async def open_counts(self) -> list[OpenCount]:
        rows = await self.pool.fetch(
            """
            SELECT procedure, stage, status, count(*) AS count FROM complaints
            WHERE status <> ALL($1::text[])
            GROUP BY procedure, stage, status
            """,
            _SETTLED,
        )
        return [OpenCount(r["procedure"], r["stage"], r["status"], r["count"]) for r in rows]

    async def deadlines_due_on(self, day: date) -> int:
        """Running deadlines due on `day`: their timers all fire at the end of that day."""
        count: int = await self.pool.fetchval(
            """
            SELECT count(*) FROM timers
            WHERE service = $1 AND kind <> $2 AND due_at = $3
              AND fired_at IS NULL AND cancelled_at IS NULL
            """,
            SERVICE,
            WINDOW_TIMER_KIND,
            end_of_local_day(day),
        )
        return count

    async def learning_actions_overdue(self, today: date) -> int:
        """Learning actions past their due date and not done, on any complaint."""
        count: int = await self.pool.fetchval(
            """
            SELECT count(*) FROM complaints,
                jsonb_array_elements(coalesce(state->'learning_actions', '[]')) AS a
            WHERE a->>'completed_on' IS NULL AND (a->>'due_date')::date < $1
            """,
            today,
        )
        return count

    async def worklist(self, query: WorklistQuery) -> list[Complaint]:
        """One page of the worklist in due order (nothing due last), then by id."""
        after_due, after_id = query.after or (None, "")
        rows = await self.pool.fetch(
            """
            SELECT state FROM complaints
            WHERE ($1 = 'all' OR ($1 = 'open') = (status <> ALL($2::text[])))
              AND ($3::int IS NULL OR stage = $3)
              AND ($4::text IS NULL OR procedure = $4)
              AND ($5::text IS NULL OR service_area = $5)
              AND ($6::date IS NULL OR next_due_date < $6)
              AND (NOT $7 OR next_deadline < $8)
              AND ($9::boolean IS NULL OR (
                    CASE WHEN $10::date IS NULL
                        THEN next_due_date IS NULL AND complaint_id > $11
                        ELSE next_due_date > $10 OR next_due_date IS NULL
                             OR (next_due_date = $10 AND complaint_id > $11)
                    END))
            ORDER BY next_due_date NULLS LAST, complaint_id
            LIMIT $12
            """,
            query.state,
            _SETTLED,
            query.stage,
            query.procedure,
            query.service_area,
            query.due_before,
            query.overdue,
            query.today,
            True if query.after is not None else None,
            after_due,
            after_id,
            query.limit,
        )
        return [Complaint.model_validate_json(row["state"]) for row in rows]
