"""The Notify sender on the real broker: each message is handed to Notify once; what Notify
cannot take is dead-lettered with the reason."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.feedback.notifications import ContactRoute, notify_message
from services.feedback.sender import create_sender_app
from services.feedback.store import FeedbackStore
from shared.dead_letters import DeadLetter
from shared.events.envelope import utc_now
from shared.postgres import create_pool
from shared.topics import NOTIFICATIONS, dead_letter_twin
from tests.support.feedback import feedback_settings
from tests.support.kafka import eventually, new_group_at_end, read_topic

pytestmark = pytest.mark.integration


class RecordingNotify:
    """Stands in for `NotificationsAPIClient`: records each call."""

    def __init__(self) -> None:
        self.emails: list[dict[str, Any]] = []

    def send_email_notification(
        self,
        email_address: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        self.emails.append({"to": email_address, "template": template_id, "reference": reference})
        return {"id": str(uuid.uuid4())}

    def send_sms_notification(
        self,
        phone_number: str,
        template_id: str,
        personalisation: dict[str, Any] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        raise AssertionError("no text messages in this test")


@pytest.fixture
async def notify(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RecordingNotify]:
    client = RecordingNotify()
    settings = feedback_settings(kafka_bootstrap, database_url, "unused").model_copy(
        update={
            "feedback_sender_group_id": await new_group_at_end(
                kafka_bootstrap, [NOTIFICATIONS.name], "test-feedback-sender"
            )
        }
    )
    app = create_sender_app(settings, client=client)
    async with app.router.lifespan_context(app):
        # The sender reads the route from feedback's table at send time (issue 12).
        pool = await create_pool(database_url)
        try:
            route = ContactRoute(email="resident@example.org")
            await FeedbackStore(pool).put_contact_route("CUST-1", route, utc_now())
        finally:
            await pool.close()
        yield client


async def test_each_message_reaches_notify_once_and_a_broken_one_is_dead_lettered(
    notify: RecordingNotify, kafka_bootstrap: str
) -> None:
    reference = f"req-{uuid.uuid4().hex[:10]}"
    message = notify_message(
        ContactRoute(email="resident@example.org"),
        request_id=reference,
        customer_ref="CUST-1",
        survey_link="https://feedback.example.gov.uk/surveys/t",
        service_area="waste",
        expires_at=utc_now(),
        email_template_id="template-1",
        sms_template_id="template-2",
    )
    broken = json.dumps({"reference": reference, "not": "a Notify message"}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in (message.to_bytes(), message.to_bytes(), broken):
            await producer.send_and_wait(NOTIFICATIONS.name, value, key=reference.encode())
    finally:
        await producer.stop()

    dead = await read_topic(
        kafka_bootstrap,
        dead_letter_twin(NOTIFICATIONS).name,
        until=lambda rs: any(r.key == reference.encode() for r in rs),
    )

    [letter] = [
        DeadLetter.from_record(r.value, r.key, r.headers)
        for r in dead
        if r.key == reference.encode()
    ]
    assert letter.original == broken
    assert letter.error_type == "invalid"
    assert "not a Notify message" in letter.reason
    # The broken message came last on the same partition: both copies were handled.
    assert await eventually(lambda: len(notify.emails) >= 1)
    assert notify.emails == [
        {"to": "resident@example.org", "template": "template-1", "reference": reference}
    ]
