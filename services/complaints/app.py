"""The complaints service's wiring: consumers, timers, outbox relay, HTTP API and lifespan."""

import functools
import logging
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, Unpack

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from services.complaints.access import Access
from services.complaints.actions import ACTION_ADAPTER
from services.complaints.contact_records import ignored_contact
from services.complaints.domain import Refusal, RefusalReason
from services.complaints.handlers import Applied, ComplaintsHandler, ComplaintsMetrics
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE, ComplaintsSettings
from services.complaints.store import MIGRATIONS, ComplaintsStore, WorklistQuery
from services.complaints.views import (
    ActionAccepted,
    ActionRefused,
    ActionResult,
    ComplaintView,
    Worklist,
    complaint_view,
    worklist_row,
)
from services.complaints.working_days import WorkingDayCalendar, local_date
from shared.consumer import (
    ConsumerSettings,
    DeadLetterTopics,
    event_consumer,
    subscribe_records,
)
from shared.consumer_lag import KafkaPositions
from shared.erasure import ErasureReceipt
from shared.events.vocabulary import CUSTOMER_REF_PATTERN, ComplaintProcedure, Identifier
from shared.http import (
    MalformedBodyError,
    add_component_schemas,
    add_operational_routes,
    body_refusal,
    document_problems,
    limit_request_bodies,
    openapi_body_schema,
    parse_json_body,
)
from shared.outbox import OutboxRelay
from shared.startup import AppOptions, Wiring
from shared.supervisor import Supervisor
from shared.timers import TimerScheduler
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS, CONTACTS, dead_letter_twin
from shared.vocabulary import load_service_areas

log = logging.getLogger(__name__)
ACTIONS_DEAD_LETTER = dead_letter_twin(COMPLAINT_ACTIONS)
INPUT_TOPIC_NAMES = [CONTACTS.name, COMPLAINT_ACTIONS.name]


@dataclass
class Running:
    """What the lifespan started; tests reach the scheduler through `app.state.complaints`."""

    pool: asyncpg.Pool
    handler: ComplaintsHandler
    scheduler: TimerScheduler
    relay: OutboxRelay


# The events' identifier: a value no complaint could have (a NUL byte, which PostgreSQL
# refuses) is a 422 naming the field, not a server error.
ComplaintIdPath = Annotated[Identifier, Path(description="The complaint's id.")]


