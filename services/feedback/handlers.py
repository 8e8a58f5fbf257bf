"""Feedback's handlers: resolutions in, decisions out; timers send and expire requests;
answers come back through signed links. Every effect goes through the outbox in the
transaction that records it.

Events and timers reach their handler through a table (`FeedbackHandler.handle`,
`FeedbackHandler.fire`): one verb-named method per event type or timer kind.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter

from services.feedback.batch import BatchConflictError, DecisionBatch, SendBatch
from services.feedback.domain import (
    CustomerHistory,
    Policy,
    Resolution,
    Schedule,
    Suppress,
    SuppressionReason,
    decide,
    is_final_response,
)
from services.feedback.links import (
    AnswerLinks,
)
from services.feedback.notifications import ContactRoute, notify_message
from services.feedback.store import ComplaintFacts, FeedbackStore, SurveyRequest
from shared import timers
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    ComplaintResponded,
    ComplaintWithdrawn,
    ContactReceived,
    ContactResolved,
    Event,
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionRequestedPayload,
    SurveyCase,
)
from shared.events.vocabulary import CaseType
from shared.postgres import Connection

log = logging.getLogger(__name__)
SOURCE = "civicpulse-feedback"
SEND = "send"
EXPIRE = "expire"
CANCEL_REASONS = (SuppressionReason.OPTED_OUT, SuppressionReason.NO_CONTACT_ROUTE)


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, text: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, text, labels, registry=registry)

        self.scheduled = counter("feedback_requests_scheduled", "Satisfaction requests scheduled.")
        self.sent = counter(
            "feedback_requests_sent",
            "Requests handed to the notifications topic (SatisfactionRequested).",
        )
        self.answered = counter("feedback_requests_answered", "Requests answered.")
        self.expired = counter("feedback_requests_expired", "Requests expired unanswered.")
        self.suppressed = counter(
            "feedback_requests_suppressed", "Resolved cases not surveyed, by reason.", ["reason"]
        )
        self.cancelled = counter(
            "feedback_requests_cancelled",
            "Scheduled requests cancelled before sending, by reason.",
            ["reason"],
        )
        self.links_refused = counter(
            "feedback_answer_links_refused", "Answer links refused, by reason.", ["reason"]
        )
        for reason in SuppressionReason:
            self.suppressed.labels(reason.value)
        for reason in CANCEL_REASONS:
            self.cancelled.labels(reason.value)


@dataclass
class _Outcomes:
    """Counted after the transaction commits, so a retried batch does not double count."""

    scheduled: int = 0
    suppressed: list[str] = field(default_factory=list)


# An event's handler: the store in the batch's transaction, the event, the tally.
OnEvent = Callable[[FeedbackStore, Any, _Outcomes], Awaitable[None]]
# A timer's handler returns what to count once the firing commits (timers.OnCommit).
OnTimer = Callable[[FeedbackStore, SurveyRequest, timers.Timer], Awaitable[timers.OnCommit | None]]
# What the complaint facts copy from ComplaintOpened's payload, and a resolution
# from a contact event's.
COMPLAINT_FACT_FIELDS = {"customer_ref", "channel", "service_area", "procedure", "contact_id"}
RESOLUTION_FIELDS = {"customer_ref", "channel", "service_area"}
# What a survey request copies from the resolution it is for.
REQUEST_FIELDS_OF_RESOLUTION = ("case_type", "case_id", "service_area", "channel", "resolved_at")


def survey_case(request: SurveyRequest) -> SurveyCase:
    return SurveyCase.model_validate(request, from_attributes=True)


@dataclass(frozen=True, slots=True)
class NotifyTemplates:
    email: str
    sms: str


class FeedbackHandler:
    def __init__(
        self,
        store: FeedbackStore,
        *,
        policy: Policy,
        links: AnswerLinks,
        public_url: str,
        templates: NotifyTemplates,
        metrics: FeedbackMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._policy = policy
        self._links = links
        self._public_url = public_url
        self._templates = templates
        self._metrics = metrics
        self._clock = clock
        self._on_event: Mapping[type[Event], OnEvent] = {
            ComplaintOpened: self.remember_complaint,
            ComplaintWithdrawn: self.mark_complaint_withdrawn,
            ContactReceived: self.survey_contact_resolved_at_first_contact,
            ContactResolved: self.survey_contact,
            ComplaintResponded: self.survey_complaint_after_its_final_response,
            ComplaintClosed: self.survey_complaint,
        }
        self._on_timer: Mapping[str, OnTimer] = {
            SEND: self.send_request,
            EXPIRE: self.expire_request,
        }

    # Resolutions in: one transaction per batch

    async def handle(self, events: Sequence[Event]) -> None:
        """Decide a batch in one transaction, with a fixed number of statements.

        The processed-event records are written for the batch at once; the
        per-event methods below then run in order on a `DecisionBatch`, which
        loaded their reads for the whole batch and writes their effects at the end.
        """
        outcomes = _Outcomes()
        async with self._store.transaction() as store:
            fresh = await store.first_times(list(dict.fromkeys(e.event_id for e in events)))
            todo: list[Event] = []
            for event in events:
                if event.event_id in fresh:
                    fresh.discard(event.event_id)  # a later copy in this batch is a duplicate
                    if type(event) in self._on_event:
                        todo.append(event)
            if todo:
                outcomes = await self._decide_batch(store, todo)
        self._metrics.scheduled.inc(outcomes.scheduled)
        for reason in outcomes.suppressed:
            self._metrics.suppressed.labels(reason).inc()

    async def _decide_batch(self, store: FeedbackStore, events: Sequence[Event]) -> _Outcomes:
        outcomes = _Outcomes()
        batch = await DecisionBatch.load(store, events)
        for event in events:
            await self._on_event[type(event)](batch, event, outcomes)
        try:
            await batch.write()
        except BatchConflictError:
            if len(events) > 1:
                raise  # the consumer decides them again one by one
            # Nothing was written: decide it again on the store, seeing the other request.
            outcomes = _Outcomes()
            await self._on_event[type(events[0])](store, events[0], outcomes)
        return outcomes

    async def remember_complaint(
        self, store: FeedbackStore, event: ComplaintOpened, _: _Outcomes
    ) -> None:
        facts = event.payload.model_dump(include=COMPLAINT_FACT_FIELDS)
        await store.remember_complaint(
            ComplaintFacts(complaint_id=event.complaint_id, withdrawn=False, **facts)
        )

    async def mark_complaint_withdrawn(
        self, store: FeedbackStore, event: ComplaintWithdrawn, _: _Outcomes
    ) -> None:
        await store.mark_withdrawn(event.complaint_id)

    async def survey_contact_resolved_at_first_contact(
        self, store: FeedbackStore, event: ContactReceived, outcomes: _Outcomes
    ) -> None:
        if event.payload.resolved_at_first_contact:
            await self.survey_contact(store, event, outcomes)

    async def survey_contact(
        self,
        store: FeedbackStore,
        event: ContactReceived | ContactResolved,
        outcomes: _Outcomes,
    ) -> None:
        linked = await store.complaints_from_contact(event.contact_id)
        resolution = Resolution(
            case_type=CaseType.CONTACT,
            case_id=event.contact_id,
            resolved_at=event.occurred_at,
            contact_kind=event.payload.kind,
            linked_case_ids=tuple((CaseType.COMPLAINT, c) for c in linked),
            **event.payload.model_dump(include=RESOLUTION_FIELDS),
        )
        await self._decide(store, event.event_id, resolution, outcomes)

    async def survey_complaint_after_its_final_response(
        self, store: FeedbackStore, event: ComplaintResponded, outcomes: _Outcomes
    ) -> None:
        if is_final_response(event.payload.procedure, event.payload.stage):
            await self.survey_complaint(store, event, outcomes)

    async def survey_complaint(
        self,
        store: FeedbackStore,
        event: ComplaintClosed | ComplaintResponded,
        outcomes: _Outcomes,
    ) -> None:
        facts = await store.complaint(event.complaint_id)
        if facts is None:
            log.warning("%s for unknown complaint %s", event.event_type, event.complaint_id)
            await self._suppress(
                store,
                event.event_id,
                (CaseType.COMPLAINT, event.complaint_id),
                SuppressionReason.UNKNOWN_CASE,
                outcomes,
            )
            return
        resolution = Resolution(
            case_type=CaseType.COMPLAINT,
            case_id=event.complaint_id,
            service_area=event.payload.service_area,
            channel=facts.channel,
            customer_ref=facts.customer_ref,
            resolved_at=event.occurred_at,
            procedure=event.payload.procedure,
            withdrawn=facts.withdrawn,
            linked_case_ids=((CaseType.CONTACT, facts.contact_id),) if facts.contact_id else (),
        )
        await self._decide(store, event.event_id, resolution, outcomes)

    async def _decide(
        self,
        store: FeedbackStore,
        event_id: UUID,
        resolution: Resolution,
        outcomes: _Outcomes,
    ) -> None:
        customer = resolution.customer_ref
        if customer is not None:
            await store.lock_customer(customer)
        history = CustomerHistory(
            opted_out=customer is not None and await store.is_opted_out(customer),
            has_contact_route=customer is not None
            and await store.contact_route(customer) is not None,
            case_already_requested=await store.any_request_for(resolution.case_keys),
            surveyed_resolutions=await store.surveyed_resolutions(customer)
            if customer is not None
            else (),
        )
        decision = decide(resolution, history, self._policy, self._clock())
        case = (resolution.case_type, resolution.case_id)
        if isinstance(decision, Suppress):
            await self._suppress(store, event_id, case, decision.reason, outcomes)
            return
        assert customer is not None  # decide() suppresses anonymous cases
        await self._schedule(store, event_id, resolution, customer, decision, outcomes)

    async def _schedule(
        self,
        store: FeedbackStore,
        event_id: UUID,
        resolution: Resolution,
        customer: str,
        decision: Schedule,
        outcomes: _Outcomes,
    ) -> None:
        request = SurveyRequest(
            request_id=decision.request_id,
            customer_ref=customer,
            send_at=decision.send_at,
            status="scheduled",
            **{name: getattr(resolution, name) for name in REQUEST_FIELDS_OF_RESOLUTION},
        )
        if not await store.insert_request(request):
            reason = SuppressionReason.ALREADY_REQUESTED
            await self._suppress(
                store, event_id, (request.case_type, request.case_id), reason, outcomes
            )
            return
        await store.schedule_timer(
            timers.Timer(
                timer_id=f"{SEND}:{request.request_id}",
                kind=SEND,
                subject=request.request_id,
                due_at=decision.send_at,
                payload={"causation_id": str(event_id)},
            ),
        )
        outcomes.scheduled += 1

    async def _suppress(
        self,
        store: FeedbackStore,
        event_id: UUID,
        case: tuple[CaseType, str],
        reason: SuppressionReason,
        outcomes: _Outcomes,
    ) -> None:
        await store.record_suppression(event_id, *case, reason.value, self._clock())
        outcomes.suppressed.append(reason.value)

    # Timers: send after the delay, expire after the configured days

    async def fire(self, connection: Connection, timer: timers.Timer) -> timers.OnCommit | None:
        """The timer scheduler's callback, in its transaction."""
        store = self._store.joining(connection)
        request = await store.survey_request(timer.subject, for_update=True)
        on_timer = self._on_timer.get(timer.kind)
        if request is not None and on_timer is not None:
            return await on_timer(store, request, timer)
        return None

    async def fire_many(
        self, connection: Connection, due: Sequence[timers.Timer]
    ) -> timers.OnCommit | None:
        """`fire` for a claimed batch, in due order: one statement per read and per table."""
        batch = await SendBatch.load(self._store.joining(connection), due)
        counts: list[timers.OnCommit] = []
        for timer in due:
            request = batch.request(timer.subject)
            on_timer = self._on_timer.get(timer.kind)
            if request is None or on_timer is None:
                continue
            if (count := await on_timer(batch, request, timer)) is not None:
                counts.append(count)
        await batch.write()
        return timers.all_of(counts)

    async def expire_request(
        self, store: FeedbackStore, request: SurveyRequest, _: timers.Timer
    ) -> timers.OnCommit | None:
        if not await store.mark_expired(request.request_id):
            return None
        await store.enqueue(
            [
                SatisfactionExpired(
                    request_id=request.request_id,
                    occurred_at=self._clock(),
                    source=SOURCE,
                    payload=survey_case(request),
                )
            ]
        )
        return self._metrics.expired.inc

    async def send_request(
        self, store: FeedbackStore, request: SurveyRequest, timer: timers.Timer
    ) -> timers.OnCommit | None:
        if request.status != "scheduled":
            return None
        # Checked again at sending: the customer may have opted out or been erased.
        opted_out = await store.is_opted_out(request.customer_ref)
        route = None if opted_out else await store.contact_route(request.customer_ref)
        if route is None:
            reason = (
                SuppressionReason.OPTED_OUT if opted_out else SuppressionReason.NO_CONTACT_ROUTE
            )
            await store.cancel_request(request.request_id, reason.value)
            return self._metrics.cancelled.labels(reason.value).inc
        now = self._clock()
        expires_at = now + self._policy.expiry
        await store.mark_requested(request.request_id, now, expires_at)
        await self._hand_to_notify(store, request, route, expires_at)
        causation = timer.payload.get("causation_id")
        await store.enqueue(
            [
                SatisfactionRequested(
                    request_id=request.request_id,
                    occurred_at=now,
                    source=SOURCE,
                    causation_id=UUID(causation) if causation else None,
                    payload=SatisfactionRequestedPayload(
                        **survey_case(request).model_dump(),
                        customer_ref=request.customer_ref,
                        expires_at=expires_at,
                    ),
                )
            ],
        )
        await store.schedule_timer(
            timers.Timer(
                timer_id=f"{EXPIRE}:{request.request_id}",
                kind=EXPIRE,
                subject=request.request_id,
                due_at=expires_at,
                payload={},
            ),
        )
        return self._metrics.sent.inc

    async def _hand_to_notify(
        self,
        store: FeedbackStore,
        request: SurveyRequest,
        route: ContactRoute,
        expires_at: datetime,
    ) -> None:
        token = self._links.token(request.request_id, expires_at)
        message = notify_message(
            route,
            request_id=request.request_id,
            customer_ref=request.customer_ref,
            survey_link=f"{self._public_url}/surveys/{token}",
            service_area=request.service_area,
            expires_at=expires_at,
            email_template_id=self._templates.email,
            sms_template_id=self._templates.sms,
        )
        await store.enqueue_notification(message)


def policy_of(delay_hours: float, expiry_days: int, quiet_period_days: int) -> Policy:
    return Policy(
        delay=timedelta(hours=delay_hours),
        expiry=timedelta(days=expiry_days),
        quiet_period=timedelta(days=quiet_period_days),
    )
