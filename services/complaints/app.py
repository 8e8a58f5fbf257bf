"""The complaints service's wiring: consumers, timers, outbox relay, HTTP API and lifespan."""

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Unpack

import asyncpg
from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.complaints.actions import ACTION_ADAPTER
from services.complaints.domain import Refusal, RefusalReason
from services.complaints.handlers import Applied, ComplaintsHandler, ComplaintsMetrics
from services.complaints.procedures import Policy
from services.complaints.settings import ComplaintsSettings
from services.complaints.store import MIGRATIONS, SERVICE
from services.complaints.views import (
    ActionAccepted,
    ActionRefused,
    ActionResult,
    ComplaintView,
    complaint_view,
)
from services.complaints.working_days import WorkingDayCalendar
from shared.api_keys import authenticated_source
from shared.consumer import (
    EventConsumer,
    InboundRecord,
    dead_letter_inbound,
    inbound_records,
    undecoded,
)
from shared.consumer_lag import KafkaPositions
from shared.http import add_component_schemas, add_operational_routes, openapi_body_schema
from shared.kafka import batch_consumer_options
from shared.outbox import OutboxRelay
from shared.startup import AppOptions, Wiring
from shared.supervisor import Supervisor
from shared.timers import TimerScheduler
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS, CONTACTS, dead_letter_twin

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


def create_app(
    settings: ComplaintsSettings | None = None, **options: Unpack[AppOptions]
) -> FastAPI:
    wiring = Wiring.begin(SERVICE, settings or ComplaintsSettings(), **options)
    settings, broker = wiring.settings, wiring.broker
    registry, clock = wiring.registry, wiring.clock
    metrics = ComplaintsMetrics(registry)
    calendar = WorkingDayCalendar(settings.complaints_closure_days)
    policy = Policy(settings.complaints_escalation_window_working_days)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await wiring.open_pool(MIGRATIONS)
        handler = ComplaintsHandler(
            pool=pool,
            calendar=calendar,
            policy=policy,
            metrics=metrics,
            dead_letter=lambda record, reason, error_type, attempts: dead_letter_action(
                broker, record, reason, error_type, attempts
            ),
            clock=clock,
            max_attempts=settings.dead_letter_max_attempts,
        )
        await handler.recalculate_deadlines()
        scheduler = TimerScheduler(
            pool,
            SERVICE,
            handler.fire_timer,
            clock=clock,
            poll_seconds=settings.complaints_timer_poll_seconds,
        )
        relay = OutboxRelay(pool, broker, SERVICE, metrics=wiring.outbox_metrics)
        app.state.complaints = Running(pool, handler, scheduler, relay)
        state.update(pool=pool, handler=handler)
        subscribe_inputs(broker, handler, settings)
        lag = KafkaPositions(settings.kafka_bootstrap)
        if not settings.complaints_api_keys:
            log.warning("no CIVICPULSE_COMPLAINTS_API_KEYS set: every HTTP caller will get 401")
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
        try:
            yield
        finally:
            # Stop consuming, drain the relay, stop the producer (shared.supervisor).
            await loops.shut_down(consumers=[broker], producers=[broker.stop])
            await lag.stop()
            await wiring.close_pool()

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
    caller = authenticated_source(settings.complaints_api_keys)

    @app.post(
        "/v1/complaints/{complaint_id}/actions",
        summary="Apply a case action to a complaint",
        description=(
            "One action: `open`, `acknowledge`, `respond`, `request_escalation`, `extend`, "
            "`refer_to_ombudsman`, `withdraw` or `close` (the `action` field). `complaint_id` "
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
            403: {"description": "The body's `source` is not the API key's system."},
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
        complaint_id: str, request: Request, source: Annotated[str, Depends(caller)]
    ) -> ActionAccepted | JSONResponse:
        try:
            body = await request.json()
        except ValueError as error:
            return _invalid("body", f"not valid JSON: {error}")
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
            return JSONResponse(
                {"detail": error.errors(include_url=False, include_context=False)},
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            )
        handler: ComplaintsHandler = state["handler"]
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
        responses={
            401: {"description": "Missing or unknown API key."},
            404: {"description": "No such complaint."},
        },
    )
    async def get_complaint(
        complaint_id: str, _: Annotated[str, Depends(caller)]
    ) -> ComplaintView | JSONResponse:
        handler: ComplaintsHandler = state["handler"]
        complaint = await handler.get(complaint_id)
        if complaint is None:
            return JSONResponse(
                {"detail": f"no complaint {complaint_id}"}, status_code=status.HTTP_404_NOT_FOUND
            )
        return complaint_view(complaint)

    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    add_component_schemas(app, action_definitions)
    return app


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": [field], "msg": message, "type": "invalid"}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


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


async def dead_letter_action(
    broker: KafkaBroker, record: InboundRecord, reason: str, error_type: str, attempts: int
) -> None:
    await dead_letter_inbound(
        broker,
        ACTIONS_DEAD_LETTER,
        record,
        reason=reason,
        error_type=error_type,
        attempts=attempts,
    )


def subscribe_inputs(
    broker: KafkaBroker, handler: ComplaintsHandler, settings: ComplaintsSettings
) -> None:
    """One consumer (one group) for both inputs: complaint contacts and case actions.

    A single subscriber keeps the group's membership simple; each batch is split
    by topic. Canonical contact events go through the shared `EventConsumer`
    (decode, retry, dead-letter); action records through the handler.
    """
    contacts = EventConsumer(
        broker,
        [CONTACTS],
        handler.handle_contact_events,
        max_attempts=settings.dead_letter_max_attempts,
    )

    @broker.subscriber(  # type: ignore[untyped-decorator]
        CONTACTS.name,
        COMPLAINT_ACTIONS.name,
        decoder=undecoded,
        title="complaints/inputs",
        description="Canonical contact events (complaints open complaints) and case actions "
        "from case-management systems (JSON, see the HTTP API).",
        **batch_consumer_options(
            settings.complaints_group_id, max_records=settings.complaints_max_batch
        ),
    )
    async def consume_inputs(_: Any, message: KafkaMessage) -> None:
        records = inbound_records(message)
        await contacts.consume([r for r in records if r.position.topic == CONTACTS.name])
        await handler.handle_action_records(
            [r for r in records if r.position.topic == COMPLAINT_ACTIONS.name]
        )
