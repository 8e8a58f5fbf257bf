"""Feedback's wiring: consumer, timers, outbox relay, HTTP API and survey pages, lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Unpack

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from services.feedback import views
from services.feedback.contact_records import ignored_contact
from services.feedback.customers import CustomerHandler
from services.feedback.delivery_status import (
    DeliveryReceipt,
    DeliveryStatusHandler,
    DeliveryStatusMetrics,
    ReceiptOutcome,
    notify_callback_token,
)
from services.feedback.delivery_store import DeliveryStore
from services.feedback.handlers import (
    FeedbackHandler,
    FeedbackMetrics,
    NotifyTemplates,
    policy_of,
)
from services.feedback.links import AnswerLinks
from services.feedback.notifications import ContactRoute
from services.feedback.pages import (
    PAGE_HEADERS,
    problem,
)
from services.feedback.settings import SERVICE, FeedbackSettings
from services.feedback.store import MIGRATIONS, FeedbackStore
from services.feedback.survey_routes import (
    LINK_PATHS,
    add_survey_routes,
    too_many_requests_response,
)
from services.feedback.views import (
    CaseDecisions,
    Comment,
    Comments,
    DeliveryStatusRecorded,
    Erased,
    OptedOut,
)
from shared.api_keys import authenticated_source
from shared.consumer import ConsumerSettings, subscribe_events
from shared.events.vocabulary import (
    CUSTOMER_REF_PATTERN,
    SERVICE_AREA_PATTERN,
    CaseType,
    Identifier,
)
from shared.http import (
    MalformedBodyError,
    add_component_schemas,
    body_refusal,
    document_problems,
    limit_request_bodies,
    openapi_body_schema,
    parse_json_body,
)
from shared.kafka import BulkProducer
from shared.outbox import OutboxRelay
from shared.page_guards import guard_pages, parse_rate_limit
from shared.startup import AppOptions, Wiring
from shared.supervisor import Supervisor
from shared.timers import TimerScheduler
from shared.topics import COMPLAINTS, CONTACTS, FEEDBACK, NOTIFICATIONS

log = logging.getLogger(__name__)
CustomerRefPath = Annotated[
    str, Path(pattern=CUSTOMER_REF_PATTERN, description="Pseudonymous customer reference.")
]
# The events' identifiers: a NUL byte (which PostgreSQL refuses) is a 422, not a 500.
CommentRefPath = Annotated[Identifier, Path(description="SatisfactionResponded's comment_ref.")]
CaseIdPath = Annotated[Identifier, Path(description="The contact's or complaint's id.")]


@dataclass
class RunningFeedback:
    """What tests reach into: the handler, and the timers to fire at an injected time."""

    handler: FeedbackHandler
    scheduler: TimerScheduler
    relay: OutboxRelay


def create_app(settings: FeedbackSettings | None = None, **options: Unpack[AppOptions]) -> FastAPI:
    wiring = Wiring.begin(SERVICE, settings or FeedbackSettings(), **options)
    settings, broker = wiring.settings, wiring.broker
    registry, clock = wiring.registry, wiring.clock
    metrics = FeedbackMetrics(registry)
    links = AnswerLinks(settings.link_secrets, accept_sha1=settings.feedback_accept_sha1_links)
    delivery_metrics = DeliveryStatusMetrics(registry)
    running: dict[str, Any] = {}  # filled by the lifespan

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await wiring.open_pool(MIGRATIONS)
        store = FeedbackStore(pool)
        handler = FeedbackHandler(
            store,
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
            ignore=ignored_contact,
        )
        scheduler = wiring.timer_scheduler(pool, handler.fire, fire_batch=handler.fire_many)
        # A request sent is two outbox rows (the event and the Notify message): through
        # faststream's publish they were about a sixth of the service's profile at 2,000/s.
        producer = BulkProducer(settings.kafka, client_id=SERVICE)
        await producer.start()
        relay = wiring.outbox_relay(pool, producer)
        running["customers"] = CustomerHandler(store, links=links, metrics=metrics, clock=clock)
        running["deliveries"] = DeliveryStatusHandler(
            DeliveryStore(pool), metrics=delivery_metrics, clock=clock
        )
        app.state.feedback = RunningFeedback(handler, scheduler, relay)
        if not settings.feedback_api_keys:
            log.warning("no CIVICPULSE_FEEDBACK_API_KEYS set: customer endpoints will get 401")
        if not settings.feedback_notify_email_template_id:
            log.warning("no Notify email template id set: messages will carry an empty one")
        await broker.start()
        loops = Supervisor(SERVICE)
        loops.start_relay(relay)  # first: what waits in the outbox goes before new work
        loops.start("timers", scheduler.run, scheduler.stop)
        log.info(
            "feedback ready: consuming %s and %s, publishing %s and %s",
            CONTACTS.name,
            COMPLAINTS.name,
            FEEDBACK.name,
            NOTIFICATIONS.name,
        )
        # On the way out: stop consuming, drain the relay, stop the producers.
        async with loops.serving(
            consumers=[broker],
            producers=[producer.stop, broker.stop],
            then_close=[wiring.close_pool],
        ):
            yield

    app = FastAPI(
        title="CivicPulse feedback",
        version="1.0.0",
        description="One satisfaction request after every resolved enquiry, service request "
        "and complaint, with the same questions everywhere. Contact routes (the only "
        "personal data in CivicPulse) are kept here and can be erased. Residents answer "
        "through a signed, single-use link (`/surveys/{token}`, an HTML form).",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer without each error's input: a number like 1e999 reads as
        # infinite, which JSON cannot carry back (a 500 in FastAPI's handler).
        errors = [{k: v for k, v in e.items() if k != "input"} for e in error.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    caller = authenticated_source(settings.feedback_api_keys)

    def customers() -> CustomerHandler:
        handler: CustomerHandler = running["customers"]
        return handler

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
        await customers().put_contact_route(customer_ref, route)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.delete(
        "/v1/customers/{customer_ref}",
        tags=["customers"],
        summary="Erase a customer's personal data (UK GDPR erasure); returns a receipt",
        description="Deletes the contact route, any unsent survey message carrying it, and "
        "the text of the customer's survey comments. Requests and answers keep only the "
        "pseudonymous reference and scores, so KPIs are unchanged; a later resolution for "
        "this customer is suppressed with reason `no_contact_route`. The receipt lists rows "
        "deleted per table and the copies left on topics, with the date retention removes "
        "them. `python -m civicpulse erase <ref>` erases in every service at once.",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def erase_customer(
        customer_ref: CustomerRefPath, _: Annotated[str, Depends(caller)]
    ) -> Erased:
        return await customers().erase_customer(customer_ref)

    @app.get(
        "/v1/comments",
        tags=["comments"],
        summary="The newest survey comments, redacted, without who wrote them",
        description="Comments are kept here, not on civicpulse.feedback, so erasure can "
        "delete them; the metrics dashboard reads them from this endpoint.",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def latest_comments(
        _: Annotated[str, Depends(caller)],
        limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = 20,
        # The events' own pattern: a value no event could carry is refused with a 422
        # naming the field, before it reaches PostgreSQL (which refuses a NUL byte).
        service_area: Annotated[
            str | None, Query(pattern=SERVICE_AREA_PATTERN, description="Only this service area.")
        ] = None,
    ) -> Comments:
        kept = await customers().latest_comments(limit, service_area)
        return Comments(comments=[views.comment(c) for c in kept])

    @app.get(
        "/v1/comments/{comment_ref}",
        tags=["comments"],
        summary="One survey comment by SatisfactionResponded's comment_ref",
        responses={
            401: {"description": "Missing or unknown API key."},
            404: {"description": "No such comment, or erased."},
        },
    )
    async def survey_comment(
        comment_ref: CommentRefPath, _: Annotated[str, Depends(caller)]
    ) -> Comment:
        kept = await customers().survey_comment(comment_ref)
        if kept is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such comment (or erased)")
        return views.comment(kept)

    @app.post(
        "/v1/customers/{customer_ref}/opt-out",
        tags=["customers"],
        summary="Stop surveying a customer; publishes CustomerOptedOut once",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def opt_out(
        customer_ref: CustomerRefPath, _: Annotated[str, Depends(caller)]
    ) -> OptedOut:
        newly = await customers().opt_out(customer_ref)
        return OptedOut(customer_ref=customer_ref, newly_opted_out=newly)

    @app.get(
        "/v1/cases/{case_type}/{case_id}",
        tags=["customers"],
        summary="The survey decision for a case: its request, or why it got none",
        responses={401: {"description": "Missing or unknown API key."}},
    )
    async def case_decisions(
        case_type: CaseType, case_id: CaseIdPath, _: Annotated[str, Depends(caller)]
    ) -> CaseDecisions:
        request, suppressions = await customers().case_decisions(case_type, case_id)
        return views.case_decisions(case_type, case_id, request, suppressions)

    receipt_schema, receipt_definitions = openapi_body_schema(TypeAdapter(DeliveryReceipt))
    notify_caller = notify_callback_token(settings.feedback_notify_callback_token)

    @app.post(
        "/v1/notify/delivery-status",
        tags=["notify"],
        summary="GOV.UK Notify's delivery-status callback (one receipt per message)",
        description="Set this URL and CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN as the "
        "service's delivery-receipt callback in GOV.UK Notify. Keeps the latest status per "
        "request (`reference`): repeats and receipts older than a final status change "
        "nothing. `permanent-failure` marks the address bad: no further message goes to it "
        "until the CRM puts a different one.",
        response_model=DeliveryStatusRecorded,
        responses={
            401: {"description": "Missing or wrong bearer token."},
            404: {"description": "No survey request has this reference."},
            422: {"description": "Not a delivery receipt; the failing fields are listed."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": receipt_schema}},
            }
        },
    )
    async def notify_delivery_status(
        request: Request, _: Annotated[None, Depends(notify_caller)]
    ) -> DeliveryStatusRecorded | JSONResponse:
        try:
            body = parse_json_body(await request.body())
        except MalformedBodyError as error:
            return JSONResponse({"detail": str(error)}, status_code=status.HTTP_400_BAD_REQUEST)
        try:
            receipt = DeliveryReceipt.model_validate(body)
        except ValidationError as error:
            return body_refusal(error)
        if receipt.reference is None:
            detail = [{"loc": ["reference"], "msg": "not a CivicPulse request", "type": "missing"}]
            return JSONResponse({"detail": detail}, status_code=422)
        handler: DeliveryStatusHandler = running["deliveries"]
        outcome = await handler.record(receipt.reference, receipt)
        if outcome is ReceiptOutcome.UNKNOWN_REFERENCE:
            return JSONResponse(
                {"detail": f"no survey request {receipt.reference!r}"},
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return DeliveryStatusRecorded(
            reference=receipt.reference, status=receipt.status, outcome=outcome.value
        )

    add_survey_routes(app, customers)

    wiring.add_operational_routes(app)
    add_component_schemas(app, receipt_definitions)
    document_problems(app)
    limit_request_bodies(
        app,
        settings.http_max_body_bytes,
        html_page=lambda: problem("Your answers are too long", "Please shorten your comment."),
    )
    guard_pages(
        app,
        paths=LINK_PATHS,
        headers=PAGE_HEADERS,
        rate_limit=parse_rate_limit(settings.feedback_rate_limit),
        refused=too_many_requests_response,
    )
    return app
