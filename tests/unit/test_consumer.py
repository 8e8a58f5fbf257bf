"""The one consumer path: whatever one record does, it ends handled or dead-lettered.

Quality bar: "every record ends published, duplicate, or dead-lettered with a
reason; no consumer loops on one record". These tests drive `RecordConsumer`
with fakes; tests/integration/test_consumer_fuzz.py drives the real services.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

import shared.consumer
import shared.dead_letters
from shared.consumer import (
    ConsumerSettings,
    Fault,
    InboundRecord,
    OutageBackoff,
    RecordConsumer,
    RecordFault,
    RecordRejectedError,
    event_consumer,
    subscribe_records,
    undecoded,
)
from shared.dead_letters import DeadLetter, SourcePosition
from shared.events.contacts import ContactReceived, ContactReceivedPayload
from shared.events.envelope import Event
from shared.events.vocabulary import Channel, ContactKind
from shared.kafka import make_broker
from shared.topics import CONTACTS, MAX_MESSAGE_BYTES, dead_letter_twin
from tests.support.sleeps import record_sleeps

TOPIC = "civicpulse.test"
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
HUGE_INTEGER = b'{"n": ' + b"9" * 5000 + b"}"


@dataclass
class Sink:
    letters: list[tuple[InboundRecord, Fault, int]] = field(default_factory=list)

    async def __call__(self, record: InboundRecord, fault: Fault, attempts: int) -> str:
        self.letters.append((record, fault, attempts))
        return fault.error_type

    def by_value(self) -> dict[bytes, tuple[str, str, int]]:
        return {r.value: (f.error_type, f.describe(), n) for r, f, n in self.letters}


@dataclass
class Service:
    """Decodes JSON objects with an `id`; fails on ids it is told to, refuses `refuse`."""

    failing: dict[str, Exception] = field(default_factory=dict)
    handled: list[list[str]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    def decode(self, record: InboundRecord) -> str:
        document = json.loads(record.value)
        if not isinstance(document, dict) or "id" not in document:
            raise RecordRejectedError(RecordFault("invalid", "no id"))
        datetime.fromisoformat(document.get("at", "2026-01-01T00:00:00+00:00")).astimezone(UTC)
        return str(document["id"])

    async def handle(self, ids: Sequence[str]) -> list[Fault | None]:
        self.handled.append(list(ids))
        for item in ids:
            if item in self.failing:
                raise self.failing[item]
        self.done.update(ids)
        return [RecordFault("refused", f"{i} refused") if i == "refuse" else None for i in ids]


def records(*values: bytes) -> list[InboundRecord]:
    return [
        InboundRecord(value, b"k", SourcePosition(TOPIC, 0, offset))
        for offset, value in enumerate(values)
    ]


def doc(item: str, **fields: Any) -> bytes:
    return json.dumps({"id": item, **fields}).encode()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The consumer's pauses (attempt retries, outage backoff), skipped and written down."""
    return record_sleeps(monkeypatch, shared.consumer, shared.dead_letters)


def consumer(service: Service, sink: Sink, attempts: int = 3) -> RecordConsumer[str]:
    return RecordConsumer(
        service.decode, service.handle, sink, settings=ConsumerSettings(max_attempts=attempts)
    )


@pytest.mark.parametrize(
    ("value", "exception"),
    [
        (DEEP_JSON, "RecursionError"),
        (HUGE_INTEGER, "ValueError"),
        (doc("x", at="9999-12-31T23:59:59-01:00"), "OverflowError"),
        (b"\x00\x00", "JSONDecodeError"),
        (b'{"id": "\xff"}', "UnicodeDecodeError"),
    ],
    ids=["deep-json", "5000-digit-int", "overflowing-date", "nul-bytes", "not-utf-8"],
)
async def test_any_exception_while_decoding_makes_the_record_a_dead_letter(
    value: bytes, exception: str
) -> None:
    service, sink = Service(), Sink()

    await consumer(service, sink).consume(records(value, doc("good")))

    [(error_type, reason, attempts)] = sink.by_value().values()
    assert error_type == "undecodable"
    assert f"undecodable: {exception}" in reason
    assert len(reason) < 1000  # a 5,000-digit number is not quoted whole
    assert attempts == 1
    assert service.done == {"good"}


