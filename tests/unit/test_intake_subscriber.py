"""Intake's Kafka wiring, in memory (faststream's TestKafkaBroker): bytes in, topics out."""

import functools
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry

from services.intake.app import subscribe_raw_topic
from services.intake.domain import Vocabulary
from services.intake.handlers import IntakeHandler, IntakeMetrics
from services.intake.settings import IntakeSettings
from shared.events import ContactReceived, parse_event
from shared.kafka import dispatch_records, make_broker
from shared.topics import CONTACTS, CONTACTS_RAW, CONTACTS_RAW_DEAD_LETTER
from tests.support.fake_intake_store import FakeIdempotencyStore

RECORD: dict[str, Any] = {
    "record_type": "contact_received",
    "idempotency_key": "k-1",
    "source": "crm",
    "contact_id": "C-1",
    "occurred_at": "2026-01-12T09:30:00+00:00",
    "channel": "web",
    "service_area": "waste",
    "kind": "service_request",
}


async def _undecoded(_: Any) -> None:
    return None


def _single(message: KafkaMessage) -> ConsumerRecord[bytes, bytes]:
    record = message.raw_message
    assert not isinstance(record, tuple)
    return record


async def test_raw_bytes_become_a_canonical_event_and_bad_bytes_a_dead_letter() -> None:
    broker = make_broker("localhost:9092", client_id="intake-test")
    handler = IntakeHandler(
        store=FakeIdempotencyStore(),
        dispatch_records=functools.partial(dispatch_records, broker),
        vocabulary=Vocabulary(frozenset({"waste"})),
        metrics=IntakeMetrics(CollectorRegistry()),
        clock=lambda: datetime(2026, 1, 12, 10, tzinfo=UTC),
    )
    subscribe_raw_topic(broker, handler, IntakeSettings())
    canonical: list[bytes] = []
    dead_letters: list[tuple[bytes, str]] = []

    @broker.subscriber(CONTACTS.name, decoder=_undecoded)
    async def collect_canonical(_: Any, message: KafkaMessage) -> None:
        canonical.append(_single(message).value)

    @broker.subscriber(CONTACTS_RAW_DEAD_LETTER.name, decoder=_undecoded)
    async def collect_dead_letter(_: Any, message: KafkaMessage) -> None:
        record = _single(message)
        headers = dict(record.headers)
        dead_letters.append((record.value, headers["dead_letter.reason"].decode()))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(json.dumps(RECORD).encode(), CONTACTS_RAW.name, key=b"C-1")
        await test_broker.publish(b"{not json", CONTACTS_RAW.name, key=b"C-2")

    [event_bytes] = canonical
    event = parse_event(event_bytes)
    assert isinstance(event, ContactReceived)
    assert event.contact_id == "C-1"
    [(original, reason)] = dead_letters
    assert original == b"{not json"
    assert reason.startswith("invalid_json")
