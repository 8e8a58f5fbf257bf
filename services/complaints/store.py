"""The complaints service's PostgreSQL state: complaints and their deadline timers."""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg

from services.complaints.domain import SETTLED, Complaint, Deadline
from services.complaints.working_days import end_of_local_day
from shared import timers
from shared.postgres import Connection

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE = "complaints"
_SETTLED = [status.value for status in SETTLED]


async def load(
    connection: Connection, complaint_id: str, *, lock: bool = False
) -> Complaint | None:
    """The complaint, locked for this transaction when `lock` (actions on it queue up)."""
    state = await connection.fetchval(
        "SELECT state FROM complaints WHERE complaint_id = $1" + (" FOR UPDATE" if lock else ""),
        complaint_id,
    )
    return None if state is None else Complaint.model_validate_json(state)


async def save(connection: Connection, complaint: Complaint) -> None:
    await connection.execute(
        """
        INSERT INTO complaints (complaint_id, procedure, statutory, service_area, stage, status,
                                state, received_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (complaint_id) DO UPDATE
            SET stage = EXCLUDED.stage, status = EXCLUDED.status, state = EXCLUDED.state,
                updated_at = now()
        """,
        complaint.complaint_id,
        complaint.procedure.value,
        complaint.statutory,
        complaint.service_area,
        complaint.stage,
        complaint.status.value,
        complaint.model_dump_json(),
        complaint.received_at,
    )


def timer_for(complaint: Complaint, deadline: Deadline) -> timers.Timer:
    return timers.Timer(
        timer_id=f"{complaint.complaint_id}/{deadline.timer_id}",
        kind=deadline.kind.value,
        subject=complaint.complaint_id,
        due_at=end_of_local_day(deadline.due_date),
        payload={"stage": deadline.stage, "due_date": deadline.due_date.isoformat()},
    )


async def sync_timers(connection: Connection, before: Complaint | None, after: Complaint) -> None:
    """One timer per running deadline: started, moved or cancelled as the state says."""
    earlier = {d.timer_id: d for d in before.deadlines} if before else {}
    for deadline in after.deadlines:
        previous = earlier.get(deadline.timer_id)
        was_running = previous is not None and previous.pending
        if deadline.pending and (previous is None or previous != deadline):
            await timers.schedule(connection, SERVICE, timer_for(after, deadline))
        elif was_running and not deadline.pending:
            # A no-op for a timer that has fired: the breach stays recorded.
            await timers.cancel(connection, SERVICE, timer_for(after, deadline).timer_id)


@dataclass(frozen=True, slots=True)
class OpenCount:
    procedure: str
    stage: int
    status: str
    count: int


async def open_counts(pool: asyncpg.Pool) -> list[OpenCount]:
    rows = await pool.fetch(
        """
        SELECT procedure, stage, status, count(*) AS count FROM complaints
        WHERE status <> ALL($1::text[])
        GROUP BY procedure, stage, status
        """,
        _SETTLED,
    )
    return [OpenCount(r["procedure"], r["stage"], r["status"], r["count"]) for r in rows]


async def deadlines_due_on(pool: asyncpg.Pool, day: date) -> int:
    """Running deadlines due on `day`: their timers all fire at the end of that day."""
    count: int = await pool.fetchval(
        """
        SELECT count(*) FROM timers
        WHERE service = $1 AND due_at = $2 AND fired_at IS NULL AND cancelled_at IS NULL
        """,
        SERVICE,
        end_of_local_day(day),
    )
    return count


async def calendar_fingerprint(connection: Connection) -> str | None:
    fingerprint: str | None = await connection.fetchval(
        "SELECT fingerprint FROM complaints_calendar WHERE id = 1"
    )
    return fingerprint


async def save_calendar_fingerprint(connection: Connection, fingerprint: str) -> None:
    await connection.execute(
        """
        INSERT INTO complaints_calendar (id, fingerprint) VALUES (1, $1)
        ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, updated_at = now()
        """,
        fingerprint,
    )


async def open_complaints(
    connection: Connection, *, batch_size: int = 500
) -> AsyncIterator[Sequence[Complaint]]:
    """Every complaint whose deadlines may still run, locked, in batches (keyset paging)."""
    after = ""
    while True:
        rows = await connection.fetch(
            """
            SELECT complaint_id, state FROM complaints
            WHERE status <> ALL($1::text[]) AND complaint_id > $2
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
