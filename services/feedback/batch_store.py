"""The store's set-based queries for a batch of decisions (services/feedback/batch.py).

One statement each, whatever the batch's size; mixed into `FeedbackStore`, so
they run in its transaction, and overridden by the in-memory fake.
"""

from collections.abc import Sequence
from uuid import UUID

from services.feedback.notifications import ContactRoute
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
from shared.events.vocabulary import CaseType
from shared.postgres import Connection
from shared.processed_events import first_times


class DecisionQueries:
    @property
    def _transaction(self) -> Connection:
        raise NotImplementedError

    async def first_times(self, event_ids: Sequence[UUID]) -> set[UUID]:
        return await first_times(self._transaction, SERVICE, event_ids)

    async def complaints_for(
        self, complaint_ids: Sequence[str], contact_ids: Sequence[str]
    ) -> list[ComplaintFacts]:
        """The complaints named, and every complaint that arrived on one of the contacts."""
        rows = await self._transaction.fetch(
            """
            SELECT * FROM feedback_complaints
            WHERE complaint_id = ANY($1::text[]) OR contact_id = ANY($2::text[])
            """,
            list(complaint_ids),
            list(contact_ids),
        )
        return [complaint_facts(row) for row in rows]

    async def lock_customers(self, customer_refs: Sequence[str]) -> None:
        """`lock_customer` for each, in one statement, in sorted order (no deadlocks)."""
        if customer_refs:
            # A volatile function in the select list runs after ORDER BY.
            await self._transaction.execute(
                """
                SELECT pg_advisory_xact_lock(hashtextextended('feedback:' || c, 0))
                FROM unnest($1::text[]) AS c ORDER BY c
                """,
                sorted(set(customer_refs)),
            )

    async def customer_states(self, customer_refs: Sequence[str]) -> dict[str, CustomerState]:
        """Opt-out, contact route and surveyed resolutions of each customer."""
        rows = await self._transaction.fetch(
            """
            SELECT c.customer_ref, o.customer_ref IS NOT NULL AS opted_out,
                   r.customer_ref IS NOT NULL AS routed, r.email, r.mobile,
                   array(SELECT q.resolved_at FROM feedback_requests q
                         WHERE q.customer_ref = c.customer_ref AND q.status <> 'cancelled')
                       AS surveyed
            FROM unnest($1::text[]) AS c(customer_ref)
            LEFT JOIN feedback_opt_outs o ON o.customer_ref = c.customer_ref
            LEFT JOIN feedback_contact_routes r ON r.customer_ref = c.customer_ref
            """,
            list(customer_refs),
        )
        return {
            row["customer_ref"]: CustomerState(
                opted_out=row["opted_out"],
                route=ContactRoute(email=row["email"], mobile=row["mobile"])
                if row["routed"]
                else None,
                surveyed_resolutions=list(row["surveyed"]),
            )
            for row in rows
        }

    async def requested_cases(
        self, case_keys: Sequence[tuple[CaseType, str]]
    ) -> set[tuple[CaseType, str]]:
        """Which of the cases already have a request."""
        rows = await self._transaction.fetch(
            """
            SELECT r.case_type, r.case_id FROM feedback_requests r
            JOIN unnest($1::text[], $2::text[]) AS k(case_type, case_id)
              USING (case_type, case_id)
            """,
            [case_type.value for case_type, _ in case_keys],
            [case_id for _, case_id in case_keys],
        )
        return {(CaseType(row["case_type"]), row["case_id"]) for row in rows}

    async def remember_complaints(self, facts: Sequence[ComplaintFacts]) -> None:
        """New complaints' facts, and withdrawals of known ones."""
        if not facts:
            return
        await self._transaction.execute(
            """
            INSERT INTO feedback_complaints
                (complaint_id, customer_ref, channel, service_area, procedure, contact_id,
                 withdrawn)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::boolean[])
            ON CONFLICT (complaint_id) DO UPDATE
                SET withdrawn = feedback_complaints.withdrawn OR EXCLUDED.withdrawn
            """,
            [f.complaint_id for f in facts],
            [f.customer_ref for f in facts],
            [f.channel.value for f in facts],
            [f.service_area for f in facts],
            [f.procedure.value for f in facts],
            [f.contact_id for f in facts],
            [f.withdrawn for f in facts],
        )

    async def insert_requests(self, requests: Sequence[SurveyRequest]) -> set[str]:
        """`insert_request` for each; returns the ids inserted."""
        if not requests:
            return set()
        rows = await self._transaction.fetch(
            """
            INSERT INTO feedback_requests (request_id, case_type, case_id, customer_ref,
                service_area, channel, resolved_at, send_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::timestamptz[], $8::timestamptz[])
            ON CONFLICT DO NOTHING RETURNING request_id
            """,
            [r.request_id for r in requests],
            [r.case_type.value for r in requests],
            [r.case_id for r in requests],
            [r.customer_ref for r in requests],
            [r.service_area for r in requests],
            [r.channel.value for r in requests],
            [r.resolved_at for r in requests],
            [r.send_at for r in requests],
        )
        return {row["request_id"] for row in rows}

    async def record_suppressions(self, suppressions: Sequence[Suppression]) -> None:
        if not suppressions:
            return
        await self._transaction.execute(
            """
            INSERT INTO feedback_suppressions (event_id, case_type, case_id, reason, decided_at)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                 $5::timestamptz[])
            ON CONFLICT (event_id) DO NOTHING
            """,
            [s.event_id for s in suppressions],
            [s.case_type.value for s in suppressions],
            [s.case_id for s in suppressions],
            [s.reason for s in suppressions],
            [s.decided_at for s in suppressions],
        )

    async def write_timers(self, changes: timers.TimerChanges) -> None:
        await changes.write(self._transaction, SERVICE)

    async def survey_requests(self, request_ids: Sequence[str]) -> dict[str, SurveyRequest]:
        """The requests, locked in id order (timer batches never deadlock)."""
        rows = await self._transaction.fetch(
            """
            SELECT * FROM feedback_requests WHERE request_id = ANY($1::text[])
            ORDER BY request_id FOR UPDATE
            """,
            list(request_ids),
        )
        return {row["request_id"]: survey_request(row) for row in rows}

    async def update_requests(self, requests: Sequence[SurveyRequest]) -> None:
        """Write the requests' status and its times, as the timers left them."""
        if not requests:
            return
        await self._transaction.execute(
            """
            UPDATE feedback_requests r
            SET status = u.status, requested_at = u.requested_at, expires_at = u.expires_at,
                cancel_reason = u.cancel_reason
            FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                        $5::text[]) AS u(request_id, status, requested_at, expires_at,
                                         cancel_reason)
            WHERE r.request_id = u.request_id
            """,
            [r.request_id for r in requests],
            [r.status for r in requests],
            [r.requested_at for r in requests],
            [r.expires_at for r in requests],
            [r.cancel_reason for r in requests],
        )
