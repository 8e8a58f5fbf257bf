"""Building case actions for the complaints service's tests."""

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from services.complaints.actions import ACTION_ADAPTER, Action
from shared.events.contacts import ContactReceived, ContactReceivedPayload
from shared.events.vocabulary import Channel, ContactKind
from shared.topics import TopicSpec

LONDON = ZoneInfo("Europe/London")
SOURCE = "case-manager"


def london_at(day: date, hour: int = 10) -> datetime:
    """`hour` o'clock in London on `day`, in UTC."""
    return datetime.combine(day, time(hour), tzinfo=LONDON).astimezone(UTC)


def action(
    kind: str, complaint_id: str, action_id: str, occurred_at: datetime, **fields: Any
) -> Action:
    return ACTION_ADAPTER.validate_python(
        action_record(kind, complaint_id, action_id, occurred_at, **fields)
    )


def action_record(
    kind: str, complaint_id: str, action_id: str, occurred_at: datetime, **fields: Any
) -> dict[str, Any]:
    """An action as case-management systems send it (JSON-ready)."""
    defaults: dict[str, Any] = {
        "open": {"service_area": "waste", "channel": "web", "customer_ref": "CUST-1"},
        "respond": {"outcome": "upheld", "responder": "officer-1"},
        "extend": {"reason": "waiting for a contractor's report"},
    }.get(kind, {})
    return {
        "action": kind,
        "action_id": action_id,
        "complaint_id": complaint_id,
        "source": SOURCE,
        "occurred_at": occurred_at.isoformat(),
        **defaults,
        **{k: v.isoformat() if isinstance(v, date) else v for k, v in fields.items()},
    }


def days_later(instant: datetime, days: int) -> datetime:
    return instant + timedelta(days=days)


async def produce(bootstrap: str, topic: TopicSpec, records: Sequence[tuple[str, bytes]]) -> None:
    """Produce keyed records with a plain aiokafka producer and wait for all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic.name, value, key=key.encode()) for key, value in records]
        for future in sent:
            await future
    finally:
        await producer.stop()


def complaint_contact(
    contact_id: str, occurred_at: datetime, service_area: str = "waste"
) -> ContactReceived:
    return ContactReceived(
        contact_id=contact_id,
        occurred_at=occurred_at,
        source="crm",
        payload=ContactReceivedPayload(
            channel=Channel.PHONE,
            service_area=service_area,
            kind=ContactKind.COMPLAINT,
            customer_ref="CUST-000123",
        ),
    )


def action_bytes(*args: Any, **fields: Any) -> bytes:
    return json.dumps(action_record(*args, **fields)).encode()
