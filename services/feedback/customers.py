"""Feedback's HTTP-side handlers: what residents ask through answer links, and what the
CRM asks about customers (contact routes, erasure, opt-out, the decision on a case).
Events and timers are `services.feedback.handlers`' part."""

from collections.abc import Callable, Mapping
from datetime import datetime

from services.feedback import erasure
from services.feedback.comments_store import SurveyComment
from services.feedback.domain import Answers, read_answers
from services.feedback.handlers import EXPIRE, SOURCE, FeedbackMetrics, survey_case
from services.feedback.links import (
    AnswerLinks,
    LinkError,
    SurveyClosedError,
    UnknownSurveyError,
    check_request_open,
)
from services.feedback.notifications import ContactRoute
from services.feedback.store import FeedbackStore, SurveyRequest
from shared.erasure import ErasureReceipt
from shared.events import (
    CustomerOptedOut,
    SatisfactionResponded,
    SatisfactionRespondedPayload,
)
from shared.events.vocabulary import CaseType


class CustomerHandler:
    def __init__(
        self,
        store: FeedbackStore,
        *,
        links: AnswerLinks,
        metrics: FeedbackMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._links = links
        self._metrics = metrics
        self._clock = clock

    # Answer links

    async def open_survey(self, token: str) -> SurveyRequest:
        """The open request behind a link; raises `LinkError` saying why it cannot be used."""
        try:
            claims = self._links.read(token, self._clock())
            request = await self._store.survey_request(claims.request_id)
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
        async with self._store.transaction() as store:
            if not await store.record_answer(request.request_id, now):
                # Another answer won the race, or the request closed meanwhile.
                self._check_open(await store.survey_request(request.request_id))
                raise SurveyClosedError("request closed")
            await store.cancel_timer(f"{EXPIRE}:{request.request_id}")
            if answers.comment:
                # The text stays here, erasable; the event on the kept-for-ever topic
                # carries only its reference (SatisfactionResponded v2).
                await store.keep_comment(
                    SurveyComment(
                        request_id=request.request_id,
                        answered_at=now,
                        service_area=request.service_area,
                        channel=request.channel.value,
                        overall=answers.overall,
                        comment=answers.comment,
                    )
                )
            await store.enqueue([self._responded(request, answers, now)])
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
                **survey_case(request).model_dump(),
                overall=answers.overall,
                ease=answers.ease,
                resolved=answers.resolved,
                comment_ref=request.request_id if answers.comment else None,
            ),
        )

    async def latest_comments(self, limit: int, service_area: str | None) -> list[SurveyComment]:
        return await self._store.latest_comments(limit, service_area=service_area)

    async def survey_comment(self, comment_ref: str) -> SurveyComment | None:
        return await self._store.survey_comment(comment_ref)

    # Customers: contact routes, erasure, opt-out

    async def put_contact_route(self, customer_ref: str, route: ContactRoute) -> None:
        await self._store.put_contact_route(customer_ref, route, self._clock())

    async def erase_customer(self, customer_ref: str) -> ErasureReceipt:
        """Delete what feedback holds about the customer; the receipt says what stays."""
        now = self._clock()
        async with self._store.transaction() as store:
            # The sender's lock (services.feedback.sender): a send in flight commits
            # first; one after this commits finds no route and sends nothing.
            await store.lock_customer(customer_ref)
            held = await store.customer_footprint(customer_ref)
            await store.erase_customer(customer_ref)
            await store.erase_comments(customer_ref)
        return erasure.receipt(customer_ref, held, now)

    async def opt_out_by_link(self, token: str) -> bool:
        """The resident's own opt-out, from a genuine unexpired link (answered or not)."""
        claims = self._links.read(token, self._clock())
        request = await self._store.survey_request(claims.request_id)
        if request is None:
            raise UnknownSurveyError("no such request")
        return await self.opt_out(request.customer_ref)

    async def opt_out(self, customer_ref: str) -> bool:
        now = self._clock()
        async with self._store.transaction() as store:
            if not await store.opt_out(customer_ref, now):
                return False
            event = CustomerOptedOut(customer_ref=customer_ref, occurred_at=now, source=SOURCE)
            await store.enqueue([event])
        return True

    async def case_decisions(
        self, case_type: CaseType, case_id: str
    ) -> tuple[SurveyRequest | None, list[tuple[str, datetime]]]:
        return (
            await self._store.request_for_case(case_type, case_id),
            await self._store.suppressions_for(case_type, case_id),
        )
