"""The optional sender: delivers `civicpulse.notifications` messages with GOV.UK Notify.

Runs only with a Notify API key (`python -m services.feedback send`); without
one the topic itself is the hand-off to whatever the council uses, and nothing
claims to have been sent. Each message is decided once, in a transaction that
holds the customer's lock (the one erasure takes, see docs/feedback.md,
"Sending with GOV.UK Notify"): the route is read again from feedback's table,
so an erased or opted-out customer gets nothing (suppressed, with the reason),
and the current address is used, not the one on the topic. A reference Notify
already accepted is never sent again.

What Notify answers decides the rest (`notify_failure`):
- 400 and other 4xx (a bad address or template): the message is dead-lettered;
- 429, 5xx and network errors: the batch is rewound and redelivered after the
  shared consumer's outage backoff, with jitter and at least Notify's
  Retry-After; nothing is dead-lettered for it;
- 401 or 403 (a revoked or wrong key): the sender stops. It stays up, reports
  itself not ready on /healthz, sets `feedback_notify_sender_stopped{reason}`
  to 1 (the CivicPulseNotifySenderStopped alert) and never calls Notify again:
  every redelivery of the held batch is put back untouched, so no offset moves
  past the last message delivered. A restart with a good key resumes there.
"""

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from fastapi import FastAPI
from notifications_python_client.errors import HTTPError
from notifications_python_client.notifications import NotificationsAPIClient
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError
from requests import RequestException

from services.feedback.delivery_store import DeliveryStore
from services.feedback.handlers import NotifyTemplates
from services.feedback.notifications import (
    SUPPRESSION_REASONS,
    NotifyMessage,
    RouteState,
    readdressed,
)
from services.feedback.notify_failures import (
    STOP_REASONS,
    MessageRefusedError,
    NotifyKeyRefusedError,
    NotifyUnavailableError,
    notify_failure,
)
from services.feedback.settings import SERVICE, FeedbackSettings
from services.feedback.store import MIGRATIONS
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


class CustomerDeliveries(Protocol):
    """One customer's deliveries, inside the transaction that holds their lock."""

    async def decided(self, reference: str) -> bool: ...
    async def route_state(self, customer_ref: str) -> RouteState: ...
    async def record_sent(
        self,
        reference: str,
        customer_ref: str,
        notification_type: str,
        notification_id: str | None,
        now: datetime,
    ) -> None: ...
    async def record_suppressed(
        self, reference: str, customer_ref: str, reason: str, now: datetime
    ) -> None: ...


class Deliveries(Protocol):
    """`DeliveryStore`, or a test's in-memory twin."""

    def for_customer(
        self, customer_ref: str
    ) -> AbstractAsyncContextManager[CustomerDeliveries]: ...


class SenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "feedback_notifications_delivered",
            "Messages handled by the sender, by outcome (sent, duplicate, suppressed, refused).",
            ["outcome"],
            registry=registry,
        )
        self.suppressed = Counter(
            "feedback_notifications_suppressed",
            "Messages not sent because, at send time, the customer was erased, opted out or "
            "had no working address, by reason.",
            ["reason"],
            registry=registry,
        )
        self.unavailable = Counter(
            "feedback_notify_unavailable",
            "Notify answers that held a batch for redelivery (429, 5xx, network), by status.",
            ["status"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "feedback_notifications_dead_lettered",
            "Notification records sent to the dead-letter topic, by error type.",
            ["error_type"],
            registry=registry,
        )
        self.held = Counter(
            "feedback_notify_messages_held",
            "Messages put back untouched because the sender is stopped (a refused key).",
            registry=registry,
        )
        self.stopped = Gauge(
            "feedback_notify_sender_stopped",
            "1 while the sender is stopped because Notify refused its API key, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in SUPPRESSION_REASONS:
            self.suppressed.labels(reason)
        for reason in STOP_REASONS.values():
            self.stopped.labels(reason).set(0)


def official_client(api_key: str, base_url: str) -> NotifyClient:
    client: NotifyClient = NotificationsAPIClient(  # type: ignore[no-untyped-call]
        api_key, base_url=base_url
    )
    return client


class NotifySender:
    def __init__(
        self,
        client: NotifyClient,
        deliveries: Deliveries,
        metrics: SenderMetrics,
        *,
        templates: NotifyTemplates,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._deliveries = deliveries
        self._metrics = metrics
        self._templates = templates
        self._clock = clock
        self._stopped: str | None = None

    @property
    def stopped(self) -> str | None:
        """Why the sender has stopped (`unauthorized`, `forbidden`), or None while it runs."""
        return self._stopped

    def health_problem(self) -> str | None:
        if self._stopped is None:
            return None
        return (
            f"stopped: GOV.UK Notify refused the API key ({self._stopped}); "
            "set a valid CIVICPULSE_FEEDBACK_NOTIFY_API_KEY and restart"
        )

    async def deliver(self, message: NotifyMessage) -> str:
        """Send one message; returns `sent`, `duplicate` or `suppressed`.

        Raises `MessageRefusedError` on a refusal, `NotifyUnavailableError` on
        an outage and `NotifyKeyRefusedError` once the key was refused.
        """
        if self._stopped is not None:
            self._metrics.held.inc()
            raise NotifyKeyRefusedError(self._stopped, "stopped earlier; not calling Notify")
        if message.recipient is None:
            raise ValueError(f"a {message.notification_type} message without its address")
        # The lock is held across the call to Notify: an erasure waiting for it
        # commits after the message is recorded sent, and one that got it first
        # has deleted the route this reads, so nothing goes.
        async with self._deliveries.for_customer(message.customer_ref) as customer:
            if await customer.decided(message.reference):
                outcome = "duplicate"
            else:
                outcome = await self._decide(customer, message)
        self._metrics.delivered.labels(outcome).inc()
        return outcome

    async def _decide(self, customer: CustomerDeliveries, message: NotifyMessage) -> str:
        state = await customer.route_state(message.customer_ref)
        outgoing = readdressed(
            message,
            state,
            email_template_id=self._templates.email,
            sms_template_id=self._templates.sms,
        )
        if isinstance(outgoing, str):
            await customer.record_suppressed(
                message.reference, message.customer_ref, outgoing, self._clock()
            )
            self._metrics.suppressed.labels(outgoing).inc()
            log.info("request %s not sent: %s", message.reference, outgoing)
            return "suppressed"
        response = await self._send(outgoing)
        await customer.record_sent(
            message.reference,
            message.customer_ref,
            outgoing.notification_type,
            str(response.get("id") or "") or None,
            self._clock(),
        )
        return "sent"

    async def _send(self, message: NotifyMessage) -> dict[str, Any]:
        try:
            # The official client is synchronous (requests): keep the event loop free.
            return await asyncio.to_thread(self._call, message)
        except HTTPError as error:  # the client reports network errors as 503 too
            failure = notify_failure(error, self._clock())
            self._count(failure, error.status_code)
            raise failure from error
        except RequestException as error:
            failure = NotifyUnavailableError(str(error))
            self._count(failure, 0)
            raise failure from error

    def _count(self, failure: Exception, status_code: int) -> None:
        if isinstance(failure, NotifyKeyRefusedError):
            self._stop(failure.reason, str(failure))
        elif isinstance(failure, NotifyUnavailableError):
            self._metrics.unavailable.labels(str(status_code)).inc()
        else:
            self._metrics.delivered.labels("refused").inc()

    def _stop(self, reason: str, detail: str) -> None:
        if self._stopped is None:
            log.error("feedback sender stopped, nothing more is sent: %s", detail)
        self._stopped = reason
        self._metrics.stopped.labels(reason).set(1)

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
        sender = NotifySender(
            client,
            DeliveryStore(pool),
            metrics,
            templates=NotifyTemplates(
                email=settings.feedback_notify_email_template_id,
                sms=settings.feedback_notify_sms_template_id,
            ),
        )
        state["pool"], state["sender"] = pool, sender

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
            jitter=random.random,
        )

        await broker.start()
        log.info("feedback sender ready: delivering %s with GOV.UK Notify", NOTIFICATIONS.name)
        try:
            yield
        finally:
            await broker.stop()
            await pool.close()

    app = FastAPI(title="CivicPulse feedback sender", version="1.0.0", lifespan=lifespan)

    def health_problem() -> str | None:
        sender: NotifySender | None = state.get("sender")
        return None if sender is None else sender.health_problem()

    add_operational_routes(
        app,
        broker=broker,
        registry=registry,
        pool=lambda: state.get("pool"),
        problem=health_problem,
    )
    return app
