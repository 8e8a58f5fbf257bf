"""Intake's wiring: settings, broker, raw-topic consumer, HTTP API and lifespan."""

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field, TypeAdapter

from services.intake.domain import Vocabulary
from services.intake.handlers import (
    HttpRejection,
    IntakeHandler,
    IntakeMetrics,
    RecordStatus,
)
from services.intake.records import MAX_HTTP_BATCH, RawContactRecord
from services.intake.settings import IntakeSettings
from services.intake.store import MIGRATIONS, IdempotencyStore
from shared.api_keys import authenticated_source
from shared.consumer import ConsumerSettings, DeadLetterTopics, subscribe_records
from shared.events.envelope import utc_now
from shared.http import (
    MalformedBodyError,
    add_component_schemas,
    add_operational_routes,
    document_problems,
    limit_request_bodies,
    openapi_body_schema,
    parse_json_body,
)
from shared.kafka import BulkProducer, make_broker, publish_events
from shared.startup import prepare
from shared.topics import CONTACTS, CONTACTS_RAW
from shared.vocabulary import load_service_areas

log = logging.getLogger(__name__)
SERVICE = "intake"


class RecordResult(BaseModel):
    index: int = Field(description="Position of the record in the request.")
    idempotency_key: str
    event_id: str = Field(description="The canonical event's id (the same for a duplicate).")
    status: RecordStatus


class ContactsAccepted(BaseModel):
    accepted: int = Field(description="Records published as new canonical events.")
    duplicates: int = Field(description="Records already accepted earlier; nothing was changed.")
    results: list[RecordResult]


class RecordError(BaseModel):
    record: int | None = Field(description="Position of the failing record; null for the body.")
    field: str = Field(description="Dotted path of the failing field within the record.")
    reason: str = Field(description="Reason code, e.g. `invalid_record`, `unknown_vocabulary`.")
    message: str


class ContactsRejected(BaseModel):
    detail: list[RecordError]


def _rejection_body(rejections: list[HttpRejection]) -> dict[str, Any]:
    errors = [
        RecordError(
            record=r.index, field=e.field, reason=r.rejected.reason.value, message=e.message
        )
        for r in rejections
        for e in r.rejected.errors
    ]
    return ContactsRejected(detail=errors).model_dump()


def _body_error(message: str) -> JSONResponse:
    error = RecordError(record=None, field="body", reason="invalid_json", message=message)
    return JSONResponse(
        ContactsRejected(detail=[error]).model_dump(),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


_BODY_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    RawContactRecord | Annotated[list[RawContactRecord], Field(max_length=MAX_HTTP_BATCH)]
)


def create_app(
    settings: IntakeSettings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    settings = settings or IntakeSettings()
    registry = registry or CollectorRegistry()
    broker = make_broker(settings.kafka, client_id=SERVICE, registry=registry)
    metrics = IntakeMetrics(registry)
    vocabulary = Vocabulary(load_service_areas(settings.vocabulary_file))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await prepare(settings, SERVICE, MIGRATIONS)
        producer = BulkProducer(settings.kafka, client_id=SERVICE)
        await producer.start()
        handler = IntakeHandler(
            store=IdempotencyStore(pool),
            publish_events=functools.partial(publish_events, producer, CONTACTS),
            vocabulary=vocabulary,
            metrics=metrics,
            clock=clock,
            timestamps=settings.timestamp_bounds(),
        )
        state.update(pool=pool, handler=handler)
        subscribe_raw_topic(broker, handler, settings)
        if not settings.intake_api_keys:
            log.warning("no CIVICPULSE_INTAKE_API_KEYS set: every HTTP caller will get 401")
        await broker.start()
        log.info("intake ready: consuming %s, publishing %s", CONTACTS_RAW.name, CONTACTS.name)
        try:
            yield
        finally:
            # Stops consuming first and lets the batch in hand finish and commit;
            # only then may the producer and the pool go.
            await broker.stop()
            await producer.stop()
            await pool.close()

    app = FastAPI(
        title="CivicPulse intake",
        version="1.0.0",
        description="Accepts contact records from council systems and publishes canonical "
        "contact events. Records are also accepted on the Kafka topic "
        f"`{CONTACTS_RAW.name}`.",
        lifespan=lifespan,
    )
    caller = authenticated_source(settings.intake_api_keys)

    body_schema, body_definitions = openapi_body_schema(_BODY_ADAPTER)

    @app.post(
        "/v1/contacts",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Submit one contact record or a batch of up to 1,000",
        description=(
            "Validates every record, then publishes them as canonical events. **All or "
            "nothing**: if any record is invalid, the response is 422 listing every failing "
            "record (by position) and field, and nothing is published. A record whose "
            "idempotency key was already accepted with the same content is reported as a "
            "`duplicate` and not published again; the same key with different content is a "
            "409 conflict and nothing is published. Service areas, channels and kinds are "
            "folded for case and separators (`Face-to-face` is `face_to_face`); unknown values "
            "are rejected. Personal data fields (name, email, phone, address, postcode, ...) "
            "are dropped: events carry only `customer_ref`."
        ),
        response_model=ContactsAccepted,
        responses={
            401: {"description": "Missing or unknown API key."},
            409: {"model": ContactsRejected, "description": "Idempotency key reused."},
            422: {"model": ContactsRejected, "description": "Invalid records."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def submit_contacts(
        request: Request, source: Annotated[str, Depends(caller)]
    ) -> ContactsAccepted | JSONResponse:
        try:
            body = parse_json_body(await request.body())
        except MalformedBodyError as error:
            return _body_error(str(error))
        documents = body if isinstance(body, list) else [body]
        if not documents or len(documents) > MAX_HTTP_BATCH:
            return _body_error(f"send between 1 and {MAX_HTTP_BATCH} records")
        handler: IntakeHandler = state["handler"]
        outcome = await handler.handle_http_batch(documents, source)
        rejections = [item for item in outcome if isinstance(item, HttpRejection)]
        if rejections:
            conflict = all(r.rejected.reason == "idempotency_conflict" for r in rejections)
            return JSONResponse(
                _rejection_body(rejections),
                status_code=status.HTTP_409_CONFLICT
                if conflict
                else status.HTTP_422_UNPROCESSABLE_CONTENT,
            )
        results = [RecordResult.model_validate(item, from_attributes=True) for item in outcome]
        return ContactsAccepted(
            accepted=sum(r.status is RecordStatus.ACCEPTED for r in results),
            duplicates=sum(r.status is RecordStatus.DUPLICATE for r in results),
            results=results,
        )

    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    document_problems(app)
    limit_request_bodies(app, settings.http_max_body_bytes)
    add_component_schemas(app, body_definitions)
    return app


def subscribe_raw_topic(
    broker: KafkaBroker, handler: IntakeHandler, settings: IntakeSettings
) -> None:
    consumer = handler.raw_topic_consumer(
        DeadLetterTopics(broker, [CONTACTS_RAW]), ConsumerSettings.of(settings)
    )
    subscribe_records(
        broker,
        {CONTACTS_RAW: consumer},
        group_id=settings.intake_group_id,
        settings=ConsumerSettings.of(settings),
        max_records=settings.intake_max_batch,
        title="intake/raw-contacts",
        description="Contact records from council systems (RawContactRecord JSON).",
    )