async def test_a_rejection_raised_by_the_decoder_keeps_its_reason() -> None:
    service, sink = Service(), Sink()

    await consumer(service, sink).consume(records(b"[1]", doc("good")))

    assert sink.by_value() == {b"[1]": ("invalid", "no id", 1)}


async def test_a_fault_returned_by_the_handler_is_dead_lettered_and_the_rest_is_done() -> None:
    service, sink = Service(), Sink()

    await consumer(service, sink).consume(records(doc("a"), doc("refuse"), doc("b")))

    assert sink.by_value() == {doc("refuse"): ("refused", "refuse refused", 1)}
    assert service.handled == [["a", "refuse", "b"]]


@pytest.mark.parametrize(
    "error",
    [AssertionError("no address"), RecursionError(), ValueError("bad"), OverflowError()],
    ids=lambda error: type(error).__name__,
)
async def test_a_record_whose_handling_fails_is_retried_alone_then_dead_lettered(
    error: Exception, no_sleep: list[float]
) -> None:
    service, sink = Service(failing={"poison": error}), Sink()

    await consumer(service, sink, attempts=3).consume(
        records(doc("a"), doc("poison"), doc("refuse"))
    )

    assert service.handled == [
        ["a", "poison", "refuse"],
        ["a"],
        ["poison"],
        ["poison"],
        ["poison"],
        ["refuse"],
    ]
    letters = sink.by_value()
    assert letters[doc("poison")][0] == "processing_failed"
    assert f"failed 3 times: {type(error).__name__}" in letters[doc("poison")][1]
    assert letters[doc("poison")][2] == 3
    assert letters[doc("refuse")] == ("refused", "refuse refused", 1)
    assert service.done == {"a", "refuse"}
    assert no_sleep == [0.2, 0.4]  # between attempts only


@pytest.mark.parametrize(
    "error",
    [KafkaConnectionError(), ConnectionRefusedError(), TimeoutError()],
    ids=lambda error: type(error).__name__,
)
async def test_an_outage_uses_no_attempts_and_dead_letters_nothing(
    error: Exception, no_sleep: list[float]
) -> None:
    service, sink = Service(failing={"b": error}), Sink()

    with pytest.raises(type(error)):
        await consumer(service, sink).consume(records(doc("a"), doc("b")))

    assert sink.letters == []
    assert service.handled == [["a", "b"]]
    assert no_sleep == []


async def test_an_outage_during_the_retry_alone_propagates_too(no_sleep: list[float]) -> None:
    service, sink = Service(failing={"a": ValueError("bad")}), Sink()
    calls = 0

    async def handle(ids: Sequence[str]) -> list[Fault | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("the batch breaks")
        raise ConnectionResetError("PostgreSQL went away")

    flaky = RecordConsumer(service.decode, handle, sink, settings=ConsumerSettings())
    with pytest.raises(ConnectionResetError):
        await flaky.consume(records(doc("a"), doc("b")))
    assert sink.letters == []


def test_the_outage_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() -> None:
    backoff = OutageBackoff(initial_seconds=0.5, maximum_seconds=4)

    delays = [backoff.next_delay() for _ in range(6)]
    backoff.reset()

    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.next_delay() == 0.5


async def test_the_subscription_counts_and_routes_dead_letters_to_the_twin_topic() -> None:
    broker = make_broker("localhost:9092", client_id="consumer-test")
    handled: list[Event] = []
    counted: list[str] = []

    async def handle(events: Sequence[Event]) -> None:
        handled.extend(events)

    settings = ConsumerSettings()
    events = event_consumer(
        broker, [CONTACTS], handle, settings=settings, on_dead_letter=counted.append
    )
    subscribe_records(
        broker, {CONTACTS: events}, group_id="g", settings=settings, title="test/events"
    )
    letters: list[DeadLetter] = []

    @broker.subscriber(dead_letter_twin(CONTACTS).name, decoder=undecoded)
    async def collect(_: Any, message: KafkaMessage) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        letters.append(DeadLetter.from_record(raw.value, raw.key, dict(raw.headers)))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(DEEP_JSON, CONTACTS.name, key=b"C-1")

    [letter] = letters
    assert letter.error_type == "invalid_event"
    assert letter.reason.startswith("not a CivicPulse event")
    assert letter.source.topic == CONTACTS.name
    assert counted == ["invalid_event"]
    assert handled == []


# -- dead letters of every size ----------------------------------------------------------

LETTER = DeadLetter(
    original=b"x" * 100,
    key=b"contact-1",
    reason="invalid_json: not valid JSON",
    error_type="invalid_json",
    source=SourcePosition("civicpulse.contacts.raw", 0, 7),
    attempts=1,
    failed_at=datetime(2026, 1, 12, 9, 31, tzinfo=UTC),
)


def _size(letter: DeadLetter) -> int:
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        letter.key, letter.original, [(k, v.encode()) for k, v in letter.headers().items()]
    )
    return size


