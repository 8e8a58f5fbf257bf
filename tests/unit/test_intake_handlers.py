"""Intake's handlers: what is published, what is dead-lettered, and why.

Each test runs twice: on the in-memory store (`tests/support/fake_intake_store.py`)
and, marked `integration`, on PostgreSQL, so the fake cannot drift from the real store.
"""

import asyncio
import contextlib
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry

import services.intake.domain
import services.intake.handlers
import shared.dead_letters
from services.intake.domain import Accepted, Checked, Rejected, RejectionReason, Vocabulary, reject
from services.intake.handlers import (
    HttpRejection,
    HttpResult,
    IntakeHandler,
    IntakeMetrics,
    RecordStatus,
)
from services.intake.identity import event_id_for
from services.intake.store import AcceptedRecord, IdempotencyStore, KeyRecording, KeyRow
from shared.consumer import ConsumerSettings, Fault, InboundRecord
from shared.dead_letters import SHARED_ERROR_TYPES, SourcePosition
from shared.events.catalogue import parse_event
from shared.events.contacts import ContactEvent, ContactReceived
from shared.kafka import OutgoingRecord
from shared.topics import CONTACTS
from tests.support.fake_intake_store import (
    FakeIdempotencyStore,
    FakeIntakeBackend,
    IntakeBackend,
    PostgresIntakeBackend,
)
from tests.support.sleeps import record_sleeps

NOW = datetime(2026, 1, 12, 9, 31, tzinfo=UTC)
MAX_ATTEMPTS = 3
RAW_TOPIC = "civicpulse.contacts.raw"
VOCABULARY = Vocabulary(frozenset({"planning", "waste", "council_tax", "housing"}))


class InstrumentedStore(IdempotencyStore):
    """Either backend's store, with its calls recorded and failures injected on demand."""

    def __init__(self, inner: IdempotencyStore) -> None:  # no pool of its own
        self.inner = inner
        self.record_calls: list[list[AcceptedRecord]] = []
        self.failures: dict[str, Exception] = {}
        self.lookup_failure: Exception | None = None

    def fail_record_for(self, idempotency_key: str, error: Exception) -> None:
        self.failures[idempotency_key] = error

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if self.lookup_failure is not None:
            raise self.lookup_failure
        return await self.inner.fingerprints(keys)

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator[KeyRecording]:
        async with self.inner.recording() as inner:
            recording = RecordedKeys(inner)
            yield recording
            # Failures are injected where the write's would surface: once publishing is done.
            self.record_calls.append(recording.added)
            for accepted in recording.added:
                if accepted.idempotency_key in self.failures:
                    raise self.failures[accepted.idempotency_key]


class RecordedKeys(KeyRecording):
    def __init__(self, inner: KeyRecording) -> None:  # the inner recording's transaction
        self.inner = inner
        self.added: list[AcceptedRecord] = []

    def add(self, records: Sequence[KeyRow]) -> None:
        self.added += [
            AcceptedRecord(r.source, r.idempotency_key, r.event_id, r.fingerprint) for r in records
        ]
        self.inner.add(records)


@dataclass
class DeadLetterCall:
    record: InboundRecord
    rejected: Rejected
    attempts: int


