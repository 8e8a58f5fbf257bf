"""Feedback's wiring: consumer, timers, outbox relay, HTTP API and survey pages, lifespan."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Path, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from services.feedback.domain import MAX_COMMENT_LENGTH, QUESTIONS, InvalidAnswersError
from services.feedback.handlers import (
    FeedbackHandler,
    FeedbackMetrics,
    NotifyTemplates,
    policy_of,
)
from services.feedback.links import AnswerLinks, LinkError
from services.feedback.notifications import ContactRoute
from services.feedback.pages import opted_out, problem, survey_form, thank_you
from services.feedback.settings import FeedbackSettings
from services.feedback.store import MIGRATIONS, SERVICE
from shared.api_keys import authenticated_source
from shared.consumer import ConsumerSettings, subscribe_events
from shared.events.envelope import utc_now
from shared.events.vocabulary import CUSTOMER_REF_PATTERN, CaseType, Resolved
from shared.http import (
    add_operational_routes,
    document_problems,
    limit_request_bodies,
    problem_schema,
)
from shared.kafka import make_broker
from shared.outbox import OutboxMetrics, OutboxRelay
from shared.parked import RetryPolicy
from shared.startup import prepare
from shared.timers import TimerMetrics, TimerScheduler
from shared.topics import COMPLAINTS, CONTACTS, FEEDBACK, NOTIFICATIONS

log = logging.getLogger(__name__)
LINK_STATUS = {
    "invalid_link": status.HTTP_400_BAD_REQUEST,
    "not_found": status.HTTP_404_NOT_FOUND,
    "already_answered": status.HTTP_409_CONFLICT,
    "expired": status.HTTP_410_GONE,
}
LINK_TITLES = {
    "invalid_link": "This link is not valid",
    "not_found": "Survey not found",
    "already_answered": "You have already answered this survey",
    "expired": "This survey has closed",
}
# Answer links carry a secret: keep them out of caches and Referer headers.
PRIVATE_PAGE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

CustomerRefPath = Annotated[
    str, Path(pattern=CUSTOMER_REF_PATTERN, description="Pseudonymous customer reference.")
]


@dataclass
class RunningFeedback:
    """What tests reach into: the handler, and the timers to fire at an injected time."""

    handler: FeedbackHandler
    scheduler: TimerScheduler
    relay: OutboxRelay


class Choice(BaseModel):
    value: str
    label: str


class SurveyQuestion(BaseModel):
    id: str
    text: str
    hint: str
    required: bool
    choices: list[Choice] = Field(description="Allowed answers; empty for free text.")
    max_length: int | None = None


class SurveyForm(BaseModel):
    request_id: str
    service_area: str
    expires_at: datetime | None
    questions: list[SurveyQuestion]


class SurveyAnswers(BaseModel):
    overall: int = Field(ge=1, le=5, description="Overall satisfaction, 1 to 5.")
    ease: int = Field(ge=1, le=7, description="Ease, 1 very difficult to 7 very easy.")
    resolved: Resolved
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_LENGTH)


class AnswerAccepted(BaseModel):
    request_id: str
    status: str = "answered"


class LinkProblem(BaseModel):
    code: str = Field(description="`invalid_link`, `not_found`, `already_answered`, `expired`.")
    message: str


class LinkRefused(BaseModel):
    """Under `detail`, like every other error of the service."""

    detail: LinkProblem


class Erased(BaseModel):
    customer_ref: str
    erased_rows: int = Field(description="Rows of personal data deleted (0 if none was held).")


class OptedOut(BaseModel):
    customer_ref: str
    newly_opted_out: bool


class CaseRequest(BaseModel):
    request_id: str
    status: str
    send_at: datetime
    requested_at: datetime | None
    expires_at: datetime | None
    answered_at: datetime | None
    cancel_reason: str | None


class Suppression(BaseModel):
    reason: str
    decided_at: datetime


class CaseDecisions(BaseModel):
    case_type: CaseType
    case_id: str
    request: CaseRequest | None
    suppressions: list[Suppression]


def _question_set() -> list[SurveyQuestion]:
    return [
        SurveyQuestion(
            id=q.id,
            text=q.text,
            hint=q.hint,
            required=q.required,
            choices=[Choice(value=c.value, label=c.label) for c in q.choices],
            max_length=q.max_length,
        )
        for q in QUESTIONS
    ]


def create_app(
    settings: FeedbackSettings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    settings = settings or FeedbackSettings()
    registry = registry or CollectorRegistry()
    broker = make_broker(settings.kafka, client_id=SERVICE, registry=registry)
    metrics = FeedbackMetrics(registry)
    outbox_metrics = OutboxMetrics(registry, SERVICE)
    links = AnswerLinks(settings.feedback_token_secret.get_secret_value())
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await prepare(settings, SERVICE, MIGRATIONS)
        handler = FeedbackHandler(
            pool,
            policy=policy_of(
                settings.feedback_delay_hours,
                settings.feedback_expiry_days,
                settings.feedback_quiet_period_days,
            ),
            links=links,
            public_url=settings.feedback_public_url,
            templates=NotifyTemplates(
                email=settings.feedback_notify_email_template_id,
                sms=settings.feedback_notify_sms_template_id,
            ),
            metrics=metrics,
            clock=clock,
        )
        subscribe_events(
            broker,
            [CONTACTS, COMPLAINTS],
            handler.handle,
            group_id=settings.feedback_group_id,
            settings=ConsumerSettings.of(settings),
            max_records=settings.feedback_max_batch,
        )
        scheduler = TimerScheduler(
            pool,
            SERVICE,
            handler.fire,
            clock=clock,
            retry=RetryPolicy.for_timers(settings),
            metrics=TimerMetrics(registry, SERVICE),
        )
        relay = OutboxRelay(
            pool, broker, SERVICE, metrics=outbox_metrics, retry=RetryPolicy.for_outbox(settings)
        )
        state.update(pool=pool, handler=handler)
        app.state.feedback = RunningFeedback(handler, scheduler, relay)
        if not settings.feedback_api_keys:
            log.warning("no CIVICPULSE_FEEDBACK_API_KEYS set: customer endpoints will get 401")
        if not settings.feedback_notify_email_template_id:
            log.warning("no Notify email template id set: messages will carry an empty one")
        await broker.start()
        tasks = [
            asyncio.create_task(scheduler.run(), name="feedback-timers"),
            asyncio.create_task(relay.run(), name="feedback-outbox"),
        ]
        log.info(
            "feedback ready: consuming %s and %s, publishing %s and %s",
            CONTACTS.name,
            COMPLAINTS.name,
            FEEDBACK.name,
            NOTIFICATIONS.name,
        )
        try:
            yield
        finally:
            # The timers and the relay finish their pass first (the relay publishes
            # through the broker); then the consumer stops, finishing and committing
            # the batch in hand. Outbox rows left behind go out at the next start.
            scheduler.stop()
            relay.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await pool.close()

    app = FastAPI(
        title="CivicPulse feedback",
        version="1.0.0",
        description="One satisfaction request after every resolved enquiry, service request "
        "and complaint, with the same questions everywhere. Contact routes (the only "
        "personal data in CivicPulse) are kept here and can be erased. Residents answer "
        "through a signed, single-use link (`/surveys/{token}`, an HTML form).",
        lifespan=lifespan,
    )
    caller = authenticated_source(settings.feedback_api_keys)

    def handler() -> FeedbackHandler:
        running: FeedbackHandler = state["handler"]
        return running

    @app.put(
        "/v1/customers/{customer_ref}/contact-route",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["customers"],
        summary="Set how to reach a customer for surveys (replaces any earlier route)",
        description="Email is used when both are given. This is personal data: it is kept "
        "only in the feedback service's database and erased by `DELETE /v1/customers/{ref}`.",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def put_contact_route(
        customer_ref: CustomerRefPath,
        route: ContactRoute,
        _: Annotated[str, Depends(caller)],
    ) -> Response:
        await handler().put_contact_route(customer_ref, route)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.delete(
        "/v1/customers/{customer_ref}",
        tags=["customers"],
        summary="Erase a customer's personal data (UK GDPR erasure)",
        description="Deletes the contact route and any unsent survey message carrying it. "
        "Requests and answers hold only the pseudonymous reference, so KPIs are unchanged; "
        "a later resolution for this customer is suppressed with reason `no_contact_route`.",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def erase_customer(
        customer_ref: CustomerRefPath, _: Annotated[str, Depends(caller)]
    ) -> Erased:
        rows = await handler().erase_customer(customer_ref)
        return Erased(customer_ref=customer_ref, erased_rows=rows)

    @app.post(
        "/v1/customers/{customer_ref}/opt-out",
        tags=["customers"],
        summary="Stop surveying a customer; publishes CustomerOptedOut once",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def opt_out(
        customer_ref: CustomerRefPath, _: Annotated[str, Depends(caller)]
    ) -> OptedOut:
        newly = await handler().opt_out(customer_ref)
        return OptedOut(customer_ref=customer_ref, newly_opted_out=newly)

    @app.get(
        "/v1/cases/{case_type}/{case_id}",
        tags=["customers"],
        summary="The survey decision for a case: its request, or why it got none",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def case_decisions(
        case_type: CaseType, case_id: str, _: Annotated[str, Depends(caller)]
    ) -> CaseDecisions:
        request, suppressions = await handler().case_decisions(case_type, case_id)
        return CaseDecisions(
            case_type=case_type,
            case_id=case_id,
            request=None
            if request is None
            else CaseRequest.model_validate(request, from_attributes=True),
            suppressions=[Suppression(reason=r, decided_at=at) for r, at in suppressions],
        )

    link_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": LinkRefused, "description": f"Link refused: `{name}`."}
        for name, code in LINK_STATUS.items()
    }
    html = {"text/html": {"schema": {"type": "string"}}}
    link_pages: dict[int | str, dict[str, Any]] = {
        code: {"description": f"Link refused: `{name}` (a page saying why).", "content": html}
        for name, code in LINK_STATUS.items()
    }
    form_pages: dict[int | str, dict[str, Any]] = link_pages | {
        413: {
            "description": "Over CIVICPULSE_HTTP_MAX_BODY_BYTES: a page for browsers, "
            "else a problem.",
            "content": html | {"application/json": {"schema": problem_schema()}},
        },
        422: {
            "description": "Answers missing or invalid: the form again, with the errors.",
            "content": html,
        },
    }

    def link_problem(error: LinkError) -> JSONResponse:
        body = LinkRefused(detail=LinkProblem(code=error.code, message=error.message))
        return JSONResponse(
            body.model_dump(), status_code=LINK_STATUS[error.code], headers=PRIVATE_PAGE
        )

    @app.get(
        "/v1/surveys/{token}",
        tags=["surveys"],
        summary="The question set behind an answer link",
        response_model=SurveyForm,
        responses=link_responses,
    )
    async def get_survey(token: str) -> SurveyForm | JSONResponse:
        try:
            request = await handler().open_survey(token)
        except LinkError as error:
            return link_problem(error)
        return SurveyForm(
            request_id=request.request_id,
            service_area=request.service_area,
            expires_at=request.expires_at,
            questions=_question_set(),
        )

    @app.post(
        "/v1/surveys/{token}",
        status_code=status.HTTP_201_CREATED,
        tags=["surveys"],
        summary="Answer a survey (once); publishes SatisfactionResponded",
        response_model=AnswerAccepted,
        responses=link_responses,
    )
    async def answer_survey(token: str, answers: SurveyAnswers) -> AnswerAccepted | JSONResponse:
        form = {
            "overall": str(answers.overall),
            "ease": str(answers.ease),
            "resolved": answers.resolved.value,
            "comment": answers.comment,
        }
        try:
            request = await handler().answer(token, form)
        except LinkError as error:
            return link_problem(error)
        return AnswerAccepted(request_id=request.request_id)

    def page(html: str, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
        return HTMLResponse(html, status_code=status_code, headers=PRIVATE_PAGE)

    def link_page(error: LinkError) -> HTMLResponse:
        return page(problem(LINK_TITLES[error.code], error.message), LINK_STATUS[error.code])

    @app.get(
        "/surveys/{token}", response_class=HTMLResponse, tags=["survey pages"], responses=link_pages
    )
    async def survey_page(token: str) -> HTMLResponse:
        try:
            request = await handler().open_survey(token)
        except LinkError as error:
            return link_page(error)
        return page(survey_form(f"/surveys/{token}", request.service_area))

    @app.post(
        "/surveys/{token}",
        response_class=HTMLResponse,
        tags=["survey pages"],
        responses=form_pages,
    )
    async def submit_survey_page(token: str, raw: Request) -> HTMLResponse:
        body = await raw.body()  # at most CIVICPULSE_HTTP_MAX_BODY_BYTES: see limit_request_bodies
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        form: dict[str, str | None] = {name: values[0] for name, values in fields.items()}
        try:
            await handler().answer(token, form)
        except LinkError as error:
            return link_page(error)
        except InvalidAnswersError as invalid:
            request = await handler().open_survey(token)
            html = survey_form(
                f"/surveys/{token}", request.service_area, values=form, errors=invalid.errors
            )
            return page(html, status.HTTP_422_UNPROCESSABLE_CONTENT)
        return page(thank_you())

    @app.post(
        "/surveys/{token}/opt-out",
        response_class=HTMLResponse,
        tags=["survey pages"],
        responses=link_pages,
    )
    async def opt_out_page(token: str) -> HTMLResponse:
        """The resident's "stop sending me surveys" button on the answer form."""
        try:
            await handler().opt_out_by_link(token)
        except LinkError as error:
            return link_page(error)
        return page(opted_out())

    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    document_problems(app)
    limit_request_bodies(
        app,
        settings.http_max_body_bytes,
        html_page=lambda: problem("Your answers are too long", "Please shorten your comment."),
    )
    return app
