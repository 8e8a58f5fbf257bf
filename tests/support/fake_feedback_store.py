"""Feedback's store in memory, and the two backends feedback's handler tests run against.

`FakeFeedbackStore` subclasses `FeedbackStore` so that mypy holds the two in
step, and keeps the rules its SQL keeps: one request per case, single-use
answers, pending-only timer moves, and a transaction that rolls back on error.
`tests/unit/test_feedback_handlers.py` runs one test body against it and
against PostgreSQL, and proves it overrides every public method.
"""

import copy
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self
from uuid import UUID

import asyncpg

from services.feedback.comments_store import CustomerFootprint, SurveyComment
from services.feedback.handlers import FeedbackHandler
from services.feedback.notifications import ContactRoute, NotifyMessage
from services.feedback.settings import SERVICE
from services.feedback.store import (
    MIGRATIONS,
    ComplaintFacts,
    CustomerState,
    FeedbackStore,
    Suppression,
    SurveyRequest,
)
from shared import timers
from shared.events import Event
from shared.events.catalogue import parse_event
from shared.events.vocabulary import CaseType
from shared.postgres import Connection, migrate
from shared.topics import NOTIFICATIONS

CaseKey = tuple[CaseType, str]


@dataclass
class _Timer:
    timer: timers.Timer
    fired: bool = False
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        return not (self.fired or self.cancelled)


@dataclass
class FeedbackState:
    routes: dict[str, ContactRoute] = field(default_factory=dict)
    opt_outs: dict[str, datetime] = field(default_factory=dict)
    complaints: dict[str, ComplaintFacts] = field(default_factory=dict)
    requests: dict[str, SurveyRequest] = field(default_factory=dict)
    suppressions: dict[UUID, tuple[CaseKey, str, datetime]] = field(default_factory=dict)
    processed: set[UUID] = field(default_factory=set)
    outbox_events: list[Event] = field(default_factory=list)
    outbox_notifications: list[NotifyMessage] = field(default_factory=list)
    timers: dict[str, _Timer] = field(default_factory=dict)
    comments: dict[str, SurveyComment] = field(default_factory=dict)