def test_a_letter_that_fits_is_sent_whole() -> None:
    assert LETTER.cut_to_fit() is LETTER


@pytest.mark.parametrize(
    "size", [MAX_MESSAGE_BYTES - 200, MAX_MESSAGE_BYTES, 5 * MAX_MESSAGE_BYTES]
)
def test_a_letter_too_large_keeps_its_first_bytes_size_and_digest(size: int) -> None:
    original = bytes(range(256)) * (size // 256 + 1)
    original = original[:size]
    letter = replace(LETTER, original=original)

    cut = letter.cut_to_fit()

    assert cut.error_type == "too_large"
    assert cut.reason.startswith("too_large: ")
    assert "invalid_json: not valid JSON" in cut.reason
    assert cut.original_size == size
    assert cut.original_sha256 == hashlib.sha256(original).hexdigest()
    assert original.startswith(cut.original)
    assert len(cut.original) > MAX_MESSAGE_BYTES - 4096
    assert _size(cut) <= MAX_MESSAGE_BYTES - 256
    again = DeadLetter.from_record(cut.original, cut.key, cut.headers())
    assert (again.original_size, again.original_sha256) == (size, cut.original_sha256)


def test_a_huge_key_is_cut_too() -> None:
    cut = replace(LETTER, key=b"k" * 100_000).cut_to_fit()

    assert cut.key == b"k" * 1024
    assert cut.error_type == "too_large"


def test_a_reason_that_is_not_valid_unicode_still_makes_headers() -> None:
    letter = replace(LETTER, reason="bad \ud800 surrogate")

    headers = {name: value.encode() for name, value in letter.headers().items()}

    assert b"\\ud800" in headers["dead_letter.reason"]


async def test_an_outage_waits_a_doubling_backoff_before_the_batch_is_redelivered(
    no_sleep: list[float],
) -> None:
    """An outage rewinds and retries with exponential backoff, never in a tight loop."""
    broker = make_broker("localhost:9092", client_id="consumer-test")
    outage = True

    async def handle(events: Sequence[Event]) -> None:
        if outage:
            raise ConnectionRefusedError("PostgreSQL is down")

    settings = ConsumerSettings(outage_backoff_seconds=0.5, outage_backoff_max_seconds=1.5)
    events = event_consumer(broker, [CONTACTS], handle, settings=settings)
    subscribe_records(broker, {CONTACTS: events}, group_id="g", settings=settings, title="t")
    event = contact_event()

    async with TestKafkaBroker(broker) as test_broker:
        for _ in range(4):
            with pytest.raises(ConnectionRefusedError):
                await test_broker.publish(event.to_bytes(), CONTACTS.name, key=b"C-1")
        outage = False
        await test_broker.publish(event.to_bytes(), CONTACTS.name, key=b"C-1")
        outage = True
        with pytest.raises(ConnectionRefusedError):
            await test_broker.publish(event.to_bytes(), CONTACTS.name, key=b"C-1")

    assert no_sleep == [0.5, 1.0, 1.5, 1.5, 0.5]  # reset by the success


def contact_event() -> Event:
    return ContactReceived(
        contact_id="C-1",
        occurred_at=datetime(2026, 1, 12, 9, 30, tzinfo=UTC),
        source="crm",
        payload=ContactReceivedPayload(
            channel=Channel.PHONE, service_area="waste", kind=ContactKind.ENQUIRY
        ),
    )
