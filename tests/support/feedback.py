"""Helpers for the feedback service's tests: a clock to move, events to publish, waits."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from civicpulse.infra import pick_free_port
from services.feedback.app import RunningFeedback, create_app
from services.feedback.settings import FeedbackSettings
from shared.api_keys import hash_api_key
from shared.events import (
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintOpened,
    ComplaintOpenedPayload,
    ComplaintResponded,
    ComplaintRespondedPayload,
    ContactReceived,
    ContactReceivedPayload,
    ContactResolved,
    ContactResolvedPayload,
    Event,
)
from shared.events.catalogue import topic_for
from shared.topics import COMPLAINTS, CONTACTS
from tests.support.kafka import new_group_at_end

CRM_KEY = "test-feedback-crm-key-0123456789"
TOKEN_SECRET = "test-secret-for-feedback-answer-links-0123456789"
CALLBACK_TOKEN = "test-notify-callback-token-0123456789abcdef"
DELAY = timedelta(hours=24)
EXPIRY = timedelta(days=14)


class TestClock:
    """The service's clock, moved by the test: deadlines are never slept for."""

    __test__ = False

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    clock: TestClock
    registry: CollectorRegistry
    settings: FeedbackSettings

    @property
    def running(self) -> RunningFeedback:
        running: RunningFeedback = self.app.state.feedback
        return running

    async def fire_timers(self) -> int:
        return await self.running.scheduler.fire_due()

    async def publish_outbox(self) -> None:
        while await self.running.relay.publish_pending():
            pass


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def feedback_settings(bootstrap: str, database_url: str, group_id: str) -> FeedbackSettings:
    return FeedbackSettings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        feedback_group_id=group_id,
        feedback_token_secret=TOKEN_SECRET,
        feedback_api_keys={"crm": hash_api_key(CRM_KEY)},
        feedback_delay_hours=DELAY.total_seconds() / 3600,
        feedback_expiry_days=EXPIRY.days,
        feedback_quiet_period_days=30,
        feedback_public_url="http://feedback.test",
        # Module-scoped services open many links from one address; the limit's own
        # tests (test_feedback_page_guards, test_feedback_residents_pages) set theirs.
        feedback_rate_limit="100000/minute",
        feedback_notify_email_template_id="11111111-2222-3333-4444-555555555555",
        feedback_notify_sms_template_id="66666666-7777-8888-9999-000000000000",
        feedback_notify_callback_token=CALLBACK_TOKEN,
    )


@asynccontextmanager
async def running_feedback(settings: FeedbackSettings) -> AsyncIterator[RunningService]:
    clock = TestClock(datetime.now(UTC).replace(microsecond=0))
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://feedback.test", headers={"X-API-Key": CRM_KEY}
        ) as client:
            yield RunningService(app, client, clock, registry, settings)


@asynccontextmanager
async def feedback_from_now(
    bootstrap: str, database_url: str, group_prefix: str
) -> AsyncIterator[RunningService]:
    """The feedback service in-process, its consumer group placed at the topics' ends,
    so it decides only what a test publishes from now on."""
    group = await new_group_at_end(bootstrap, [CONTACTS.name, COMPLAINTS.name], group_prefix)
    async with running_feedback(feedback_settings(bootstrap, database_url, group)) as service:
        yield service


@asynccontextmanager
async def served_feedback(settings: FeedbackSettings) -> AsyncIterator[RunningService]:
    """The service behind a real HTTP server on a loopback port, for a real browser."""
    port = pick_free_port()
    settings = settings.model_copy(update={"feedback_public_url": f"http://127.0.0.1:{port}"})
    clock = TestClock(datetime.now(UTC).replace(microsecond=0))
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving  # raises why it could not start
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": CRM_KEY}
        ) as client:
            yield RunningService(app, client, clock, registry, settings)
    finally:
        server.should_exit = True
        await serving


async def publish(bootstrap: str, *events: Event) -> None:
    """Publish events as their owning service would, with a plain client."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic_for(type(event)).name, event.to_bytes(), key=event.key.encode()
            )
    finally:
        await producer.stop()


async def decisions(
    service: RunningService, case_type: str, case_id: str, *, within_seconds: float = 30.0
) -> dict[str, Any]:
    """The case's survey decision, once the service has made one."""
    deadline = time.monotonic() + within_seconds
    while True:
        response = await service.client.get(f"/v1/cases/{case_type}/{case_id}")
        body: dict[str, Any] = response.json()
        if body["request"] is not None or body["suppressions"] or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


def contact_resolved(
    contact_id: str, customer_ref: str | None, at: datetime, *, kind: str = "enquiry"
) -> ContactResolved:
    return ContactResolved(
        contact_id=contact_id,
        occurred_at=at,
        source="crm",
        payload=ContactResolvedPayload(
            channel="phone", service_area="waste", kind=kind, customer_ref=customer_ref
        ),
    )


def contact_received_resolved(
    contact_id: str, customer_ref: str, at: datetime, *, kind: str = "enquiry"
) -> ContactReceived:
    return ContactReceived(
        contact_id=contact_id,
        occurred_at=at,
        source="crm",
        payload=ContactReceivedPayload(
            channel="phone",
            service_area="waste",
            kind=kind,
            customer_ref=customer_ref,
            resolved_at_first_contact=True,
        ),
    )


def complaint_events(
    complaint_id: str, customer_ref: str, contact_id: str | None, at: datetime
) -> tuple[ComplaintOpened, ComplaintResponded, ComplaintResponded, ComplaintClosed]:
    """A corporate complaint through both stages of the Code, then closed."""
    facts: dict[str, Any] = {"service_area": "waste"}

    def responded(stage: int, days: int) -> ComplaintResponded:
        return ComplaintResponded(
            complaint_id=complaint_id,
            occurred_at=at + timedelta(days=days),
            source="civicpulse-complaints",
            payload=ComplaintRespondedPayload(
                **facts, stage=stage, outcome="partly_upheld", responder=f"staff-{stage}"
            ),
        )

    return (
        ComplaintOpened(
            complaint_id=complaint_id,
            occurred_at=at,
            source="civicpulse-complaints",
            payload=ComplaintOpenedPayload(
                **facts, channel="web", customer_ref=customer_ref, contact_id=contact_id
            ),
        ),
        responded(1, 1),
        responded(2, 2),
        ComplaintClosed(
            complaint_id=complaint_id,
            occurred_at=at + timedelta(days=3),
            source="civicpulse-complaints",
            payload=ComplaintClosedPayload(**facts, final_stage=2),
        ),
    )