@dataclass
class Harness:
    backend: IntakeBackend
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    published: list[ContactEvent] = field(default_factory=list)
    publish_calls: int = 0
    publish_failure: Exception | None = None
    dead_letters: list[DeadLetterCall] = field(default_factory=list)
    offset: int = 0

    def __post_init__(self) -> None:
        self.store = InstrumentedStore(self.backend.store)
        self.metrics = IntakeMetrics(self.registry)
        self.handler = IntakeHandler(
            store=self.store,
            dispatch_records=self.dispatch_records,
            vocabulary=VOCABULARY,
            metrics=self.metrics,
            clock=lambda: NOW,
        )
        self.consumer = self.handler.raw_topic_consumer(
            self.dead_letter, ConsumerSettings(max_attempts=MAX_ATTEMPTS)
        )

    async def dispatch_records(self, records: Sequence[OutgoingRecord]) -> Awaitable[None]:
        """Queued at once; the broker has them once the awaitable returned ends."""
        return self.publish_records(records)

    async def publish_records(self, records: Sequence[OutgoingRecord]) -> None:
        self.publish_calls += 1
        if self.publish_failure is not None:
            raise self.publish_failure
        # Read back from the bytes that would go to Kafka, as a consumer would.
        for record in records:
            assert record.topic == CONTACTS.name
            event = parse_event(record.value)
            assert isinstance(event, ContactEvent)
            assert record.key == event.key.encode()
            self.published.append(event)

    async def dead_letter(self, record: InboundRecord, fault: Fault, attempts: int) -> str:
        # The shared consumer's own faults (processing_failed, ...) read as intake's.
        rejected = (
            fault
            if isinstance(fault, Rejected)
            else reject(RejectionReason(fault.error_type), "", fault.describe())
        )
        self.dead_letters.append(DeadLetterCall(record, rejected, attempts))
        return fault.error_type

    def inbound(self, value: bytes | dict[str, Any]) -> InboundRecord:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        self.offset += 1
        return InboundRecord(raw, b"contact-0042", SourcePosition(RAW_TOPIC, 0, self.offset))

    async def consume(self, *values: bytes | dict[str, Any]) -> list[InboundRecord]:
        records = [self.inbound(value) for value in values]
        await self.consumer.consume(records)
        return records

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def duplicates(self, via: str) -> float:
        return self.sample("intake_records_duplicate_total", via=via)

    def dead_lettered(self, reason: RejectionReason) -> float:
        return self.sample("intake_records_dead_lettered_total", reason=reason.value)

    def published_keys(self) -> list[str]:
        return [event.contact_id for event in self.published]

    async def stored_keys(self) -> set[tuple[str, str]]:
        """The (source, idempotency key) pairs the backend now holds."""
        return await self.backend.stored_keys()


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> IntakeBackend:
    """Every test here runs against the fake store and against PostgreSQL."""
    if request.param == "fake":
        return FakeIntakeBackend()
    return PostgresIntakeBackend(request.getfixturevalue("store_pool"))


@pytest.fixture
async def harness(backend: IntakeBackend) -> Harness:
    await backend.reset()
    return Harness(backend)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip `with_attempts`' sleeps between attempts; returns the delays it asked for."""
    return record_sleeps(monkeypatch, shared.dead_letters)


def contact(key: str, **changes: Any) -> dict[str, Any]:
    """A valid raw `contact_received` record; `key` is its idempotency key and contact id."""
    document: dict[str, Any] = {
        "record_type": "contact_received",
        "idempotency_key": key,
        "source": "crm",
        "contact_id": key,
        "occurred_at": "2026-01-12T09:30:00+00:00",
        "channel": "phone",
        "service_area": "planning",
        "kind": "enquiry",
        "customer_ref": "CUST-000123",
        "wait_seconds": 12.0,
    }
    document.update(changes)
    return document


def without_source(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "source"}


# -- raw topic ----------------------------------------------------------------------------


async def test_a_mixed_batch_publishes_only_the_good_records_in_order(harness: Harness) -> None:
    records = await harness.consume(
        contact("good-1"),
        b"{this is not json",
        contact("bad-vocabulary", service_area="parking"),
        contact("good-2"),
        b"[1, 2, 3]",
        contact("bad-shape", transfers=-1),
        contact("good-3"),
    )

    assert harness.published_keys() == ["good-1", "good-2", "good-3"]
    assert [(d.record, d.rejected.reason, d.attempts) for d in harness.dead_letters] == [
        (records[1], RejectionReason.INVALID_JSON, 1),
        (records[2], RejectionReason.UNKNOWN_VOCABULARY, 1),
        (records[4], RejectionReason.INVALID_JSON, 1),
        (records[5], RejectionReason.INVALID_RECORD, 1),
    ]
    assert harness.dead_letters[1].rejected.errors[0].field == "service_area"
    assert harness.dead_letters[3].rejected.errors[0].field == "transfers"
    assert await harness.stored_keys() == {("crm", "good-1"), ("crm", "good-2"), ("crm", "good-3")}