def create_app(
    settings: ComplaintsSettings | None = None, **options: Unpack[AppOptions]
) -> FastAPI:
    wiring = Wiring.begin(SERVICE, settings or ComplaintsSettings(), **options)
    settings, broker = wiring.settings, wiring.broker
    registry, clock = wiring.registry, wiring.clock
    metrics = ComplaintsMetrics(registry)
    calendar = WorkingDayCalendar(settings.complaints_closure_days)
    policy = Policy(
        settings.complaints_escalation_window_working_days,
        settings.complaints_escalation_window_calendar_month,
    )
    service_areas = load_service_areas(settings.vocabulary_file)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await wiring.open_pool(MIGRATIONS)
        handler = ComplaintsHandler(
            store=ComplaintsStore(pool),
            calendar=calendar,
            policy=policy,
            metrics=metrics,
            clock=clock,
        )
        await handler.recalculate_deadlines()
        scheduler = wiring.timer_scheduler(
            pool,
            handler.fire_timer,
            poll_seconds=settings.complaints_timer_poll_seconds,
            fire_batch=handler.fire_timers,
        )
        relay = wiring.outbox_relay(pool)
        app.state.complaints = Running(pool, handler, scheduler, relay)
        state.update(pool=pool, handler=handler)
        subscribe_inputs(broker, handler, settings)
        lag = KafkaPositions(settings.kafka)
        if not settings.complaints_api_keys:
            log.warning("no CIVICPULSE_COMPLAINTS_API_KEYS set: no system can post case actions")
        await broker.start()
        await lag.start()
        loops = Supervisor(SERVICE)
        loops.start_relay(relay)  # first: what waits in the outbox goes before new work
        loops.start("timer scheduler", scheduler.run, scheduler.stop)
        loops.every(
            "gauges",
            settings.complaints_metrics_refresh_seconds,
            functools.partial(_refresh_gauges, handler, lag, metrics, settings),
        )
        log.info(
            "complaints ready: consuming %s and %s, publishing %s",
            CONTACTS.name,
            COMPLAINT_ACTIONS.name,
            COMPLAINTS.name,
        )
        # On the way out: stop consuming, drain the relay, stop the producer.
        async with loops.serving(
            consumers=[broker], producers=[broker.stop], then_close=[lag.stop, wiring.close_pool]
        ):
            yield

    app = FastAPI(
        title="CivicPulse complaints",
        version="1.0.0",
        description="Complaints under the Complaint Handling Code (two stages) and the statutory "
        "social care procedures, with working-day deadlines. Case actions are also accepted "
        f"on the Kafka topic `{COMPLAINT_ACTIONS.name}`; every change is published on "
        f"`{COMPLAINTS.name}`.",
        lifespan=lifespan,
    )
    action_schema, action_definitions = openapi_body_schema(ACTION_ADAPTER)
    access = Access(settings)

    def running_handler() -> ComplaintsHandler:
        """The lifespan's handler; before it has started, 503 (as metrics answers)."""
        handler: ComplaintsHandler | None = state.get("handler")
        if handler is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="starting")
        return handler

    read_refusals: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or unknown API key or access token."},
        403: {"description": "Signed in, but without a complaints role."},
    }

    @app.post(
        "/v1/complaints/{complaint_id}/actions",
        summary="Apply a case action to a complaint",
        description=(
            "One action: `open`, `acknowledge`, `respond`, `request_escalation`, "
            "`refuse_escalation`, `extend`, `record_panel_meeting`, `record_panel_report`, "
            "`refer_to_ombudsman`, `record_ombudsman_decision`, `complete_learning_action`, "
            "`withdraw` or `close` (the `action` field). `complaint_id` "
            "and `source` may be left out of the body: the path and the API key give them. "
            "`action_id` is the idempotency "
            "key: the same action sent again is reported as `duplicate` and changes nothing. "
            "An action the lifecycle does not allow now (respond before acknowledging, a "
            "second extension, escalating a withdrawn complaint...) is refused with 409 and "
            "the reason; nothing changes."
        ),
        response_model=ActionAccepted,
        responses={
            401: {"description": "Missing or unknown API key."},
            403: {
                "description": "A read-only API key, or the body's `source` is not the API "
                "key's system."
            },
            404: {"model": ActionRefused, "description": "No such complaint (open it first)."},
            409: {"model": ActionRefused, "description": "Not allowed in the current state."},
            422: {"description": "Invalid action; the failing fields are listed."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": action_schema}},
            }
        },
    )
    async def post_action(
        complaint_id: ComplaintIdPath,
        request: Request,
        source: Annotated[str, Depends(access.writer)],
    ) -> ActionAccepted | JSONResponse:
        try:
            body = parse_json_body(await request.body())
        except MalformedBodyError as error:
            return _invalid("body", str(error))
        if not isinstance(body, dict):
            return _invalid("body", "an action must be a JSON object")
        body.setdefault("complaint_id", complaint_id)
        if body["complaint_id"] != complaint_id:
            return _invalid("complaint_id", "differs from the complaint in the path")
        body.setdefault("source", source)
        if body["source"] != source:
            return JSONResponse(
                {"detail": f"this API key belongs to {source!r}, not {body['source']!r}"},
                status_code=status.HTTP_403_FORBIDDEN,
            )
        try:
            action = ACTION_ADAPTER.validate_python(body)
        except ValidationError as error:
            return body_refusal(error)
        handler = running_handler()
        outcome = await handler.apply(action)
        if isinstance(outcome, Refusal):
            code = (
                status.HTTP_404_NOT_FOUND
                if outcome.reason is RefusalReason.UNKNOWN_COMPLAINT
                else status.HTTP_409_CONFLICT
            )
            refused = ActionRefused(reason=outcome.reason, message=outcome.message)
            return JSONResponse(refused.model_dump(mode="json"), status_code=code)
        view = complaint_view(outcome.complaint) if outcome.complaint else None
        if isinstance(outcome, Applied):
            events = [event.event_type for event in outcome.events]
            return ActionAccepted(result=ActionResult.APPLIED, events=events, complaint=view)
        return ActionAccepted(result=ActionResult.DUPLICATE, events=[], complaint=view)

    @app.get(
        "/v1/complaints/{complaint_id}",
        response_model=ComplaintView,
        summary="A complaint's state, stage, every deadline and its history",
        responses=read_refusals | {404: {"description": "No such complaint."}},
    )
    async def get_complaint(
        complaint_id: ComplaintIdPath, _: Annotated[str, Depends(access.reader)]
    ) -> ComplaintView | JSONResponse:
        handler = running_handler()
        complaint = await handler.get(complaint_id)
        if complaint is None:
            return JSONResponse(
                {"detail": f"no complaint {complaint_id}"}, status_code=status.HTTP_404_NOT_FOUND
            )
        return complaint_view(complaint)

    @app.delete(
        "/v1/customers/{customer_ref}",
        tags=["customers"],
        summary="Erase a customer's personal data from their complaints; returns a receipt",
        description="Officers' free text about the customer (extension, withdrawal and close "
        "reasons, a refusal's detail) is replaced by `[erased]` in their complaints' state "
        "and history. Dates, stages, outcomes and the pseudonymous reference stay, so the "
        "case and every KPI read the same. The receipt lists what changed and the copies "
        "left on topics, with the date retention removes them. `python -m civicpulse erase "
        "<ref>` erases in every service at once.",
        responses={
            401: {"description": "Missing or unknown API key."},
            422: {"description": "`customer_ref` is not a customer reference."},
        },
    )
    async def erase_customer(
        customer_ref: Annotated[
            str,
            Path(pattern=CUSTOMER_REF_PATTERN, description="Pseudonymous customer reference."),
        ],
        _: Annotated[str, Depends(access.writer)],
    ) -> ErasureReceipt:
        handler: ComplaintsHandler = state["handler"]
        return await handler.erase_customer(customer_ref)

    @app.get(
        "/v1/complaints",
        response_model=Worklist,
        summary="The officer's worklist: complaints by next due date",
        description=(
            "Complaints ordered by their next due date (a deadline, or the escalation "
            "window's end if sooner; nothing due last), then by id, a page at a time: pass "
            "`next_cursor` back as `cursor`. `state`: `open` (default), `closed` (closed, "
            "withdrawn or with the Ombudsman) or `all`. `due_before`: next due date strictly "
            "before that date. `overdue=true`: a deadline has passed without its action. "
            "Each row gives the working days left (negative when overdue). An unknown filter "
            "value or a malformed date is 422 naming the parameter."
        ),
        responses=read_refusals
        | {422: {"description": "A query parameter is invalid; it is named in `loc`."}},
    )
    async def list_complaints(
        _: Annotated[str, Depends(access.reader)],
        state_filter: Annotated[Literal["open", "closed", "all"], Query(alias="state")] = "open",
        stage: Annotated[int | None, Query(ge=1, le=3)] = None,
        procedure: ComplaintProcedure | None = None,
        service_area: str | None = None,
        due_before: date | None = None,
        overdue: bool = False,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Worklist | JSONResponse:
        if service_area is not None and service_area not in service_areas:
            return _invalid_query("service_area", f"unknown service area {service_area!r}")
        after = None
        if cursor is not None:
            after = _read_cursor(cursor)
            if after is None:
                return _invalid_query("cursor", "not a cursor this API gave")
        handler = running_handler()
        today = local_date(clock())
        page = await handler.list_complaints(
            WorklistQuery(
                today=today,
                state=state_filter,
                stage=stage,
                procedure=None if procedure is None else procedure.value,
                service_area=service_area,
                due_before=due_before,
                overdue=overdue,
                after=after,
                limit=limit + 1,
            )
        )
        rows = [worklist_row(c, handler.calendar, today) for c in page[:limit]]
        next_cursor = None
        if len(page) > limit:
            last = page[limit - 1]
            next_cursor = _write_cursor(last.next_due_date(), last.complaint_id)
        return Worklist(complaints=rows, next_cursor=next_cursor)

    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    document_problems(app)
    limit_request_bodies(app, settings.http_max_body_bytes)
    add_component_schemas(app, action_definitions)
    return app


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": [field], "msg": message, "type": "invalid"}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _invalid_query(parameter: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": ["query", parameter], "msg": message, "type": "invalid"}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _write_cursor(due: date | None, complaint_id: str) -> str:
    text = f"{'' if due is None else due.isoformat()}|{complaint_id}"
    return urlsafe_b64encode(text.encode()).decode()


