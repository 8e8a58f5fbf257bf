"""Feedback's handlers: resolutions in, decisions out; timers send and expire requests;
answers come back through signed links. Every effect goes through the outbox in the
transaction that records it."""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.feedback import store
from services.feedback.domain import (
    Answers,
    CustomerHistory,
    Policy,
    Resolution,
    Schedule,
    Suppress,
    SuppressionReason,
    decide,
    is_final_response,
    read_answers,
)
from services.feedback.links import (
    AnswerLinks,
    LinkError,
    SurveyClosedError,
    UnknownSurveyError,
    check_request_open,
)
from services.feedback.notifications import ContactRoute, notify_message
from services.feedback.store import SERVICE, ComplaintFacts, SurveyRequest
from shared import timers
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    ComplaintResponded,
    ComplaintWithdrawn,
    ContactReceived,
    ContactResolved,
    CustomerOptedOut,
    Event,
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionRequestedPayload,
    SatisfactionResponded,
    SatisfactionRespondedPayload,
    SurveyCase,
)
from shared.events.vocabulary import CaseType
from shared.outbox import enqueue
from shared.postgres import Connection
from shared.processed_events import first_time

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


def _case(request: SurveyRequest) -> SurveyCase:
    return SurveyCase(
        case_type=request.case_type,
        case_id=request.case_id,
        service_area=request.service_area,
        channel=request.channel,
    )


@dataclass(frozen=True, slots=True)
class NotifyTemplates:
    email: str
    sms: str