async def test_a_mixed_batch_is_counted_by_outcome(harness: Harness) -> None:
    await harness.consume(
        contact("good-1", email="jane@example.org"),
        b"\xff",
        contact("bad-vocabulary", channel="fax"),
    )

    assert harness.dead_lettered(RejectionReason.INVALID_JSON) == 1
    assert harness.dead_lettered(RejectionReason.UNKNOWN_VOCABULARY) == 1
    assert harness.dead_lettered(RejectionReason.PROCESSING_FAILED) == 0
    assert (
        harness.sample("intake_records_accepted_total", via="kafka", event_type="ContactReceived")
        == 1
    )
    assert harness.sample("intake_records_rejected_total", via="kafka", reason="invalid_json") == 1
    assert harness.sample("intake_personal_data_stripped_total", field="email") == 1


async def test_a_dead_letter_keeps_the_original_bytes_and_position(harness: Harness) -> None:
    records = await harness.consume(b"not json")

    [letter] = harness.dead_letters
    assert letter.record is records[0]
    assert letter.record.value == b"not json"
    assert letter.record.position == SourcePosition(RAW_TOPIC, 0, 1)


async def test_a_raw_record_without_a_source_is_dead_lettered(harness: Harness) -> None:
    await harness.consume(without_source(contact("no-source")))

    assert harness.published == []
    [letter] = harness.dead_letters
    assert letter.rejected.reason is RejectionReason.SOURCE_MISSING


async def test_the_published_event_is_the_canonical_event(harness: Harness) -> None:
    await harness.consume(contact("good-1", postcode="SW1A 1AA"))

    [event] = harness.published
    assert isinstance(event, ContactReceived)
    assert event.event_id == event_id_for("crm", "good-1")
    assert event.recorded_at == NOW
    assert event.payload.service_area == "planning"
    assert b"SW1A" not in event.to_bytes()
    [[stored]] = harness.store.record_calls
    assert stored == AcceptedRecord("crm", "good-1", str(event.event_id), stored.fingerprint)


async def test_a_batch_with_nothing_readable_publishes_nothing(harness: Harness) -> None:
    await harness.consume(b"", b"null")

    assert harness.publish_calls == 0
    assert harness.store.record_calls == []
    assert len(harness.dead_letters) == 2


async def test_a_record_sent_twice_in_one_batch_is_published_once(harness: Harness) -> None:
    await harness.consume(contact("twice"), contact("other"), contact("twice"))

    assert harness.published_keys() == ["twice", "other"]
    assert harness.dead_letters == []
    assert harness.duplicates("kafka") == 1


async def test_a_record_sent_twice_in_two_batches_is_published_once(harness: Harness) -> None:
    await harness.consume(contact("twice"))
    await harness.consume(contact("twice"))

    assert harness.published_keys() == ["twice"]
    assert harness.dead_letters == []
    assert harness.duplicates("kafka") == 1


async def test_a_record_sent_again_with_more_personal_data_is_still_a_duplicate(
    harness: Harness,
) -> None:
    await harness.consume(contact("twice"))
    await harness.consume(contact("twice", name="Jane Smith"))

    assert harness.published_keys() == ["twice"]
    assert harness.duplicates("kafka") == 1


async def test_one_key_from_two_sources_is_two_records(harness: Harness) -> None:
    await harness.consume(contact("shared-key"), contact("shared-key", source="telephony"))

    assert [event.source for event in harness.published] == ["crm", "telephony"]
    assert harness.duplicates("kafka") == 0


