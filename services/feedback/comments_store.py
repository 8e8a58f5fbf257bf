"""Feedback's SQL for survey comments and for the erasure receipt: part of `FeedbackStore`.

A mixin, so the store stays one injectable class (tests/support/fake_feedback_store.py
twins these methods too) while store.py keeps under the module size limit.
"""

from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.feedback.settings import SERVICE
from shared.postgres import Connection
from shared.topics import NOTIFICATIONS


@dataclass(frozen=True, slots=True)
class SurveyComment:
    """A redacted comment with where its case was; never who wrote it."""

    request_id: str
    answered_at: datetime
    service_area: str
    channel: str
    overall: int
    comment: str


@dataclass(frozen=True, slots=True)
class CustomerFootprint:
    """What feedback holds about one customer, counted in the erasing transaction.

    `rows` is per table (rows with personal data: contact details, comment text,
    unsent messages); the rest dates the copies on topics that erasure cannot delete.
    """

    rows: dict[str, int]
    requests: int
    last_requested_at: datetime | None
    answers_before_comments_kept_apart: int


class CommentsAndErasure:
    @property
    @abstractmethod
    def _db(self) -> asyncpg.Pool | Connection: ...

    @property
    @abstractmethod
    def _transaction(self) -> Connection: ...

    async def keep_comment(self, comment: SurveyComment) -> None:
        await self._transaction.execute(
            """
            INSERT INTO feedback_comments
                (request_id, answered_at, service_area, channel, overall, comment)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (request_id) DO NOTHING
            """,
            comment.request_id,
            comment.answered_at,
            comment.service_area,
            comment.channel,
            comment.overall,
            comment.comment,
        )

    async def survey_comment(self, request_id: str) -> SurveyComment | None:
        row = await self._db.fetchrow(
            "SELECT * FROM feedback_comments WHERE request_id = $1", request_id
        )
        return None if row is None else SurveyComment(**dict(row))

    async def latest_comments(
        self, limit: int, *, service_area: str | None = None
    ) -> list[SurveyComment]:
        """The newest comments, newest first (the managers' dashboard reads these)."""
        rows = await self._db.fetch(
            """
            SELECT * FROM feedback_comments
            WHERE $2::text IS NULL OR service_area = $2
            ORDER BY answered_at DESC, request_id LIMIT $1
            """,
            limit,
            service_area,
        )
        return [SurveyComment(**dict(row)) for row in rows]

    async def customer_footprint(self, customer_ref: str) -> CustomerFootprint:
        """Count what erasure will delete, and what stays on topics, before it goes."""
        row = await self._transaction.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM feedback_contact_routes WHERE customer_ref = $1) AS routes,
              (SELECT count(*) FROM feedback_comments c JOIN feedback_requests r
                 USING (request_id) WHERE r.customer_ref = $1) AS comments,
              (SELECT count(*) FROM outbox WHERE service = $2 AND topic = $3
                 AND headers ->> 'customer_ref' = $1) AS messages,
              (SELECT count(*) FROM feedback_requests WHERE customer_ref = $1) AS requests,
              (SELECT max(requested_at) FROM feedback_requests
                 WHERE customer_ref = $1) AS last_requested_at,
              (SELECT count(*) FROM feedback_answers_before_v2 a JOIN feedback_requests r
                 USING (request_id) WHERE r.customer_ref = $1) AS old_answers
            """,
            customer_ref,
            SERVICE,
            NOTIFICATIONS.name,
        )
        assert row is not None
        return CustomerFootprint(
            rows={
                "feedback_contact_routes": row["routes"],
                "feedback_comments": row["comments"],
                "outbox (unsent notifications)": row["messages"],
            },
            requests=row["requests"],
            last_requested_at=row["last_requested_at"],
            answers_before_comments_kept_apart=row["old_answers"],
        )

    async def erase_comments(self, customer_ref: str) -> int:
        """Delete the text of the customer's survey comments; the scores stay on the topic."""
        deleted = await self._transaction.fetchval(
            """
            WITH gone AS (
                DELETE FROM feedback_comments c USING feedback_requests r
                WHERE c.request_id = r.request_id AND r.customer_ref = $1
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            customer_ref,
        )
        return int(deleted)
