"""Deliveries' PostgreSQL state: the sender's decisions and Notify's delivery statuses.

One injectable class, SQL in plain sight, beside `FeedbackStore` (which holds
the requests and routes these rows refer to). `for_customer` is the sender's
transaction: it takes the same customer lock as erasure
(`FeedbackStore.lock_customer`), so a send and an erasure of one customer
never overlap. `tests/support/fake_deliveries.py` is its in-memory twin.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Self

import asyncpg

from services.feedback.notifications import RouteState
from services.feedback.store import FeedbackStore
from shared.postgres import Connection

# Notify's statuses that later callbacks may replace only with a later final one.
FINAL_STATUSES = ("delivered", "permanent-failure")
PERMANENT_FAILURE = "permanent-failure"
BAD_ROUTE_COLUMN = {"email": "email_bad_at", "sms": "mobile_bad_at"}


class DeliveryStore:
    def __init__(self, pool: asyncpg.Pool, *, connection: Connection | None = None) -> None:
        self._pool = pool
        self._connection = connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """The store bound to a new transaction, committed when the block ends."""
        async with self._pool.acquire() as connection, connection.transaction():
            yield type(self)(self._pool, connection=connection)

    @asynccontextmanager
    async def for_customer(self, customer_ref: str) -> AsyncIterator[Self]:
        """The store in a new transaction that holds the customer's lock until it ends."""
        async with self._pool.acquire() as connection, connection.transaction():
            await FeedbackStore(self._pool, connection=connection).lock_customer(customer_ref)
            yield type(self)(self._pool, connection=connection)

    @property
    def _db(self) -> asyncpg.Pool | Connection:
        return self._pool if self._connection is None else self._connection

    # The sender, under the customer's lock

    async def decided(self, reference: str) -> bool:
        """True once the request was sent or suppressed: it is never sent (again)."""
        return bool(
            await self._db.fetchval(
                "SELECT true FROM feedback_sent_notifications WHERE reference = $1", reference
            )
        )

    async def route_state(self, customer_ref: str) -> RouteState:
        row = await self._db.fetchrow(
            """
            SELECT r.email, r.mobile,
                   r.email_bad_at IS NOT NULL AS email_bad,
                   r.mobile_bad_at IS NOT NULL AS mobile_bad,
                   EXISTS (SELECT 1 FROM feedback_opt_outs o WHERE o.customer_ref = $1)
                       AS opted_out
            FROM (SELECT 1) AS one
            LEFT JOIN feedback_contact_routes r ON r.customer_ref = $1
            """,
            customer_ref,
        )
        assert row is not None  # one row, whether or not the customer has a route
        return RouteState(
            email=row["email"],
            mobile=row["mobile"],
            email_bad=bool(row["email_bad"]),
            mobile_bad=bool(row["mobile_bad"]),
            opted_out=row["opted_out"],
        )

    async def record_sent(
        self,
        reference: str,
        customer_ref: str,
        notification_type: str,
        notification_id: str | None,
        now: datetime,
    ) -> None:
        await self._db.execute(
            """
            INSERT INTO feedback_sent_notifications
                (reference, notification_id, sent_at, customer_ref, notification_type)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO NOTHING
            """,
            reference,
            notification_id,
            now,
            customer_ref,
            notification_type,
        )

    async def record_suppressed(
        self, reference: str, customer_ref: str, reason: str, now: datetime
    ) -> None:
        await self._db.execute(
            """
            INSERT INTO feedback_sent_notifications
                (reference, sent_at, customer_ref, suppressed_reason)
            VALUES ($1, $2, $3, $4) ON CONFLICT (reference) DO NOTHING
            """,
            reference,
            now,
            customer_ref,
            reason,
        )

    async def suppressed_reason(self, reference: str) -> str | None:
        reason: str | None = await self._db.fetchval(
            "SELECT suppressed_reason FROM feedback_sent_notifications WHERE reference = $1",
            reference,
        )
        return reason

    # Notify's delivery-status callbacks

    async def request_exists(self, reference: str) -> bool:
        return bool(
            await self._db.fetchval(
                "SELECT true FROM feedback_requests WHERE request_id = $1", reference
            )
        )

    async def record_status(
        self,
        reference: str,
        notification_id: str,
        notification_type: str,
        status: str,
        status_at: datetime,
        now: datetime,
    ) -> bool:
        """Keep the latest status; False if this one is a repeat or older.

        Callbacks can arrive twice or out of order: a final status (delivered,
        permanent failure) is replaced only by a later final one, and any
        other only by a final one or a later one.
        """
        changed = await self._db.fetchval(
            """
            INSERT INTO feedback_delivery_statuses AS d
                (reference, notification_id, notification_type, status, status_at, received_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (reference) DO UPDATE
                SET notification_id = EXCLUDED.notification_id,
                    notification_type = EXCLUDED.notification_type,
                    status = EXCLUDED.status,
                    status_at = EXCLUDED.status_at,
                    received_at = EXCLUDED.received_at
                WHERE (EXCLUDED.status = ANY($7) AND d.status <> ALL($7))
                   OR ((EXCLUDED.status = ANY($7)) = (d.status = ANY($7))
                       AND EXCLUDED.status_at > d.status_at)
            RETURNING true
            """,
            reference,
            notification_id,
            notification_type,
            status,
            status_at,
            now,
            list(FINAL_STATUSES),
        )
        return bool(changed)

    async def delivery_status(self, reference: str) -> tuple[str, datetime] | None:
        row = await self._db.fetchrow(
            "SELECT status, status_at FROM feedback_delivery_statuses WHERE reference = $1",
            reference,
        )
        return None if row is None else (row["status"], row["status_at"])

    async def mark_route_bad(
        self, reference: str, notification_type: str, created_at: datetime, now: datetime
    ) -> bool:
        """Mark the address the request went to bad, unless the CRM has replaced it since.

        A route updated after Notify created the notification is a new route:
        the failure was the old address's.
        """
        column = BAD_ROUTE_COLUMN.get(notification_type)
        if column is None:
            return False  # letters: CivicPulse sends none
        address = "email" if notification_type == "email" else "mobile"
        # Only the two fixed column names above are formatted in, never input.
        marked = await self._db.fetchval(
            f"""
            UPDATE feedback_contact_routes r SET {column} = coalesce(r.{column}, $3)
            FROM feedback_requests q
            WHERE q.request_id = $1 AND r.customer_ref = q.customer_ref
              AND r.{address} IS NOT NULL AND r.updated_at <= $2
            RETURNING true
            """,
            reference,
            created_at,
            now,
        )
        return bool(marked)