async def test_a_key_reused_with_different_content_is_dead_lettered_as_a_conflict(
    harness: Harness,
) -> None:
    await harness.consume(contact("reused"))
    records = await harness.consume(contact("reused", kind="service_request"), contact("fresh"))

    assert harness.published_keys() == ["reused", "fresh"]
    [letter] = harness.dead_letters
    assert letter.record is records[0]
    assert letter.rejected.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert letter.rejected.errors[0].field == "idempotency_key"
    assert letter.attempts == 1
    assert harness.dead_lettered(RejectionReason.IDEMPOTENCY_CONFLICT) == 1
    assert harness.duplicates("kafka") == 0


async def test_a_key_reused_with_different_content_in_one_batch_is_a_conflict(
    harness: Harness,
) -> None:
    records = await harness.consume(contact("reused"), contact("reused", kind="complaint"))

    assert harness.published_keys() == ["reused"]
    assert [(d.record, d.rejected.reason) for d in harness.dead_letters] == [
        (records[1], RejectionReason.IDEMPOTENCY_CONFLICT)
    ]
    assert harness.duplicates("kafka") == 0


async def test_a_poison_record_is_dead_lettered_after_its_attempts_and_the_rest_published(
    harness: Harness, no_backoff: list[float]
) -> None:
    harness.store.fail_record_for("poison", ValueError("value too long for type"))

    records = await harness.consume(contact("good-1"), contact("poison"), contact("good-2"))

    assert {"good-1", "good-2"} <= set(harness.published_keys())
    assert await harness.stored_keys() == {("crm", "good-1"), ("crm", "good-2")}
    [letter] = harness.dead_letters
    assert letter.record is records[1]
    assert letter.rejected.reason is RejectionReason.PROCESSING_FAILED
    assert letter.attempts == MAX_ATTEMPTS
    assert "ValueError: value too long for type" in letter.rejected.describe()
    poison_alone = [
        call
        for call in harness.store.record_calls
        if [r.idempotency_key for r in call] == ["poison"]
    ]
    assert len(poison_alone) == MAX_ATTEMPTS
    assert len(no_backoff) == MAX_ATTEMPTS - 1
    assert harness.dead_lettered(RejectionReason.PROCESSING_FAILED) == 1
    assert (
        harness.sample("intake_records_accepted_total", via="kafka", event_type="ContactReceived")
        == 2
    )


async def test_a_poison_record_does_not_stop_the_next_batch(
    harness: Harness, no_backoff: list[float]
) -> None:
    harness.store.fail_record_for("poison", ValueError("boom"))
    await harness.consume(contact("poison"))

    await harness.consume(contact("next"))

    assert "next" in harness.published_keys()
    assert [d.rejected.reason for d in harness.dead_letters] == [RejectionReason.PROCESSING_FAILED]


async def test_a_conflict_in_a_batch_that_falls_back_record_by_record_is_dead_lettered_once(
    harness: Harness, no_backoff: list[float]
) -> None:
    await harness.consume(contact("reused"))
    harness.store.fail_record_for("poison", ValueError("boom"))

    records = await harness.consume(contact("reused", kind="complaint"), contact("poison"))

    assert [(d.record, d.rejected.reason) for d in harness.dead_letters] == [
        (records[0], RejectionReason.IDEMPOTENCY_CONFLICT),
        (records[1], RejectionReason.PROCESSING_FAILED),
    ]
    assert harness.dead_lettered(RejectionReason.IDEMPOTENCY_CONFLICT) == 1


