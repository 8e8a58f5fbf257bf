"""Feedback's PostgreSQL state, SQL in plain sight, behind one injectable class.

`FeedbackStore.transaction()` gives the store bound to one transaction:
requests, suppressions, outbox rows and timers written through it commit
together. `joining(connection)` binds it to a transaction the caller already
holds (the timer scheduler's). Unbound, each call runs on a pooled connection.
`tests/support/fake_feedback_store.py` is its in-memory twin.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Self
from uuid import UUID

import asyncpg

from services.feedback.batch_store import DecisionQueries
from services.feedback.comments_store import CommentsAndErasure
from services.feedback.notifications import MESSAGE_TYPE_HEADER, ContactRoute, NotifyMessage
from services.feedback.records import (
    ComplaintFacts,
    CustomerState,
    Suppression,
    SurveyRequest,
    complaint_facts,
    survey_request,
)
from services.feedback.settings import SERVICE
from shared import timers
from shared.events import Event
from shared.events.vocabulary import CaseType
from shared.kafka import OutgoingRecord
from shared.outbox import enqueue, enqueue_records
from shared.postgres import Connection
from shared.processed_events import first_time
from shared.topics import NOTIFICATIONS

MIGRATIONS = Path(__file__).with_name("migrations")
__all__ = [
    "MIGRATIONS",
    "ComplaintFacts",
    "CustomerState",
    "FeedbackStore",
    "Suppression",
    "SurveyRequest",
]


class FeedbackStore(DecisionQueries, CommentsAndErasure):
    def __init__(self, pool: asyncpg.Pool, *, connection: Connection | None = None) -> None:
        self._pool = pool
        self._connection = connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """The store bound to a new transaction, committed when the block ends."""
        async with self._pool.acquire() as connection, connection.transaction():
            yield self.joining(connection)

    def joining(self, connection: Connection) -> Self:
        """The store bound to the caller's connection and transaction."""
        return type(self)(self._pool, connection=connection)

    @property
    def _db(self) -> asyncpg.Pool | Connection:
        return self._pool if self._connection is None else self._connection

    @property
    def _transaction(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("this write belongs in a transaction: use store.transaction()")
        return self._connection

    # Machinery shared by every service, in this store's transaction

    async def first_time(self, event_id: UUID) -> bool:
        """Record that the event is processed; False if it already was."""
        return await first_time(self._transaction, SERVICE, event_id)

    async def enqueue(self, events: Sequence[Event]) -> None:
        await enqueue(self._transaction, SERVICE, events)

    async def schedule_timer(self, timer: timers.Timer) -> None:
        await timers.schedule(self._transaction, SERVICE, timer)

    async def cancel_timer(self, timer_id: str) -> None:
        await timers.cancel(self._transaction, SERVICE, timer_id)

    # Contact routes and opt-outs

    async def put_contact_route(
        self, customer_ref: str, route: ContactRoute, now: datetime
    ) -> None:
        await self._db.execute(
            """
            INSERT INTO feedback_contact_routes (customer_ref, email, mobile, updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (customer_ref) DO UPDATE
                SET email = EXCLUDED.email, mobile = EXCLUDED.mobile,
                    updated_at = EXCLUDED.updated_at,
                    -- a permanent failure's mark stays on its address until it changes
                    email_bad_at = CASE WHEN feedback_contact_routes.email = EXCLUDED.email
                        THEN feedback_contact_routes.email_bad_at END,
                    mobile_bad_at = CASE WHEN feedback_contact_routes.mobile = EXCLUDED.mobile
                        THEN feedback_contact_routes.mobile_bad_at END
            """,
            customer_ref,
            route.email,
            route.mobile,
            now,
        )

    async def contact_route(self, customer_ref: str) -> ContactRoute | None:
        row = await self._db.fetchrow(
            "SELECT email, mobile FROM feedback_contact_routes WHERE customer_ref = $1",
            customer_ref,
        )
        return None if row is None else ContactRoute(email=row["email"], mobile=row["mobile"])

    async def erase_customer(self, customer_ref: str) -> int:
        """Delete the customer's contact details, and unsent messages that carry them.

        Returns how many rows held personal data.
        """
        routes = await self._db.fetchval(
            "WITH gone AS (DELETE FROM feedback_contact_routes WHERE customer_ref = $1 RETURNING 1)"
            " SELECT count(*) FROM gone",
            customer_ref,
        )
        messages = await self._db.fetchval(
            """
            WITH gone AS (
                DELETE FROM outbox
                WHERE service = $1 AND topic = $2 AND headers ->> 'customer_ref' = $3
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            SERVICE,
            NOTIFICATIONS.name,
            customer_ref,
        )
        return int(routes) + int(messages)

    async def opt_out(self, customer_ref: str, now: datetime) -> bool:
        """Record the opt-out; False if the customer had already opted out."""
        inserted = await self._db.fetchval(
            """
            INSERT INTO feedback_opt_outs (customer_ref, opted_out_at) VALUES ($1, $2)
            ON CONFLICT (customer_ref) DO NOTHING RETURNING true
            """,
            customer_ref,
            now,
        )
        return bool(inserted)

    async def is_opted_out(self, customer_ref: str) -> bool:
        return bool(
            await self._db.fetchval(
                "SELECT true FROM feedback_opt_outs WHERE customer_ref = $1", customer_ref
            )
        )

    async def lock_customer(self, customer_ref: str) -> None:
        """Serialise decisions about one customer across replicas (the quiet period)."""
        await self.lock_customers([customer_ref])

    async def remember_complaint(self, facts: ComplaintFacts) -> None:
        await self._db.execute(
            """
            INSERT INTO feedback_complaints
                (complaint_id, customer_ref, channel, service_area, procedure, contact_id)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (complaint_id) DO NOTHING
            """,
            facts.complaint_id,
            facts.customer_ref,
            facts.channel.value,
            facts.service_area,
            facts.procedure.value,
            facts.contact_id,
        )

    async def mark_withdrawn(self, complaint_id: str) -> None:
        await self._db.execute(
            "UPDATE feedback_complaints SET withdrawn = true WHERE complaint_id = $1", complaint_id
        )

    async def complaint(self, complaint_id: str) -> ComplaintFacts | None:
        row = await self._db.fetchrow(
            "SELECT * FROM feedback_complaints WHERE complaint_id = $1", complaint_id
        )
        return None if row is None else complaint_facts(row)

    async def complaints_from_contact(self, contact_id: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT complaint_id FROM feedback_complaints WHERE contact_id = $1", contact_id
        )
        return [row["complaint_id"] for row in rows]

    # Requests

    async def any_request_for(self, case_keys: Sequence[tuple[CaseType, str]]) -> bool:
        return bool(
            await self._db.fetchval(
                """
                SELECT true FROM feedback_requests r
                JOIN unnest($1::text[], $2::text[]) AS k(case_type, case_id)
                  USING (case_type, case_id)
                LIMIT 1
                """,
                [case_type.value for case_type, _ in case_keys],
                [case_id for _, case_id in case_keys],
            )
        )

    async def surveyed_resolutions(self, customer_ref: str) -> tuple[datetime, ...]:
        rows = await self._db.fetch(
            """
            SELECT resolved_at FROM feedback_requests
            WHERE customer_ref = $1 AND status <> 'cancelled'
            """,
            customer_ref,
        )
        return tuple(row["resolved_at"] for row in rows)

    async def insert_request(self, request: SurveyRequest) -> bool:
        inserted = await self._db.fetchval(
            """
            INSERT INTO feedback_requests (request_id, case_type, case_id, customer_ref,
                service_area, channel, resolved_at, send_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT DO NOTHING RETURNING true
            """,
            request.request_id,
            request.case_type.value,
            request.case_id,
            request.customer_ref,
            request.service_area,
            request.channel.value,
            request.resolved_at,
            request.send_at,
        )
        return bool(inserted)

    async def survey_request(
        self, request_id: str, *, for_update: bool = False
    ) -> SurveyRequest | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._db.fetchrow(
            f"SELECT * FROM feedback_requests WHERE request_id = $1{lock}", request_id
        )
        return None if row is None else survey_request(row)

    async def request_for_case(self, case_type: CaseType, case_id: str) -> SurveyRequest | None:
        row = await self._db.fetchrow(
            "SELECT * FROM feedback_requests WHERE case_type = $1 AND case_id = $2",
            case_type.value,
            case_id,
        )
        return None if row is None else survey_request(row)

    async def mark_requested(self, request_id: str, now: datetime, expires_at: datetime) -> None:
        await self._db.execute(
            """
            UPDATE feedback_requests SET status = 'requested', requested_at = $2, expires_at = $3
            WHERE request_id = $1
            """,
            request_id,
            now,
            expires_at,
        )

    async def cancel_request(self, request_id: str, reason: str) -> None:
        await self._db.execute(
            """
            UPDATE feedback_requests SET status = 'cancelled', cancel_reason = $2
            WHERE request_id = $1 AND status = 'scheduled'
            """,
            request_id,
            reason,
        )

    async def mark_expired(self, request_id: str) -> bool:
        expired = await self._db.fetchval(
            """
            UPDATE feedback_requests SET status = 'expired'
            WHERE request_id = $1 AND status = 'requested' RETURNING true
            """,
            request_id,
        )
        return bool(expired)

    async def record_answer(self, request_id: str, now: datetime) -> bool:
        """Mark the request answered; False if it was not open (answered, expired, unknown).

        The conditional update is what makes a link single use, even for two
        answers racing: only one of them finds the request still open.
        """
        answered = await self._db.fetchval(
            """
            UPDATE feedback_requests SET status = 'answered', answered_at = $2
            WHERE request_id = $1 AND status = 'requested' AND expires_at > $2
            RETURNING true
            """,
            request_id,
            now,
        )
        return bool(answered)

    # Suppressions

    async def record_suppression(
        self,
        event_id: object,
        case_type: CaseType,
        case_id: str,
        reason: str,
        now: datetime,
    ) -> None:
        await self._db.execute(
            """
            INSERT INTO feedback_suppressions (event_id, case_type, case_id, reason, decided_at)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING
            """,
            event_id,
            case_type.value,
            case_id,
            reason,
            now,
        )

    async def suppressions_for(
        self, case_type: CaseType, case_id: str
    ) -> list[tuple[str, datetime]]:
        rows = await self._db.fetch(
            """
            SELECT reason, decided_at FROM feedback_suppressions
            WHERE case_type = $1 AND case_id = $2 ORDER BY decided_at
            """,
            case_type.value,
            case_id,
        )
        return [(row["reason"], row["decided_at"]) for row in rows]

    # Notifications: not catalogue events, so written to the outbox table directly

    async def enqueue_notification(self, message: NotifyMessage) -> None:
        """Queue the message in the shared outbox, in the caller's transaction."""
        await self.enqueue_notifications([message])

    async def enqueue_notifications(self, messages: Sequence[NotifyMessage]) -> None:
        """Queue messages in the shared outbox, in order, in one statement.

        `customer_ref` in the headers lets erasure find an unsent message.
        """
        records = [
            OutgoingRecord(
                NOTIFICATIONS.name,
                message.reference.encode(),
                message.to_bytes(),
                {
                    MESSAGE_TYPE_HEADER: message.notification_type,
                    "customer_ref": message.customer_ref,
                },
            )
            for message in messages
        ]
        await enqueue_records(self._transaction, SERVICE, records)
