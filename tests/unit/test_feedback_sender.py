"""The sender hands messages to GOV.UK Notify with the official client, once each."""

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry
from requests import Response

from services.feedback.handlers import NotifyTemplates
from services.feedback.notifications import ContactRoute, NotifyMessage, RouteState, notify_message
from services.feedback.notify_failures import (
    MessageRefusedError,
    NotifyKeyRefusedError,
    NotifyUnavailableError,
    retry_after_seconds,
)
from services.feedback.sender import (
    NotifySender,
    SenderMetrics,
    create_sender_app,
    official_client,
)
from services.feedback.settings import FeedbackSettings
from shared.consumer import (
    MAX_RETRY_AFTER_SECONDS,
    ConsumerSettings,
    Fault,
    InboundRecord,
    OutageBackoff,
    subscribe_records,
)
from shared.dead_letters import SourcePosition, is_transient
from shared.kafka import make_broker
from shared.topics import NOTIFICATIONS
from tests.support.fake_deliveries import MemoryDeliveries
from tests.support.fake_notify import API_KEY, FakeNotify, serving_fake_notify
from tests.support.feedback import TOKEN_SECRET


def message(**route: str) -> NotifyMessage:
    return notify_message(
        ContactRoute.model_validate(route),
        request_id="req-1",
        customer_ref="CUST-1",
        survey_link="https://feedback.example.gov.uk/surveys/abc",
        service_area="council_tax",
        expires_at=datetime(2026, 3, 16, 23, 30, tzinfo=UTC),
        email_template_id="email-template",
        sms_template_id="sms-template",
    )


def routes(*, email: str | None = None, mobile: str | None = None) -> MemoryDeliveries:
    """The deliveries log, with CUST-1's current route in feedback's table."""
    return MemoryDeliveries(routes={"CUST-1": RouteState(email=email, mobile=mobile)})


@pytest.fixture
def notify() -> Iterator[tuple[FakeNotify, str]]:
    """A stub Notify API on a loopback port, so the real client is what is tested."""
    with serving_fake_notify() as served:
        yield served


def sender(
    base_url: str, sent: MemoryDeliveries | None = None, metrics: SenderMetrics | None = None
) -> NotifySender:
    client = official_client(API_KEY, base_url)
    return NotifySender(
        client,
        routes(email="resident@example.org") if sent is None else sent,
        metrics or SenderMetrics(CollectorRegistry()),
        templates=NotifyTemplates(email="email-template", sms="sms-template"),
    )


async def test_an_email_goes_to_notify_with_template_personalisation_and_reference(
    notify: tuple[FakeNotify, str],
) -> None:
    fake, base_url = notify

    outcome = await sender(base_url).deliver(message(email="resident@example.org"))

    assert outcome == "sent"
    assert fake.requests == [
        {
            "answered": 201,
            "path": "/v2/notifications/email",
            "email_address": "resident@example.org",
            "template_id": "email-template",
            "reference": "req-1",
            "personalisation": {
                "survey_link": "https://feedback.example.gov.uk/surveys/abc",
                "service_area": "council tax",
                "closes_on": "16 March 2026",
            },
        }
    ]


async def test_a_text_message_goes_to_notify_as_sms(notify: tuple[FakeNotify, str]) -> None:
    fake, base_url = notify

    await sender(base_url, routes(mobile="+447700900123")).deliver(
        message(mobile="+44 7700 900123")
    )

    assert fake.requests[0]["path"] == "/v2/notifications/sms"
    assert fake.requests[0]["phone_number"] == "+447700900123"
    assert fake.requests[0]["template_id"] == "sms-template"


async def test_a_message_already_sent_is_not_sent_again(notify: tuple[FakeNotify, str]) -> None:
    fake, base_url = notify
    sent = routes(email="resident@example.org")

    first = await sender(base_url, sent).deliver(message(email="resident@example.org"))
    second = await sender(base_url, sent).deliver(message(email="resident@example.org"))

    assert (first, second) == ("sent", "duplicate")
    assert len(fake.requests) == 1
    assert sent.sent == {"req-1": "notify-1"}


async def test_a_message_notify_refuses_is_refused_for_good(
    notify: tuple[FakeNotify, str],
) -> None:
    fake, base_url = notify
    fake.status = 400
    sent = routes(email="resident@example.org")

    with pytest.raises(MessageRefusedError):
        await sender(base_url, sent).deliver(message(email="resident@example.org"))
    assert sent.sent == {}