async def test_a_duplicate_in_a_batch_that_falls_back_record_by_record_is_counted_once(
    harness: Harness, no_backoff: list[float]
) -> None:
    await harness.consume(contact("known"))
    harness.store.fail_record_for("poison", ValueError("boom"))

    await harness.consume(contact("known"), contact("poison"))

    assert harness.published_keys().count("known") == 1
    assert harness.duplicates("kafka") == 1


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError("PostgreSQL is down"), KafkaConnectionError(), TimeoutError()],
    ids=lambda error: type(error).__name__,
)
async def test_a_transient_store_error_propagates_so_the_batch_is_redelivered(
    harness: Harness, no_backoff: list[float], error: Exception
) -> None:
    harness.store.fail_record_for("good-2", error)

    with pytest.raises(type(error)):
        await harness.consume(contact("good-1"), contact("good-2"), b"not json")

    assert [d.rejected.reason for d in harness.dead_letters] == [RejectionReason.INVALID_JSON]
    assert await harness.stored_keys() == set()
    assert no_backoff == []


async def test_a_transient_lookup_error_propagates_and_nothing_is_published(
    harness: Harness,
) -> None:
    harness.store.lookup_failure = ConnectionRefusedError("PostgreSQL is down")

    with pytest.raises(ConnectionRefusedError):
        await harness.consume(contact("good-1"))

    assert harness.published == []
    assert harness.dead_letters == []


async def test_a_kafka_outage_while_publishing_propagates_and_nothing_is_dead_lettered(
    harness: Harness,
) -> None:
    harness.publish_failure = KafkaConnectionError()

    with pytest.raises(KafkaConnectionError):
        await harness.consume(contact("good-1"), contact("good-2"))

    assert harness.dead_letters == []
    assert harness.store.record_calls == []


