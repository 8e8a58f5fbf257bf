"""The optional sender: delivers `civicpulse.notifications` messages with GOV.UK Notify.

Runs only with a Notify API key (`python -m services.feedback send`); without
one the topic itself is the hand-off to whatever the council uses, and nothing
claims to have been sent. A message whose reference (the request id) Notify
already accepted is not sent again, so a redelivered batch sends no duplicate.
Notify's 4xx answers (a bad address or template) are dead-lettered with the
reason; 429, 5xx and network errors leave the batch to be redelivered. The
loop itself is the shared one (`shared.consumer`): a message that fails in an
unexpected way is tried up to the attempt cap, then dead-lettered.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from fastapi import FastAPI
from notifications_python_client.errors import HTTPError
from notifications_python_client.notifications import NotificationsAPIClient
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from requests import RequestException

from services.feedback.notifications import NotifyMessage
from services.feedback.settings import SERVICE, FeedbackSettings
from services.feedback.store import MIGRATIONS, FeedbackStore
from shared.consumer import (
    ConsumerSettings,
    DeadLetterSink,
    DeadLetterTopics,
    Fault,
    InboundRecord,
    RecordConsumer,
    RecordFault,
    RecordRejectedError,
    subscribe_records,
)
from shared.events.envelope import utc_now
from shared.http import add_operational_routes
from shared.kafka import make_broker
from shared.postgres import create_pool, migrate
from shared.topics import NOTIFICATIONS, dead_letter_twin

log = logging.getLogger(__name__)
NOTIFICATIONS_DEAD_LETTER = dead_letter_twin(NOTIFICATIONS)


class NotifyClient(Protocol):
    """The part of `notifications_python_client.NotificationsAPIClient` the sender uses."""

    def send_email_notification(
        self,
        email_address: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]: ...

    def send_sms_notification(
        self,
        phone_number: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]: ...


class SentLog(Protocol):
    async def already_sent(self, reference: str) -> bool: ...
    async def record(self, reference: str, notification_id: str | None) -> None: ...


class PostgresSentLog:
    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = FeedbackStore(pool)
        self._clock = clock

    async def already_sent(self, reference: str) -> bool:
        return await self._store.already_sent(reference)

    async def record(self, reference: str, notification_id: str | None) -> None:
        await self._store.record_sent(reference, notification_id, self._clock())


class MessageRefusedError(Exception):
    """Notify refused the message for a reason a retry will not fix."""


class NotifyUnavailableError(ConnectionError):
    """Notify is down or rate-limiting: redeliver the batch later."""


class SenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "feedback_notifications_delivered",
            "Messages GOV.UK Notify accepted, by outcome (sent, duplicate, refused).",
            ["outcome"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "feedback_notifications_dead_lettered",
            "Notification records sent to the dead-letter topic, by error type.",
            ["error_type"],
            registry=registry,
        )


def official_client(api_key: str, base_url: str) -> NotifyClient:
    client: NotifyClient = NotificationsAPIClient(  # type: ignore[no-untyped-call]
        api_key, base_url=base_url
    )
    return client


class NotifySender:
    def __init__(self, client: NotifyClient, sent: SentLog, metrics: SenderMetrics) -> None:
        self._client = client
        self._sent = sent
        self._metrics = metrics

    async def deliver(self, message: NotifyMessage) -> str:
        """Send one message; returns `sent` or `duplicate`; raises on refusal or outage."""
        if await self._sent.already_sent(message.reference):
            self._metrics.delivered.labels("duplicate").inc()
            return "duplicate"
        try:
            # The official client is synchronous (requests): keep the event loop free.
            response = await asyncio.to_thread(self._call, message)
        except HTTPError as error:
            if error.status_code == 429 or error.status_code >= 500:
                raise NotifyUnavailableError(str(error)) from error
            self._metrics.delivered.labels("refused").inc()
            raise MessageRefusedError(str(error)) from error
        except RequestException as error:
            raise NotifyUnavailableError(str(error)) from error
        await self._sent.record(message.reference, str(response.get("id") or "") or None)
        self._metrics.delivered.labels("sent").inc()
        return "sent"

    def _call(self, message: NotifyMessage) -> dict[str, Any]:
        personalisation = message.personalisation.model_dump()
        if message.notification_type == "email":
            assert message.email_address is not None
            return self._client.send_email_notification(
                email_address=message.email_address,
                template_id=message.template_id,
                personalisation=personalisation,
                reference=message.reference,
            )
        assert message.phone_number is not None
        return self._client.send_sms_notification(
            phone_number=message.phone_number,
            template_id=message.template_id,
            personalisation=personalisation,
            reference=message.reference,
        )

    def notifications_consumer(
        self, dead_letter: DeadLetterSink, settings: ConsumerSettings
    ) -> RecordConsumer[NotifyMessage]:
        """The topic's consumer: unreadable messages and Notify's refusals are dead-lettered."""
        return RecordConsumer(
            decode_message,
            self.deliver_all,
            dead_letter,
            settings=settings,
            on_dead_letter=lambda error_type: self._metrics.dead_lettered.labels(error_type).inc(),
        )

    async def deliver_all(self, messages: Sequence[NotifyMessage]) -> list[Fault | None]:
        """Send each message in turn; a refusal is its message's fault, an outage raises."""
        faults: list[Fault | None] = []
        for message in messages:
            try:
                await self.deliver(message)
            except MessageRefusedError as error:
                faults.append(RecordFault("refused", f"Notify refused it: {error}"))
            else:
                faults.append(None)
        return faults


def decode_message(record: InboundRecord) -> NotifyMessage:
    try:
        return NotifyMessage.model_validate_json(record.value)
    except ValidationError as error:
        raise RecordRejectedError(
            RecordFault("invalid", f"not a Notify message: {error}")
        ) from error


def create_sender_app(
    settings: FeedbackSettings,
    *,
    client: NotifyClient | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The sender process; refuses to build without a Notify API key (or an injected client)."""
    if client is None:
        if settings.feedback_notify_api_key is None:
            raise ValueError(
                "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY is not set: without it the "
                f"{NOTIFICATIONS.name} topic is the hand-off and nothing is sent"
            )
        client = official_client(
            settings.feedback_notify_api_key.get_secret_value(), settings.feedback_notify_base_url
        )
    registry = registry or CollectorRegistry()
    broker = make_broker(settings.kafka, client_id=f"{SERVICE}-sender", registry=registry)
    metrics = SenderMetrics(registry)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url)
        await migrate(pool, SERVICE, MIGRATIONS)
        sender = NotifySender(client, PostgresSentLog(pool), metrics)
        state["pool"] = pool

        consumer_settings = ConsumerSettings.of(settings)
        subscribe_records(
            broker,
            {
                NOTIFICATIONS: sender.notifications_consumer(
                    DeadLetterTopics(broker, [NOTIFICATIONS]), consumer_settings
                )
            },
            group_id=settings.feedback_sender_group_id,
            settings=consumer_settings,
            max_records=50,
            title="feedback-sender/notifications",
        )

        await broker.start()
        log.info("feedback sender ready: delivering %s with GOV.UK Notify", NOTIFICATIONS.name)
        try:
            yield
        finally:
            await broker.stop()
            await pool.close()

    app = FastAPI(title="CivicPulse feedback sender", version="1.0.0", lifespan=lifespan)
    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    return app
