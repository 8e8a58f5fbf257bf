"""The sender hands messages to GOV.UK Notify with the official client, once each."""

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.feedback.notifications import ContactRoute, NotifyMessage, notify_message
from services.feedback.sender import (
    MessageRefusedError,
    NotifySender,
    NotifyUnavailableError,
    SenderMetrics,
    create_sender_app,
    official_client,
)
from services.feedback.settings import FeedbackSettings
from shared.consumer import ConsumerSettings, Fault, InboundRecord
from shared.dead_letters import SourcePosition
from tests.support.feedback import TOKEN_SECRET

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
# Notify keys are `<name>-<service id>-<secret>`; this one opens nothing.
API_KEY = f"test-{SERVICE_ID}-3d844edf-8d35-48ac-975b-e847b4f122b0"


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


class MemorySentLog:
    def __init__(self) -> None:
        self.sent: dict[str, str | None] = {}

    async def already_sent(self, reference: str) -> bool:
        return reference in self.sent

    async def record(self, reference: str, notification_id: str | None) -> None:
        self.sent[reference] = notification_id


class FakeNotify:
    """Stands in for GOV.UK Notify: records calls, or answers with a status."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        self.status = 201

    def record(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"path": path, **body})
        if self.status >= 400:
            return self.status, {"errors": [{"message": "refused"}], "status_code": self.status}
        return self.status, {"id": f"notify-{len(self.requests)}", "reference": body["reference"]}


@pytest.fixture
def notify() -> Iterator[tuple[FakeNotify, str]]:
    """A stub Notify API on a loopback port, so the real client is what is tested."""
    fake = FakeNotify()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Authorization"].startswith("Bearer ")
            status, answer = fake.record(self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sender(base_url: str, sent: MemorySentLog | None = None) -> NotifySender:
    client = official_client(API_KEY, base_url)
    return NotifySender(client, sent or MemorySentLog(), SenderMetrics(CollectorRegistry()))


async def test_an_email_goes_to_notify_with_template_personalisation_and_reference(
    notify: tuple[FakeNotify, str],
) -> None:
    fake, base_url = notify

    outcome = await sender(base_url).deliver(message(email="resident@example.org"))

    assert outcome == "sent"
    assert fake.requests == [
        {
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

    await sender(base_url).deliver(message(mobile="+44 7700 900123"))

    assert fake.requests[0]["path"] == "/v2/notifications/sms"
    assert fake.requests[0]["phone_number"] == "+447700900123"
    assert fake.requests[0]["template_id"] == "sms-template"


async def test_a_message_already_sent_is_not_sent_again(notify: tuple[FakeNotify, str]) -> None:
    fake, base_url = notify
    sent = MemorySentLog()

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
    sent = MemorySentLog()

    with pytest.raises(MessageRefusedError):
        await sender(base_url, sent).deliver(message(email="resident@example.org"))
    assert sent.sent == {}


@pytest.mark.parametrize("status", [429, 500])
async def test_notify_down_or_rate_limiting_leaves_the_message_for_redelivery(
    notify: tuple[FakeNotify, str], status: int
) -> None:
    fake, base_url = notify
    fake.status = status
    sent = MemorySentLog()

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

    consumer = sender(base_url).notifications_consumer(sink, ConsumerSettings(max_attempts=3))
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