async def test_keys_are_stored_only_once_the_broker_has_the_events(harness: Harness) -> None:
    """Order of effects (services/intake/handlers.py): publish and wait for the broker,
    then store the keys. The store writes while publishing, but nothing is stored
    until publishing has returned."""
    stored_while_publishing: list[set[tuple[str, str]]] = []
    publish = harness.publish_records

    async def publish_and_look(records: Sequence[OutgoingRecord]) -> None:
        await asyncio.sleep(0.05)  # the store's write, if any, is under way meanwhile
        stored_while_publishing.append(await harness.stored_keys())
        await publish(records)

    async def dispatch(records: Sequence[OutgoingRecord]) -> Awaitable[None]:
        return publish_and_look(records)

    harness.handler._dispatch_records = dispatch

    await harness.consume(contact("good-1"), contact("good-2"))

    assert stored_while_publishing == [set()]
    assert await harness.stored_keys() == {("crm", "good-1"), ("crm", "good-2")}
    assert harness.published_keys() == ["good-1", "good-2"]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of two records, so that a short batch is built and sent in several."""
    monkeypatch.setattr(services.intake.handlers, "CHUNK_RECORDS", 2)
    return 2


async def test_later_chunks_go_out_while_the_first_is_unacknowledged_and_keys_wait_for_all(
    harness: Harness, small_chunks: int
) -> None:
    """Order of effects with chunks (services/intake/handlers.py): every chunk is queued in
    the batch's order, and the keys are stored only once the broker has acknowledged
    every chunk, the first one included, however late its acknowledgement comes."""
    first_acknowledged, last_acknowledged = asyncio.Event(), asyncio.Event()
    dispatched: list[list[str]] = []

    async def dispatch(records: Sequence[OutgoingRecord]) -> Awaitable[None]:
        dispatched.append([parse_event(record.value).key for record in records])
        chunk = len(dispatched)

        async def acknowledged() -> None:
            if chunk == 1:
                await first_acknowledged.wait()
            await harness.publish_records(records)
            if chunk == 3:
                last_acknowledged.set()

        return acknowledged()

    harness.handler._dispatch_records = dispatch
    consuming = asyncio.ensure_future(harness.consume(*(contact(f"k{n}") for n in range(1, 6))))
    # The later chunks go out and are acknowledged while the first waits.
    await asyncio.wait_for(last_acknowledged.wait(), timeout=10)
    for _ in range(100):  # room for a handler that did not wait for the first to end its write
        await asyncio.sleep(0)

    assert dispatched == [["k1", "k2"], ["k3", "k4"], ["k5"]]
    assert harness.store.record_calls == []
    assert await harness.stored_keys() == set()
    first_acknowledged.set()
    await consuming
    assert await harness.stored_keys() == {("crm", f"k{n}") for n in range(1, 6)}
    assert sorted(harness.published_keys()) == ["k1", "k2", "k3", "k4", "k5"]


async def test_a_record_repeated_in_a_later_chunk_is_one_event_and_a_changed_one_a_conflict(
    harness: Harness, small_chunks: int
) -> None:
    records = await harness.consume(
        contact("a"), contact("b"), contact("a"), contact("c"), contact("a", kind="complaint")
    )

    assert harness.published_keys() == ["a", "b", "c"]
    assert [(d.record, d.rejected.reason) for d in harness.dead_letters] == [
        (records[4], RejectionReason.IDEMPOTENCY_CONFLICT)
    ]
    assert harness.duplicates("kafka") == 1
    assert await harness.stored_keys() == {("crm", "a"), ("crm", "b"), ("crm", "c")}


async def test_an_early_chunk_the_broker_refuses_stores_no_key_of_any_chunk(
    harness: Harness, small_chunks: int
) -> None:
    async def dispatch(records: Sequence[OutgoingRecord]) -> Awaitable[None]:
        first = parse_event(records[0].value).key == "k1"

        async def acknowledged() -> None:
            if first:
                await asyncio.sleep(0.02)  # refused after the later chunks were acknowledged
                raise KafkaConnectionError()
            await harness.publish_records(records)

        return acknowledged()

    publish = harness.handler._dispatch_records
    harness.handler._dispatch_records = dispatch
    with pytest.raises(KafkaConnectionError):
        await harness.consume(*(contact(f"k{n}") for n in range(1, 6)))

    assert await harness.stored_keys() == set()
    assert harness.dead_letters == []
    harness.handler._dispatch_records = publish
    await harness.consume(*(contact(f"k{n}") for n in range(1, 6)))  # the redelivery
    assert await harness.stored_keys() == {("crm", f"k{n}") for n in range(1, 6)}


async def test_a_record_whose_event_cannot_be_built_is_dead_lettered_and_the_rest_published(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event is built in the handler now, not the decoder: a record it fails on is
    still `undecodable`, as it was when the decoder built it, and alone."""
    build = services.intake.domain.accept

    def accept(checked: Checked) -> Accepted:
        if checked.idempotency_key == "unbuildable":
            raise OverflowError("date value out of range")
        return build(checked)

    monkeypatch.setattr(services.intake.handlers, "accept", accept)

    records = await harness.consume(contact("good-1"), contact("unbuildable"), contact("good-2"))

    assert harness.published_keys() == ["good-1", "good-2"]
    [letter] = harness.dead_letters
    assert letter.record is records[1]
    assert letter.rejected.reason is RejectionReason.UNDECODABLE
    assert "OverflowError: date value out of range" in letter.rejected.describe()
    assert harness.dead_lettered(RejectionReason.UNDECODABLE) == 1
    assert await harness.stored_keys() == {("crm", "good-1"), ("crm", "good-2")}


async def test_a_redelivered_batch_after_an_outage_is_published_once(harness: Harness) -> None:
    harness.publish_failure = KafkaConnectionError()
    with pytest.raises(KafkaConnectionError):
        await harness.consume(contact("good-1"))
    harness.publish_failure = None

    await harness.consume(contact("good-1"))
    await harness.consume(contact("good-1"))

    assert harness.published_keys() == ["good-1"]
    assert harness.duplicates("kafka") == 1


# -- HTTP ---------------------------------------------------------------------------------