class FakeFeedbackStore(FeedbackStore):
    def __init__(self, state: FeedbackState | None = None) -> None:  # no pool
        self.state = state or FeedbackState()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        before = copy.deepcopy(self.state)
        try:
            yield self
        except BaseException:
            self.state.__dict__.update(before.__dict__)
            raise

    def joining(self, connection: Connection) -> Self:
        return self

    # Machinery shared by every service

    async def first_time(self, event_id: UUID) -> bool:
        if event_id in self.state.processed:
            return False
        self.state.processed.add(event_id)
        return True

    async def enqueue(self, events: Sequence[Event]) -> None:
        self.state.outbox_events.extend(events)

    async def schedule_timer(self, timer: timers.Timer) -> None:
        existing = self.state.timers.get(timer.timer_id)
        if existing is None:
            self.state.timers[timer.timer_id] = _Timer(timer)
        elif existing.pending:
            existing.timer = dataclasses.replace(
                existing.timer, due_at=timer.due_at, payload=timer.payload
            )

    async def cancel_timer(self, timer_id: str) -> None:
        existing = self.state.timers.get(timer_id)
        if existing is not None and existing.pending:
            existing.cancelled = True

    # A batch of decisions: the set-based queries, each as its single calls would do

    async def first_times(self, event_ids: Sequence[UUID]) -> set[UUID]:
        return {event_id for event_id in event_ids if await self.first_time(event_id)}

    async def complaints_for(
        self, complaint_ids: Sequence[str], contact_ids: Sequence[str]
    ) -> list[ComplaintFacts]:
        return [
            c
            for c in self.state.complaints.values()
            if c.complaint_id in complaint_ids or c.contact_id in contact_ids
        ]

    async def lock_customers(self, customer_refs: Sequence[str]) -> None:
        return  # as `lock_customer`

    async def customer_states(self, customer_refs: Sequence[str]) -> dict[str, CustomerState]:
        return {
            c: CustomerState(
                await self.is_opted_out(c),
                await self.contact_route(c),
                list(await self.surveyed_resolutions(c)),
            )
            for c in customer_refs
        }

    async def requested_cases(self, case_keys: Sequence[CaseKey]) -> set[CaseKey]:
        return {key for key in case_keys if await self.any_request_for([key])}

    async def remember_complaints(self, facts: Sequence[ComplaintFacts]) -> None:
        for fact in facts:
            await self.remember_complaint(fact)
            if fact.withdrawn:
                await self.mark_withdrawn(fact.complaint_id)

    async def insert_requests(self, requests: Sequence[SurveyRequest]) -> set[str]:
        return {r.request_id for r in requests if await self.insert_request(r)}

    async def record_suppressions(self, suppressions: Sequence[Suppression]) -> None:
        for s in suppressions:
            await self.record_suppression(
                s.event_id, s.case_type, s.case_id, s.reason, s.decided_at
            )

    async def write_timers(self, changes: timers.TimerChanges) -> None:
        """The buffered calls replayed one by one, with the single calls' rules."""
        for call in changes.calls:
            if isinstance(call, str):
                await self.cancel_timer(call)
            else:
                await self.schedule_timer(call)
        changes.calls.clear()

    async def survey_requests(self, request_ids: Sequence[str]) -> dict[str, SurveyRequest]:
        return {i: self.state.requests[i] for i in request_ids if i in self.state.requests}

    async def update_requests(self, requests: Sequence[SurveyRequest]) -> None:
        for request in requests:
            if request.request_id in self.state.requests:
                self.state.requests[request.request_id] = request

    async def enqueue_notifications(self, messages: Sequence[NotifyMessage]) -> None:
        for message in messages:
            await self.enqueue_notification(message)

    # Contact routes and opt-outs

    async def put_contact_route(
        self, customer_ref: str, route: ContactRoute, now: datetime
    ) -> None:
        self.state.routes[customer_ref] = route

    async def contact_route(self, customer_ref: str) -> ContactRoute | None:
        return self.state.routes.get(customer_ref)

    async def erase_customer(self, customer_ref: str) -> int:
        routes = int(self.state.routes.pop(customer_ref, None) is not None)
        kept = [m for m in self.state.outbox_notifications if m.customer_ref != customer_ref]
        messages = len(self.state.outbox_notifications) - len(kept)
        self.state.outbox_notifications = kept
        return routes + messages

    # Survey comments and the erasure receipt (comments_store.py)

    async def keep_comment(self, comment: SurveyComment) -> None:
        self.state.comments.setdefault(comment.request_id, comment)

    async def survey_comment(self, request_id: str) -> SurveyComment | None:
        return self.state.comments.get(request_id)

    async def latest_comments(
        self, limit: int, *, service_area: str | None = None
    ) -> list[SurveyComment]:
        found = [c for c in self.state.comments.values() if service_area in (None, c.service_area)]
        found.sort(key=lambda c: c.request_id)
        found.sort(key=lambda c: c.answered_at, reverse=True)
        return found[:limit]

    def _customer_requests(self, customer_ref: str) -> list[SurveyRequest]:
        return [r for r in self.state.requests.values() if r.customer_ref == customer_ref]

    async def customer_footprint(self, customer_ref: str) -> CustomerFootprint:
        requests = self._customer_requests(customer_ref)
        ids = {r.request_id for r in requests}
        requested = [r.requested_at for r in requests if r.requested_at is not None]
        return CustomerFootprint(
            rows={
                "feedback_contact_routes": int(customer_ref in self.state.routes),
                "feedback_comments": len(ids & set(self.state.comments)),
                "outbox (unsent notifications)": sum(
                    m.customer_ref == customer_ref for m in self.state.outbox_notifications
                ),
            },
            requests=len(requests),
            last_requested_at=max(requested, default=None),
            answers_before_comments_kept_apart=0,  # the fake has always kept them apart
        )

    async def erase_comments(self, customer_ref: str) -> int:
        ids = {r.request_id for r in self._customer_requests(customer_ref)} & set(
            self.state.comments
        )
        for request_id in ids:
            del self.state.comments[request_id]
        return len(ids)

    async def opt_out(self, customer_ref: str, now: datetime) -> bool:
        if customer_ref in self.state.opt_outs:
            return False
        self.state.opt_outs[customer_ref] = now
        return True

    async def is_opted_out(self, customer_ref: str) -> bool:
        return customer_ref in self.state.opt_outs

    async def lock_customer(self, customer_ref: str) -> None:
        return  # one process, one transaction at a time: nothing to serialise

    # Complaints

    async def remember_complaint(self, facts: ComplaintFacts) -> None:
        self.state.complaints.setdefault(facts.complaint_id, facts)

    async def mark_withdrawn(self, complaint_id: str) -> None:
        facts = self.state.complaints.get(complaint_id)
        if facts is not None:
            self.state.complaints[complaint_id] = dataclasses.replace(facts, withdrawn=True)

    async def complaint(self, complaint_id: str) -> ComplaintFacts | None:
        return self.state.complaints.get(complaint_id)

    async def complaints_from_contact(self, contact_id: str) -> list[str]:
        return [
            c.complaint_id for c in self.state.complaints.values() if c.contact_id == contact_id
        ]

    # Requests

    async def any_request_for(self, case_keys: Sequence[CaseKey]) -> bool:
        return any(self._case_key(r) in set(case_keys) for r in self.state.requests.values())

    async def surveyed_resolutions(self, customer_ref: str) -> tuple[datetime, ...]:
        return tuple(
            r.resolved_at
            for r in self.state.requests.values()
            if r.customer_ref == customer_ref and r.status != "cancelled"
        )

    async def insert_request(self, request: SurveyRequest) -> bool:
        if request.request_id in self.state.requests or await self.any_request_for(
            [self._case_key(request)]
        ):
            return False
        self.state.requests[request.request_id] = dataclasses.replace(request, status="scheduled")
        return True

    async def survey_request(
        self, request_id: str, *, for_update: bool = False
    ) -> SurveyRequest | None:
        return self.state.requests.get(request_id)

    async def request_for_case(self, case_type: CaseType, case_id: str) -> SurveyRequest | None:
        for request in self.state.requests.values():
            if self._case_key(request) == (case_type, case_id):
                return request
        return None

    async def mark_requested(self, request_id: str, now: datetime, expires_at: datetime) -> None:
        self._update(request_id, status="requested", requested_at=now, expires_at=expires_at)

    async def cancel_request(self, request_id: str, reason: str) -> None:
        self._update(request_id, when="scheduled", status="cancelled", cancel_reason=reason)

    async def mark_expired(self, request_id: str) -> bool:
        return self._update(request_id, when="requested", status="expired")

    async def record_answer(self, request_id: str, now: datetime) -> bool:
        request = self.state.requests.get(request_id)
        if request is None or request.expires_at is None or request.expires_at <= now:
            return False
        return self._update(request_id, when="requested", status="answered", answered_at=now)

    # Suppressions

    async def record_suppression(
        self, event_id: object, case_type: CaseType, case_id: str, reason: str, now: datetime
    ) -> None:
        assert isinstance(event_id, UUID)
        self.state.suppressions.setdefault(event_id, ((case_type, case_id), reason, now))

    async def suppressions_for(
        self, case_type: CaseType, case_id: str
    ) -> list[tuple[str, datetime]]:
        found = [
            (reason, at)
            for key, reason, at in self.state.suppressions.values()
            if key == (case_type, case_id)
        ]
        return sorted(found, key=lambda item: item[1])

    # Notifications (the sender's record is services.feedback.delivery_store)

    async def enqueue_notification(self, message: NotifyMessage) -> None:
        self.state.outbox_notifications.append(message)

    # Helpers

    @staticmethod
    def _case_key(request: SurveyRequest) -> CaseKey:
        return (request.case_type, request.case_id)

    def _update(self, request_id: str, *, when: str | None = None, **changes: object) -> bool:
        request = self.state.requests.get(request_id)
        if request is None or (when is not None and request.status != when):
            return False
        self.state.requests[request_id] = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
        return True