def _read_cursor(cursor: str) -> tuple[date | None, str] | None:
    """The (next due date, complaint id) a cursor stands for; None if it is not one."""
    try:
        due, complaint_id = urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return (date.fromisoformat(due) if due else None), complaint_id
    except ValueError:
        return None


async def _refresh_gauges(
    handler: ComplaintsHandler,
    lag: KafkaPositions,
    metrics: ComplaintsMetrics,
    settings: ComplaintsSettings,
) -> None:
    """One pass; the supervisor repeats it, and logs and backs off when it fails."""
    await handler.refresh_gauges()
    behind = await lag.lag(settings.complaints_group_id, INPUT_TOPIC_NAMES)
    for topic, records in behind.items():
        metrics.consumer_lag.labels(topic).set(records)


def subscribe_inputs(
    broker: KafkaBroker, handler: ComplaintsHandler, settings: ComplaintsSettings
) -> None:
    """One consumer (one group) for both inputs: complaint contacts and case actions.

    A single subscriber keeps the group's membership simple; each batch is split
    by topic, and each topic has its shared `RecordConsumer` (decode, retry,
    dead-letter).
    """
    consumer_settings = ConsumerSettings.of(settings)
    contacts = event_consumer(
        broker,
        [CONTACTS],
        handler.handle_contact_events,
        settings=consumer_settings,
        ignore=ignored_contact,
    )
    actions = handler.action_topic_consumer(
        DeadLetterTopics(broker, [COMPLAINT_ACTIONS]), consumer_settings
    )
    subscribe_records(
        broker,
        {CONTACTS: contacts, COMPLAINT_ACTIONS: actions},
        group_id=settings.complaints_group_id,
        settings=consumer_settings,
        max_records=settings.complaints_max_batch,
        title="complaints/inputs",
        description="Canonical contact events (complaints open complaints) and case actions "
        "from case-management systems (JSON, see the HTTP API).",
    )