async def test_an_http_batch_with_one_bad_record_publishes_nothing(harness: Harness) -> None:
    documents: list[Any] = [
        without_source(contact("good-1")),
        without_source(contact("bad", occurred_at="2026-01-12T09:30:00")),
        without_source(contact("good-2")),
        "not an object",
    ]

    outcome = await harness.handler.handle_http_batch(documents, "crm")

    assert all(isinstance(item, HttpRejection) for item in outcome)
    rejections = [item for item in outcome if isinstance(item, HttpRejection)]
    assert [(r.index, r.rejected.reason) for r in rejections] == [
        (1, RejectionReason.INVALID_RECORD),
        (3, RejectionReason.INVALID_JSON),
    ]
    assert rejections[0].rejected.errors[0].field == "occurred_at"
    assert harness.published == []
    assert harness.store.record_calls == []
    assert harness.sample("intake_records_rejected_total", via="http", reason="invalid_record") == 1


async def test_an_http_record_naming_another_source_is_rejected(harness: Harness) -> None:
    outcome = await harness.handler.handle_http_batch([contact("k", source="telephony")], "crm")

    assert len(outcome) == 1
    [rejection] = outcome
    assert isinstance(rejection, HttpRejection)
    assert rejection.rejected.reason is RejectionReason.SOURCE_MISMATCH
    assert rejection.rejected.errors[0].field == "source"
    assert harness.published == []


async def test_a_good_http_batch_is_published_and_reported_as_accepted(harness: Harness) -> None:
    outcome = await harness.handler.handle_http_batch(
        [without_source(contact("a")), without_source(contact("b"))], "crm"
    )

    assert outcome == [
        HttpResult(0, "a", str(event_id_for("crm", "a")), RecordStatus.ACCEPTED),
        HttpResult(1, "b", str(event_id_for("crm", "b")), RecordStatus.ACCEPTED),
    ]
    assert harness.published_keys() == ["a", "b"]
    assert [event.source for event in harness.published] == ["crm", "crm"]
    assert (
        harness.sample("intake_records_accepted_total", via="http", event_type="ContactReceived")
        == 2
    )


async def test_an_http_batch_sent_again_is_reported_as_duplicates(harness: Harness) -> None:
    documents = [without_source(contact("a")), without_source(contact("b"))]
    first = await harness.handler.handle_http_batch(documents, "crm")

    again = await harness.handler.handle_http_batch(
        [*documents, without_source(contact("c"))], "crm"
    )

    assert again == [
        HttpResult(0, "a", str(event_id_for("crm", "a")), RecordStatus.DUPLICATE),
        HttpResult(1, "b", str(event_id_for("crm", "b")), RecordStatus.DUPLICATE),
        HttpResult(2, "c", str(event_id_for("crm", "c")), RecordStatus.ACCEPTED),
    ]
    assert [r.event_id for r in again[:2] if isinstance(r, HttpResult)] == [
        r.event_id for r in first if isinstance(r, HttpResult)
    ]
    assert harness.published_keys() == ["a", "b", "c"]
    assert harness.duplicates("http") == 2


async def test_an_http_record_repeated_in_one_batch_is_a_duplicate(harness: Harness) -> None:
    document = without_source(contact("a"))

    outcome = await harness.handler.handle_http_batch([document, document], "crm")

    assert [r.status for r in outcome if isinstance(r, HttpResult)] == [
        RecordStatus.ACCEPTED,
        RecordStatus.DUPLICATE,
    ]
    assert harness.published_keys() == ["a"]
    assert harness.duplicates("http") == 1


async def test_an_http_key_reused_with_different_content_is_a_conflict(harness: Harness) -> None:
    await harness.handler.handle_http_batch([without_source(contact("a"))], "crm")

    outcome = await harness.handler.handle_http_batch(
        [without_source(contact("b")), without_source(contact("a", transfers=4))], "crm"
    )

    assert len(outcome) == 1
    [rejection] = outcome
    assert isinstance(rejection, HttpRejection)
    assert rejection.index == 1
    assert rejection.rejected.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert rejection.rejected.errors[0].field == "idempotency_key"
    assert harness.published_keys() == ["a"]
    assert (
        harness.sample("intake_records_rejected_total", via="http", reason="idempotency_conflict")
        == 1
    )