Clock = Callable[[], datetime]


class FakeFeedbackBackend:
    name = "fake"

    def __init__(self) -> None:
        self.store = FakeFeedbackStore()

    async def reset(self) -> None:
        self.store.state = FeedbackState()

    async def fire_due(self, handler: FeedbackHandler, now: datetime) -> int:
        """Fire what is due at `now`, in due order, in one transaction (a scheduler batch)."""
        due = sorted(
            (t for t in self.store.state.timers.values() if t.pending and t.timer.due_at <= now),
            key=lambda t: t.timer.due_at,
        )
        async with self.store.transaction():
            await handler.fire_many(_NO_CONNECTION, [pending.timer for pending in due])
            for pending in due:
                pending.fired = True
        return len(due)

    async def outbox_events(self) -> list[Event]:
        return list(self.store.state.outbox_events)

    async def notifications(self) -> list[NotifyMessage]:
        return list(self.store.state.outbox_notifications)

    async def pending_timers(self) -> list[timers.Timer]:
        pending = [t.timer for t in self.store.state.timers.values() if t.pending]
        return sorted(pending, key=lambda timer: timer.due_at)


# The fake's `joining` ignores the connection the scheduler would pass.
_NO_CONNECTION: Connection = None  # type: ignore[assignment]


class PostgresFeedbackBackend:
    name = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.store = FeedbackStore(pool)

    async def reset(self) -> None:
        """Migrated and empty, with the shared tables' feedback rows gone too."""
        await migrate(self.pool, SERVICE, MIGRATIONS)
        await self.pool.execute(
            "TRUNCATE feedback_contact_routes, feedback_opt_outs, feedback_complaints, "
            "feedback_requests, feedback_suppressions, feedback_sent_notifications, "
            "feedback_comments"
        )
        for table in ("outbox", "timers", "processed_events"):
            await self.pool.execute(f"DELETE FROM {table} WHERE service = $1", SERVICE)

    async def fire_due(self, handler: FeedbackHandler, now: datetime) -> int:
        scheduler = timers.TimerScheduler(
            self.pool, SERVICE, handler.fire, fire_batch=handler.fire_many
        )
        return await scheduler.fire_due(now)

    async def _outbox(self, *, notifications: bool) -> list[bytes]:
        comparison = "=" if notifications else "<>"
        rows = await self.pool.fetch(
            f"SELECT value FROM outbox WHERE service = $1 AND topic {comparison} $2 ORDER BY id",
            SERVICE,
            NOTIFICATIONS.name,
        )
        return [bytes(row["value"]) for row in rows]

    async def outbox_events(self) -> list[Event]:
        return [parse_event(value) for value in await self._outbox(notifications=False)]

    async def notifications(self) -> list[NotifyMessage]:
        values = await self._outbox(notifications=True)
        return [NotifyMessage.model_validate_json(value) for value in values]

    async def pending_timers(self) -> list[timers.Timer]:
        rows = await self.pool.fetch(
            """
            SELECT timer_id FROM timers
            WHERE service = $1 AND fired_at IS NULL AND cancelled_at IS NULL
            """,
            SERVICE,
        )
        found: list[timers.Timer] = []
        async with self.pool.acquire() as connection:
            for subject in {row["timer_id"].split(":", 1)[1] for row in rows}:
                found += await timers.pending_for(connection, SERVICE, subject)
        return sorted(found, key=lambda timer: timer.due_at)


FeedbackBackend = FakeFeedbackBackend | PostgresFeedbackBackend
