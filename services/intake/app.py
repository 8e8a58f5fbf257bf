"""Intake's wiring: settings, broker, raw-topic consumer, HTTP API and lifespan."""

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Unpack

import asyncpg
from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import Field, TypeAdapter

from services.intake.domain import Vocabulary
from services.intake.handlers import HttpRejection, HttpResult, IntakeHandler, IntakeMetrics
from services.intake.records import MAX_HTTP_BATCH, RawContactRecord
from services.intake.settings import SERVICE, IntakeSettings
from services.intake.store import MIGRATIONS, IdempotencyStore
from services.intake.views import (
    ContactsAccepted,
    ContactsRejected,
    body_error,
    contacts_accepted,
    contacts_rejected,
)
from shared.api_keys import authenticated_source
from shared.consumer import ConsumerSettings, DeadLetterTopics, subscribe_records
from shared.http import (
    MalformedBodyError,
    add_component_schemas,
    document_problems,
    limit_request_bodies,
    openapi_body_schema,
    parse_json_body,
)
from shared.kafka import BulkProducer, dispatch_records
from shared.postgres import create_pool
from shared.startup import AppOptions, Wiring
from shared.supervisor import Supervisor
from shared.topics import CONTACTS, CONTACTS_RAW
from shared.vocabulary import load_service_areas

log = logging.getLogger(__name__)


async def keep_session(connection: asyncpg.Connection) -> None:
    """The idempotency store's reset of a released connection: nothing. The store runs a
    SELECT or one transaction a connection, never SET, LISTEN, cursors or session locks,
    so asyncpg's default reset has nothing to undo, and costs a round trip on every
    release: one of them on each batch's path, between the broker's acknowledgement and
    the offsets' commit. asyncpg still rolls back a transaction left open first."""


_BODY_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    RawContactRecord | Annotated[list[RawContactRecord], Field(max_length=MAX_HTTP_BATCH)]
)


def create_app(settings: IntakeSettings | None = None, **options: Unpack[AppOptions]) -> FastAPI:
    wiring = Wiring.begin(SERVICE, settings or IntakeSettings(), **options)
    settings, broker = wiring.settings, wiring.broker
    metrics = IntakeMetrics(wiring.registry)
    vocabulary = Vocabulary(load_service_areas(settings.vocabulary_file))
    running: dict[str, IntakeHandler] = {}  # filled by the lifespan

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await wiring.open_pool(MIGRATIONS)  # migrated; its pool serves /healthz
        store_pool = await create_pool(settings.database_url, reset=keep_session)
        producer = BulkProducer(settings.kafka, client_id=SERVICE)
        await producer.start()
        handler = IntakeHandler(
            store=IdempotencyStore(store_pool),
            dispatch_records=functools.partial(dispatch_records, producer),
            vocabulary=vocabulary,
            metrics=metrics,
            clock=wiring.clock,
            timestamps=settings.timestamp_bounds(),
        )
        running["handler"] = handler
        subscribe_raw_topic(broker, handler, settings)
        if not settings.intake_api_keys:
            log.warning("no CIVICPULSE_INTAKE_API_KEYS set: every HTTP caller will get 401")
        await broker.start()
        loops = Supervisor(SERVICE)  # no loops of its own: it shuts down in the common order
        log.info("intake ready: consuming %s, publishing %s", CONTACTS_RAW.name, CONTACTS.name)
        # The canonical events go out through the bulk producer, dead letters through
        # the broker's: both stop once consuming has.
        async with loops.serving(
            consumers=[broker],
            producers=[producer.stop, broker.stop],
            then_close=[store_pool.close, wiring.close_pool],
        ):
            yield

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
            return body_error(str(error))
        documents = body if isinstance(body, list) else [body]
        if not documents or len(documents) > MAX_HTTP_BATCH:
            return body_error(f"send between 1 and {MAX_HTTP_BATCH} records")
        outcome = await running["handler"].handle_http_batch(documents, source)
        rejections = [item for item in outcome if isinstance(item, HttpRejection)]
        if rejections:
            return contacts_rejected(rejections)
        return contacts_accepted([item for item in outcome if isinstance(item, HttpResult)])

    wiring.add_operational_routes(app)
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