async def test_an_http_key_reused_with_different_content_in_one_batch_is_a_conflict(
    harness: Harness,
) -> None:
    outcome = await harness.handler.handle_http_batch(
        [without_source(contact("a")), without_source(contact("a", transfers=4))], "crm"
    )

    assert [(r.index, type(r)) for r in outcome] == [(1, HttpRejection)]
    assert harness.published == []


async def test_the_same_key_over_http_and_the_raw_topic_is_one_record(harness: Harness) -> None:
    await harness.consume(contact("a"))

    outcome = await harness.handler.handle_http_batch([without_source(contact("a"))], "crm")

    assert [r.status for r in outcome if isinstance(r, HttpResult)] == [RecordStatus.DUPLICATE]
    assert harness.published_keys() == ["a"]


async def test_a_transient_error_in_an_http_batch_propagates(harness: Harness) -> None:
    harness.publish_failure = KafkaConnectionError()

    with pytest.raises(KafkaConnectionError):
        await harness.handler.handle_http_batch([without_source(contact("a"))], "crm")

    assert await harness.stored_keys() == set()


# Keep the fake honest: it must offer exactly the store's async interface.
@pytest.mark.parametrize("double", [FakeIdempotencyStore, InstrumentedStore])
def test_the_fake_store_overrides_every_public_store_method(double: type) -> None:
    public = {name for name in vars(IdempotencyStore) if not name.startswith("_")}

    assert public == {"fingerprints", "recording"}
    assert public <= set(vars(double))
    assert inspect.iscoroutinefunction(vars(double)["fingerprints"])
    assert inspect.isasyncgenfunction(vars(double)["recording"].__wrapped__)  # a context manager


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (b'{"wait_seconds": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b"\x00\x00", "invalid_json"),
        (b'{"record_type": "\xff"}', "invalid_json"),
        (
            json.dumps(contact("overflow", occurred_at="9999-12-31T23:59:59-01:00")).encode(),
            None,  # refused by intake's rules or, failing that, by the shared consumer
        ),
    ],
    ids=["deep-json", "5000-digit-int", "nul-bytes", "not-utf-8", "overflowing-date"],
)
async def test_issue_9_poison_records_are_dead_lettered_and_the_next_record_published(
    harness: Harness, value: bytes, reason: str | None
) -> None:
    """Issue 9: each of these once crashed the raw consumer outside any handler."""
    records = await harness.consume(value, contact("after"))

    [letter] = harness.dead_letters
    assert letter.record is records[0]
    assert letter.rejected.describe()
    if reason is not None:
        assert letter.rejected.reason == reason
    assert harness.published_keys() == ["after"]


def test_intake_counts_every_error_type_the_shared_consumer_gives() -> None:
    assert set(SHARED_ERROR_TYPES) <= set(RejectionReason)


@pytest.mark.parametrize(
    "keys",
    [
        ["one", "two", "three"],
        ["line\nbreak", "plain"],  # cannot go as lines: sent as an array
        [""],  # one empty text would split into no lines at all
        ["", "after"],
        ["before", ""],
        ["\n", "\n\n"],
    ],
)
async def test_the_store_keeps_and_finds_every_key_whatever_its_text(
    backend: IntakeBackend, keys: list[str]
) -> None:
    """The store sends a column as one text of lines when it can (`store._lines`): keys
    no raw record could carry are still stored and found exactly, never split or lost."""
    await backend.reset()
    records = [
        AcceptedRecord("crm", key, str(uuid.uuid5(uuid.NAMESPACE_URL, key)), f"fp-{n}")
        for n, key in enumerate(keys)
    ]
    async with backend.store.recording() as recording:
        recording.add(records)

    found = await backend.store.fingerprints([("crm", key) for key in [*keys, "absent"]])

    assert found == {("crm", key): f"fp-{n}" for n, key in enumerate(keys)}
    assert await backend.stored_keys() == {("crm", key) for key in keys}