class FeedbackHandler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        policy: Policy,
        links: AnswerLinks,
        public_url: str,
        templates: NotifyTemplates,
        metrics: FeedbackMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._links = links
        self._public_url = public_url
        self._templates = templates
        self._metrics = metrics
        self._clock = clock

    # Resolutions in: one transaction per batch

    async def handle(self, events: Sequence[Event]) -> None:
        outcomes = _Outcomes()
        async with self._pool.acquire() as connection, connection.transaction():
            for event in events:
                if await first_time(connection, SERVICE, event.event_id):
                    await self._apply(connection, event, outcomes)
        self._metrics.scheduled.inc(outcomes.scheduled)
        for reason in outcomes.suppressed:
            self._metrics.suppressed.labels(reason).inc()

    async def _apply(self, connection: Connection, event: Event, outcomes: _Outcomes) -> None:
        if isinstance(event, ComplaintOpened):
            await store.remember_complaint(
                connection,
                ComplaintFacts(
                    complaint_id=event.complaint_id,
                    customer_ref=event.payload.customer_ref,
                    channel=event.payload.channel,
                    service_area=event.payload.service_area,
                    procedure=event.payload.procedure,
                    contact_id=event.payload.contact_id,
                    withdrawn=False,
                ),
            )
        elif isinstance(event, ComplaintWithdrawn):
            await store.mark_withdrawn(connection, event.complaint_id)
        elif isinstance(event, ContactReceived | ContactResolved):
            if isinstance(event, ContactReceived) and not event.payload.resolved_at_first_contact:
                return
            linked = await store.complaints_from_contact(connection, event.contact_id)
            resolution = Resolution(
                case_type=CaseType.CONTACT,
                case_id=event.contact_id,
                service_area=event.payload.service_area,
                channel=event.payload.channel,
                customer_ref=event.payload.customer_ref,
                resolved_at=event.occurred_at,
                contact_kind=event.payload.kind,
                linked_case_ids=tuple((CaseType.COMPLAINT, c) for c in linked),
            )
            await self._decide(connection, event.event_id, resolution, outcomes)
        elif isinstance(event, ComplaintClosed | ComplaintResponded):
            if isinstance(event, ComplaintResponded) and not is_final_response(
                event.payload.procedure, event.payload.stage
            ):
                return
            await self._complaint_resolved(connection, event, outcomes)

    async def _complaint_resolved(
        self,
        connection: Connection,
        event: ComplaintClosed | ComplaintResponded,
        outcomes: _Outcomes,
    ) -> None:
        facts = await store.complaint(connection, event.complaint_id)
        if facts is None:
            log.warning("%s for unknown complaint %s", event.event_type, event.complaint_id)
            await self._suppress(
                connection,
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
        await self._decide(connection, event.event_id, resolution, outcomes)

    async def _decide(
        self,
        connection: Connection,
        event_id: UUID,
        resolution: Resolution,
        outcomes: _Outcomes,
    ) -> None:
        customer = resolution.customer_ref
        if customer is not None:
            await store.lock_customer(connection, customer)
        history = CustomerHistory(
            opted_out=customer is not None and await store.is_opted_out(connection, customer),
            has_contact_route=customer is not None
            and await store.contact_route(connection, customer) is not None,
            case_already_requested=await store.any_request_for(connection, resolution.case_keys),
            surveyed_resolutions=await store.surveyed_resolutions(connection, customer)
            if customer is not None
            else (),
        )
        decision = decide(resolution, history, self._policy, self._clock())
        case = (resolution.case_type, resolution.case_id)
        if isinstance(decision, Suppress):
            await self._suppress(connection, event_id, case, decision.reason, outcomes)
            return
        assert customer is not None  # decide() suppresses anonymous cases
        await self._schedule(connection, event_id, resolution, customer, decision, outcomes)

    async def _schedule(
        self,
        connection: Connection,
        event_id: UUID,
        resolution: Resolution,
        customer: str,
        decision: Schedule,
        outcomes: _Outcomes,
    ) -> None:
        request = SurveyRequest(
            request_id=decision.request_id,
            case_type=resolution.case_type,
            case_id=resolution.case_id,
            customer_ref=customer,
            service_area=resolution.service_area,
            channel=resolution.channel,
            resolved_at=resolution.resolved_at,
            send_at=decision.send_at,
            status="scheduled",
        )
        if not await store.insert_request(connection, request):
            reason = SuppressionReason.ALREADY_REQUESTED
            await self._suppress(
                connection, event_id, (request.case_type, request.case_id), reason, outcomes
            )
            return
        await timers.schedule(
            connection,
            SERVICE,
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
        connection: Connection,
        event_id: UUID,
        case: tuple[CaseType, str],
        reason: SuppressionReason,
        outcomes: _Outcomes,
    ) -> None:
        await store.record_suppression(connection, event_id, *case, reason.value, self._clock())
        outcomes.suppressed.append(reason.value)

    # Timers: send after the delay, expire after the configured days

    async def fire(self, connection: Connection, timer: timers.Timer) -> None:
        request = await store.survey_request(connection, timer.subject, for_update=True)
        if request is None:
            return
        if timer.kind == SEND and request.status == "scheduled":
            await self._send(connection, request, timer)
        elif timer.kind == EXPIRE and await store.mark_expired(connection, request.request_id):
            await enqueue(
                connection,
                SERVICE,
                [
                    SatisfactionExpired(
                        request_id=request.request_id,
                        occurred_at=self._clock(),
                        source=SOURCE,
                        payload=_case(request),
                    )
                ],
            )
            self._metrics.expired.inc()

    async def _send(
        self, connection: Connection, request: SurveyRequest, timer: timers.Timer
    ) -> None:
        # Checked again at sending: the customer may have opted out or been erased.
        opted_out = await store.is_opted_out(connection, request.customer_ref)
        route = None if opted_out else await store.contact_route(connection, request.customer_ref)
        if route is None:
            reason = (
                SuppressionReason.OPTED_OUT if opted_out else SuppressionReason.NO_CONTACT_ROUTE
            )
            await store.cancel_request(connection, request.request_id, reason.value)
            self._metrics.cancelled.labels(reason.value).inc()
            return
        now = self._clock()
        expires_at = now + self._policy.expiry
        await store.mark_requested(connection, request.request_id, now, expires_at)
        await self._hand_to_notify(connection, request, route, expires_at)
        causation = timer.payload.get("causation_id")
        await enqueue(
            connection,
            SERVICE,
            [
                SatisfactionRequested(
                    request_id=request.request_id,
                    occurred_at=now,
                    source=SOURCE,
                    causation_id=UUID(causation) if causation else None,
                    payload=SatisfactionRequestedPayload(
                        **_case(request).model_dump(),
                        customer_ref=request.customer_ref,
                        expires_at=expires_at,
                    ),
                )
            ],
        )
        await timers.schedule(
            connection,
            SERVICE,
            timers.Timer(
                timer_id=f"{EXPIRE}:{request.request_id}",
                kind=EXPIRE,
                subject=request.request_id,
                due_at=expires_at,
                payload={},
            ),
        )
        self._metrics.sent.inc()

    async def _hand_to_notify(
        self,
        connection: Connection,
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
        await store.enqueue_notification(connection, message)

    # Answer links

    async def open_survey(self, token: str) -> SurveyRequest:
        """The open request behind a link; raises `LinkError` saying why it cannot be used."""
        try:
            claims = self._links.read(token, self._clock())
            async with self._pool.acquire() as connection:
                request = await store.survey_request(connection, claims.request_id)
            self._check_open(request)
        except LinkError as error:
            self._metrics.links_refused.labels(error.code).inc()
            raise
        assert request is not None
        return request

    def _check_open(self, request: SurveyRequest | None) -> None:
        check_request_open(
            None if request is None else request.status,
            None if request is None else request.expires_at,
            self._clock(),
        )

    async def answer(self, token: str, form: Mapping[str, str | None]) -> SurveyRequest:
        """Record the answers; raises `LinkError` or `InvalidAnswersError`, changing nothing."""
        request = await self.open_survey(token)
        answers = read_answers(dict(form))
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            if not await store.record_answer(connection, request.request_id, now):
                # Another answer won the race, or the request closed meanwhile.
                self._check_open(await store.survey_request(connection, request.request_id))
                raise SurveyClosedError("request closed")
            await timers.cancel(connection, SERVICE, f"{EXPIRE}:{request.request_id}")
            await enqueue(connection, SERVICE, [self._responded(request, answers, now)])
        self._metrics.answered.inc()
        return request

    def _responded(
        self, request: SurveyRequest, answers: Answers, now: datetime
    ) -> SatisfactionResponded:
        return SatisfactionResponded(
            request_id=request.request_id,
            occurred_at=now,
            source=SOURCE,
            payload=SatisfactionRespondedPayload(
                **_case(request).model_dump(),
                overall=answers.overall,
                ease=answers.ease,
                resolved=answers.resolved,
                comment=answers.comment,
            ),
        )

    # Customers: contact routes, erasure, opt-out

    async def put_contact_route(self, customer_ref: str, route: ContactRoute) -> None:
        async with self._pool.acquire() as connection:
            await store.put_contact_route(connection, customer_ref, route, self._clock())

    async def erase_customer(self, customer_ref: str) -> int:
        async with self._pool.acquire() as connection, connection.transaction():
            return await store.erase_customer(connection, customer_ref)

    async def opt_out_by_link(self, token: str) -> bool:
        """The resident's own opt-out, from a genuine unexpired link (answered or not)."""
        claims = self._links.read(token, self._clock())
        async with self._pool.acquire() as connection:
            request = await store.survey_request(connection, claims.request_id)
        if request is None:
            raise UnknownSurveyError("no such request")
        return await self.opt_out(request.customer_ref)

    async def opt_out(self, customer_ref: str) -> bool:
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            if not await store.opt_out(connection, customer_ref, now):
                return False
            event = CustomerOptedOut(customer_ref=customer_ref, occurred_at=now, source=SOURCE)
            await enqueue(connection, SERVICE, [event])
        return True

    async def case_decisions(
        self, case_type: CaseType, case_id: str
    ) -> tuple[SurveyRequest | None, list[tuple[str, datetime]]]:
        async with self._pool.acquire() as connection:
            return (
                await store.request_for_case(connection, case_type, case_id),
                await store.suppressions_for(connection, case_type, case_id),
            )


def policy_of(delay_hours: float, expiry_days: int, quiet_period_days: int) -> Policy:
    return Policy(
        delay=timedelta(hours=delay_hours),
        expiry=timedelta(days=expiry_days),
        quiet_period=timedelta(days=quiet_period_days),
    )