@pytest.mark.parametrize("status", [429, 500])
async def test_notify_down_or_rate_limiting_leaves_the_message_for_redelivery(
    notify: tuple[FakeNotify, str], status: int
) -> None:
    fake, base_url = notify
    fake.status = status
    sent = routes(email="resident@example.org")

    with pytest.raises(NotifyUnavailableError):
        await sender(base_url, sent).deliver(message(email="resident@example.org"))
    assert sent.sent == {}


def test_the_sender_will_not_start_without_a_notify_api_key() -> None:
    settings = FeedbackSettings(feedback_token_secret=TOKEN_SECRET)

    with pytest.raises(ValueError, match="nothing is sent"):
        create_sender_app(settings)


def test_a_contact_route_needs_an_email_or_a_uk_mobile() -> None:
    with pytest.raises(ValueError, match="give an email address or a mobile number"):
        ContactRoute()
    with pytest.raises(ValueError, match="UK mobile"):
        ContactRoute(mobile="020 7946 0000")
    with pytest.raises(ValueError, match="not an email address"):
        ContactRoute(email="not-an-email")


async def test_an_email_without_an_address_is_dead_lettered_and_the_next_message_is_sent(
    notify: tuple[FakeNotify, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: such a message tripped an `assert` and blocked the topic, with no attempt cap."""
    fake, base_url = notify
    monkeypatch.setattr(asyncio, "sleep", _instant)
    no_address = message(email="resident@example.org").model_copy(
        update={"email_address": None, "reference": "req-broken"}
    )
    good = message(email="other@example.org").model_copy(update={"reference": "req-2"})
    letters: list[tuple[bytes, str, int]] = []

    async def sink(record: InboundRecord, fault: Fault, attempts: int) -> str:
        letters.append((record.value, fault.error_type, attempts))
        return fault.error_type

    current = routes(email="other@example.org")
    consumer = sender(base_url, current).notifications_consumer(
        sink, ConsumerSettings(max_attempts=3)
    )
    await consumer.consume(
        [
            InboundRecord(no_address.to_bytes(), None, SourcePosition("n", 0, 0)),
            InboundRecord(b"\x00not json", None, SourcePosition("n", 0, 1)),
            InboundRecord(good.to_bytes(), None, SourcePosition("n", 0, 2)),
        ]
    )

    assert letters == [
        (b"\x00not json", "invalid", 1),
        (no_address.to_bytes(), "processing_failed", 3),
    ]
    assert [request["reference"] for request in fake.requests] == ["req-2"]


async def _instant(delay: float) -> None:
    del delay


# -- issue 12, item 8: what Notify's errors mean ---------------------------------------


def gauge(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("feedback_notify_sender_stopped", {"reason": reason})


async def sinking(letters: list[str]) -> Any:
    async def sink(record: InboundRecord, fault: Fault, attempts: int) -> str:
        letters.append(fault.error_type)
        return fault.error_type

    return sink


@pytest.mark.parametrize(("status", "reason"), [(401, "unauthorized"), (403, "forbidden")])
async def test_a_refused_key_stops_the_sender_and_dead_letters_nothing(
    notify: tuple[FakeNotify, str], status: int, reason: str
) -> None:
    """Issue 12, item 8: "A 401 or 403 stops the sender and raises an alert without
    dead-lettering messages." Once stopped, Notify is not called again."""
    fake, base_url = notify
    fake.status = status
    registry = CollectorRegistry()
    deliveries = routes(email="resident@example.org")
    stopping = sender(base_url, deliveries, SenderMetrics(registry))
    letters: list[str] = []
    consumer = stopping.notifications_consumer(await sinking(letters), ConsumerSettings())
    batch = [
        InboundRecord(
            message(email="resident@example.org")
            .model_copy(update={"reference": f"req-{n}"})
            .to_bytes(),
            None,
            SourcePosition("n", 0, n),
        )
        for n in range(3)
    ]

    with pytest.raises(NotifyKeyRefusedError) as stopped:
        await consumer.consume(batch)
    with pytest.raises(NotifyKeyRefusedError):
        await consumer.consume(batch)  # the redelivery: put back untouched

    assert stopped.value.reason == reason
    assert is_transient(stopped.value)  # the shared consumer rewinds, never dead-letters
    assert letters == []
    assert fake.references == ["req-0"]  # one call, then no more
    assert deliveries.decisions == {}
    assert stopping.stopped == reason
    assert stopping.health_problem() is not None
    assert gauge(registry, reason) == 1
    other = "forbidden" if reason == "unauthorized" else "unauthorized"
    assert gauge(registry, other) == 0


async def test_a_restart_with_a_good_key_resumes_where_it_stopped_and_sends_each_once(
    notify: tuple[FakeNotify, str],
) -> None:
    """Issue 12, item 8: the messages delivered before the 401 are not sent again, the
    rest are sent once, after a restart (a new sender on the same records)."""
    fake, base_url = notify
    fake.statuses = [201, 401]
    deliveries = routes(email="resident@example.org")
    references = [f"req-{n}" for n in range(4)]
    batch = [
        InboundRecord(
            message(email="resident@example.org").model_copy(update={"reference": ref}).to_bytes(),
            None,
            SourcePosition("n", 0, n),
        )
        for n, ref in enumerate(references)
    ]
    letters: list[str] = []
    first = sender(base_url, deliveries).notifications_consumer(
        await sinking(letters), ConsumerSettings()
    )
    with pytest.raises(NotifyKeyRefusedError):
        await first.consume(batch)
    assert deliveries.sent == {"req-0": "notify-1"}

    restarted = sender(base_url, deliveries).notifications_consumer(
        await sinking(letters), ConsumerSettings()
    )
    await restarted.consume(batch)

    accepted = [
        request["reference"]
        for request, code in zip(fake.requests, [201, 401, 201, 201, 201], strict=True)
        if code == 201
    ]
    assert sorted(accepted) == references  # each accepted exactly once
    assert set(deliveries.sent) == set(references)
    assert letters == []


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_rate_limiting_and_server_errors_hold_the_batch_without_dead_letters(
    notify: tuple[FakeNotify, str], status: int
) -> None:
    fake, base_url = notify
    fake.status = status
    letters: list[str] = []
    deliveries = routes(email="resident@example.org")
    consumer = sender(base_url, deliveries).notifications_consumer(
        await sinking(letters), ConsumerSettings()
    )
    record = InboundRecord(
        message(email="resident@example.org").to_bytes(), None, SourcePosition("n", 0, 0)
    )

    with pytest.raises(NotifyUnavailableError) as unavailable:
        await consumer.consume([record])

    assert is_transient(unavailable.value)
    assert letters == []
    assert deliveries.decisions == {}
    assert len(fake.requests) == 1  # no retry inside: the consumer's backoff waits


@pytest.mark.parametrize("status", [400, 404])
async def test_other_client_errors_dead_letter_that_message_only(
    notify: tuple[FakeNotify, str], status: int
) -> None:
    fake, base_url = notify
    fake.statuses = [status]
    letters: list[str] = []
    deliveries = routes(email="resident@example.org")
    consumer = sender(base_url, deliveries).notifications_consumer(
        await sinking(letters), ConsumerSettings()
    )
    bad, good = (
        message(email="resident@example.org").model_copy(update={"reference": ref})
        for ref in ("req-bad", "req-good")
    )

    await consumer.consume(
        [
            InboundRecord(bad.to_bytes(), None, SourcePosition("n", 0, 0)),
            InboundRecord(good.to_bytes(), None, SourcePosition("n", 0, 1)),
        ]
    )

    assert letters == ["refused"]
    assert list(deliveries.sent) == ["req-good"]


async def test_notify_unreachable_is_an_outage_not_a_refusal() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    deliveries = routes(email="resident@example.org")

    with pytest.raises(NotifyUnavailableError):
        await sender(f"http://127.0.0.1:{port}", deliveries).deliver(
            message(email="resident@example.org")
        )
    assert deliveries.decisions == {}


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def answer(value: str | None) -> Response:
        response = Response()
        if value is not None:
            response.headers["Retry-After"] = value
        return response

    assert retry_after_seconds(answer("7"), now) == 7.0
    assert retry_after_seconds(answer("Tue, 01 Dec 2026 12:00:30 GMT"), now) == 30.0
    assert retry_after_seconds(answer("Tue, 01 Dec 2026 11:00:00 GMT"), now) == 0.0
    assert retry_after_seconds(answer("soon"), now) is None
    assert retry_after_seconds(answer(None), now) is None
    assert retry_after_seconds(None, now) is None


def test_the_sender_backoff_has_jitter_and_honours_retry_after() -> None:
    draws = iter([0.0, 0.5, 1.0, 0.5, 0.5, 0.5])
    backoff = OutageBackoff(initial_seconds=1, maximum_seconds=8, jitter=lambda: next(draws))

    delays = [backoff.next_delay() for _ in range(4)]
    asked = backoff.next_delay(at_least=20.0)
    capped = backoff.next_delay(at_least=10_000.0)

    assert delays == [0.5, 1.5, 4.0, 6.0]  # in the upper half of 1, 2, 4, 8
    assert asked == 20.0
    assert capped == MAX_RETRY_AFTER_SECONDS


async def test_a_429_waits_notifys_retry_after_before_the_batch_is_redelivered(
    notify: tuple[FakeNotify, str],
) -> None:
    """The wait is the shared consumer's outage backoff (injected sleep), at least
    Notify's Retry-After; the message is then sent once and nothing is dead-lettered."""
    fake, base_url = notify
    fake.statuses = [429]
    fake.headers = {"Retry-After": "7"}
    deliveries = routes(email="resident@example.org")
    the_sender = sender(base_url, deliveries)
    settings = ConsumerSettings(outage_backoff_seconds=0.5, outage_backoff_max_seconds=30)
    broker = make_broker("localhost:9092", client_id="sender-test")
    letters: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    subscribe_records(
        broker,
        {NOTIFICATIONS: the_sender.notifications_consumer(await sinking(letters), settings)},
        group_id="g",
        settings=settings,
        title="t",
        jitter=lambda: 0.5,
        sleep=sleep,
    )
    value = message(email="resident@example.org").to_bytes()
    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(NotifyUnavailableError):
            await test_broker.publish(value, NOTIFICATIONS.name, key=b"req-1")
        await test_broker.publish(value, NOTIFICATIONS.name, key=b"req-1")

    assert slept == [7.0]
    assert fake.references == ["req-1", "req-1"]  # refused once, accepted once
    assert deliveries.sent == {"req-1": "notify-2"}
    assert letters == []


# -- issue 12, item 7: the route is read again at send time ----------------------------


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (RouteState(), "erased"),
        (RouteState(email="resident@example.org", opted_out=True), "opted_out"),
        (
            RouteState(
                email="resident@example.org",
                mobile="+447700900123",
                email_bad=True,
                mobile_bad=True,
            ),
            "route_bad",
        ),
    ],
    ids=["erased", "opted_out", "route_bad"],
)
async def test_a_customer_erased_or_opted_out_since_the_message_was_queued_gets_nothing(
    notify: tuple[FakeNotify, str], state: RouteState, reason: str
) -> None:
    """Issue 12, item 7: "The sender checks the route again just before delivery"."""
    fake, base_url = notify
    registry = CollectorRegistry()
    deliveries = MemoryDeliveries(routes={"CUST-1": state})

    outcome = await sender(base_url, deliveries, SenderMetrics(registry)).deliver(
        message(email="resident@example.org")
    )

    assert outcome == "suppressed"
    assert fake.requests == []
    assert deliveries.decisions["req-1"].suppressed_reason == reason
    assert (
        registry.get_sample_value("feedback_notifications_suppressed_total", {"reason": reason})
        == 1
    )


async def test_the_current_address_is_used_not_the_one_on_the_topic(
    notify: tuple[FakeNotify, str],
) -> None:
    fake, base_url = notify
    deliveries = routes(email="new-address@example.org")

    await sender(base_url, deliveries).deliver(message(email="old-address@example.org"))

    assert [r["email_address"] for r in fake.requests] == ["new-address@example.org"]


async def test_an_email_marked_bad_falls_back_to_the_mobile_with_the_sms_template(
    notify: tuple[FakeNotify, str],
) -> None:
    fake, base_url = notify
    deliveries = MemoryDeliveries(
        routes={
            "CUST-1": RouteState(
                email="resident@example.org", mobile="+447700900123", email_bad=True
            )
        }
    )

    await sender(base_url, deliveries).deliver(message(email="resident@example.org"))

    [request] = fake.requests
    assert (request["path"], request["phone_number"], request["template_id"]) == (
        "/v2/notifications/sms",
        "+447700900123",
        "sms-template",
    )
    assert deliveries.decisions["req-1"].notification_type == "sms"
