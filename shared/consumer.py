"""Consuming Kafka records: decode, hand to the service, dead-letter what fails.

Every Kafka consumer in CivicPulse goes through `RecordConsumer`: intake's raw topic,
complaints' case actions, the canonical-event consumers, the feedback sender. Each is a
batch subscriber with at-least-once commits (`shared.kafka.batch_consumer_options`)
whose records are read as bytes, so that a record nobody could decode still reaches
the dead-letter topic instead of blocking its partition.

A service gives two functions:
- a decoder, one record's bytes to one item, raising on bad input: a
  `RecordRejectedError` names the reason, and any other exception
  (`RecursionError` from deep JSON, `ValueError` from a 5,000-digit number,
  `OverflowError` from a date at the end of time) is `undecodable`;
- a handler, a batch of items to their effects, returning for each item
  `None` (done, or a duplicate) or a `Fault` to dead-letter (a refusal);
- optionally, `ignore`: records the service does nothing with, told apart
  without the full decode (by the `event_type` header, say). They are skipped
  before decoding; anything it cannot tell must be left to the decoder, so a bad
  record the service would have handled is still dead-lettered.

The consumer hands the whole batch to the handler first (one database
transaction for many records is what makes consumers fast). If that fails for
a reason other than an outage, it retries item by item, each up to the attempt
cap, and dead-letters only the items that still fail. Handlers are idempotent
(`shared.processed_events`, idempotency keys), so the retry is safe. An outage
of Kafka or PostgreSQL (`shared.dead_letters.is_transient`) never uses up
attempts: the batch is rewound and redelivered after a backoff that doubles up
to a cap, so a long outage is waited out, not spun on.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from pydantic_core import from_json

from shared.dead_letters import (
    PROCESSING_FAILED,
    UNDECODABLE,
    AttemptsExhaustedError,
    DependencyUnavailableError,
    SourcePosition,
    is_transient,
    send_dead_letter,
    with_attempts,
)
from shared.event_decoding import event_from
from shared.events.envelope import Event
from shared.kafka import ClientTuning, batch_consumer_options
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, dead_letter_twin

log = logging.getLogger(__name__)
T = TypeVar("T")


class InboundRecord(NamedTuple):
    """One consumed record, as bytes, with where it came from.

    A named tuple: one is built per record consumed, by every service, and a named
    tuple is built in less than half a frozen dataclass's time (bench/README.md).
    """

    value: bytes
    key: bytes | None
    position: SourcePosition
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The first header of that name, or None."""
        return next((value for key, value in self.headers if key == name), None)


class Fault(Protocol):
    """Why one record is dead-lettered: a bounded error type and a readable reason."""

    @property
    def error_type(self) -> str: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RecordFault:
    error_type: str
    reason: str

    def describe(self) -> str:
        return self.reason


class RecordRejectedError(Exception):
    """Raised by a decoder: this record is bad, for this reason; no retry will help."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.describe())
        self.fault = fault


Decode = Callable[[InboundRecord], T]
Ignore = Callable[[InboundRecord], bool]
# One entry per item, in order: None when done (or a duplicate), else the fault.
Outcomes = Sequence[Fault | None] | None
Handle = Callable[[Sequence[T]], Awaitable[Outcomes]]
# Sends a dead letter; returns the error type it was sent with (`too_large` may replace it).
DeadLetterSink = Callable[[InboundRecord, Fault, int], Awaitable[str]]
CountDeadLetter = Callable[[str], None]


async def undecoded(_: Any) -> None:
    """A faststream decoder that decodes nothing: consumers read the records' bytes."""
    return


def peek_event(record: InboundRecord) -> tuple[str, dict[str, Any]] | None:
    """A record's event type and payload, unvalidated, when its header and body agree.

    For `ignore` predicates: None whenever unsure (no header, a header the body
    contradicts, JSON that does not read as an event), so the record goes on to the
    full decoder, which reads the body: a record is never passed over for a header
    its body contradicts.
    """
    header = record.header("event_type")
    if header is None:
        return None
    try:
        body = from_json(record.value)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    event_type, payload = body.get("event_type"), body.get("payload")
    if not isinstance(event_type, str) or event_type.encode() != header:
        return None
    return (event_type, payload) if isinstance(payload, dict) else None


def inbound_records(message: KafkaMessage) -> list[InboundRecord]:
    raw = message.raw_message
    records = raw if isinstance(raw, tuple | list) else (raw,)
    return [
        InboundRecord(
            record.value or b"",
            record.key,
            SourcePosition(record.topic, record.partition, record.offset),
            tuple(record.headers or ()),
        )
        for record in records
    ]


class DeadLetterTopics:
    """The Kafka dead-letter sink: each record goes to its source topic's twin."""

    def __init__(self, broker: KafkaBroker, topics: Sequence[TopicSpec]) -> None:
        self._broker = broker
        self._twins = {topic.name: dead_letter_twin(topic) for topic in topics}

    async def __call__(self, record: InboundRecord, fault: Fault, attempts: int) -> str:
        letter = await send_dead_letter(
            self._broker,
            self._twins[record.position.topic],
            original=record.value,
            key=record.key,
            source=record.position,
            reason=fault.describe(),
            error_type=fault.error_type,
            attempts=attempts,
        )
        return letter.error_type


class RecordConsumer(Generic[T]):
    """Decodes records, hands them to `handle` batch first, dead-letters what fails."""

    def __init__(
        self,
        decode: Decode[T],
        handle: Handle[T],
        dead_letter: DeadLetterSink,
        *,
        settings: "ConsumerSettings",
        on_dead_letter: CountDeadLetter | None = None,
        ignore: Ignore | None = None,
    ) -> None:
        self._decode = decode
        self._ignore = ignore
        self._handle = handle
        self._dead_letter_sink = dead_letter
        self._max_attempts = settings.max_attempts
        self._retry_backoff_seconds = settings.retry_backoff_seconds
        self._on_dead_letter = on_dead_letter

    async def consume(self, records: Sequence[InboundRecord]) -> None:
        """Handle one batch; raises only on an outage, so the batch is redelivered."""
        decoded: list[tuple[InboundRecord, T]] = []
        for record in records:
            if self._ignore is not None and self._ignore(record):
                continue
            try:
                decoded.append((record, self._decode(record)))
            except RecordRejectedError as rejected:
                await self._dead_letter(record, rejected.fault)
            except Exception as error:  # noqa: BLE001 - decoding is pure: the record caused it
                await self._dead_letter(record, RecordFault(UNDECODABLE, _described(error)))
        if not decoded:
            return
        try:
            outcomes = await self._handle([item for _, item in decoded])
        except Exception as error:
            if is_transient(error):
                raise
            log.warning("batch failed (%r); retrying record by record", error)
            for record, item in decoded:
                await self._handle_one(record, item)
            return
        await self._report(decoded, outcomes)

    async def _handle_one(self, record: InboundRecord, item: T) -> None:
        try:
            outcomes = await with_attempts(
                lambda: self._handle([item]),
                max_attempts=self._max_attempts,
                backoff_seconds=self._retry_backoff_seconds,
            )
        except AttemptsExhaustedError as exhausted:
            fault = RecordFault(PROCESSING_FAILED, f"{PROCESSING_FAILED}: {exhausted}")
            await self._dead_letter(record, fault, exhausted.attempts)
            return
        await self._report([(record, item)], outcomes)

    async def _report(self, decoded: Sequence[tuple[InboundRecord, T]], outcomes: Outcomes) -> None:
        if outcomes is None:
            return
        for (record, _), fault in zip(decoded, outcomes, strict=True):
            if fault is not None:
                await self._dead_letter(record, fault)

    async def _dead_letter(self, record: InboundRecord, fault: Fault, attempts: int = 1) -> None:
        error_type = await self._dead_letter_sink(record, fault, attempts)
        if self._on_dead_letter is not None:
            self._on_dead_letter(error_type)


def _described(error: BaseException) -> str:
    text = str(error)
    if len(text) > 500:  # a ValueError can quote the whole 5,000-digit number
        text = text[:500] + "…"
    return f"{UNDECODABLE}: {type(error).__name__}: {text}"


# The longest Retry-After honoured: the wait happens before the batch is
# rewound, so it must stay well below the consumer's five-minute poll interval.
MAX_RETRY_AFTER_SECONDS = 240.0


class OutageBackoff:
    """Waits before an outage's batch is redelivered: doubling from `initial`, up to `maximum`.

    With `jitter` (a source of numbers in [0, 1), e.g. `random.random`) each
    wait is drawn from the upper half of its step ("equal jitter"), so replicas
    that failed together do not retry together, yet never retry at once. An
    outside service's Retry-After (`at_least`) is honoured up to
    `MAX_RETRY_AFTER_SECONDS`.
    """

    def __init__(
        self,
        *,
        initial_seconds: float,
        maximum_seconds: float,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self._initial = initial_seconds
        self._maximum = maximum_seconds
        self._jitter = jitter
        self._failures = 0

    def next_delay(self, at_least: float | None = None) -> float:
        delay = min(self._maximum, self._initial * 2.0**self._failures)
        self._failures = min(self._failures + 1, 62)
        if self._jitter is not None:
            delay = delay / 2 + delay / 2 * self._jitter()
        if at_least is not None:
            delay = max(delay, min(at_least, MAX_RETRY_AFTER_SECONDS))
        return delay

    def reset(self) -> None:
        self._failures = 0


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """The shared limits every consumer takes from its service's settings."""

    max_attempts: int = 3
    retry_backoff_seconds: float = 0.2
    outage_backoff_seconds: float = 0.5
    outage_backoff_max_seconds: float = 30.0
    tuning: ClientTuning = field(default_factory=ClientTuning)  # how the subscription fetches

    @classmethod
    def of(cls, settings: ServiceSettings) -> "ConsumerSettings":
        return cls(
            max_attempts=settings.dead_letter_max_attempts,
            retry_backoff_seconds=settings.dead_letter_retry_backoff_seconds,
            outage_backoff_seconds=settings.outage_backoff_seconds,
            outage_backoff_max_seconds=settings.outage_backoff_max_seconds,
            tuning=settings.kafka_tuning,
        )


def subscribe_records(
    broker: KafkaBroker,
    consumers: Mapping[TopicSpec, RecordConsumer[Any]],
    *,
    group_id: str,
    settings: ConsumerSettings,
    max_records: int = 500,
    title: str,
    description: str | None = None,
    jitter: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Subscribe one group to `consumers`' topics; each batch is split by topic, in order.

    Whatever escapes a batch (an outage) rewinds it; the redelivery waits for
    the outage backoff first, so a broker, database or outside service that is
    down is polled at a falling rate, not in a tight loop (`OutageBackoff` for
    `jitter`; `sleep` is for tests).
    """
    by_name = {topic.name: consumer for topic, consumer in consumers.items()}
    backoff = OutageBackoff(
        initial_seconds=settings.outage_backoff_seconds,
        maximum_seconds=settings.outage_backoff_max_seconds,
        jitter=jitter,
    )

    async def consume_records(_: Any, message: KafkaMessage) -> None:
        records = inbound_records(message)
        try:
            for name, consumer in by_name.items():
                batch = [record for record in records if record.position.topic == name]
                if batch:
                    await consumer.consume(batch)
        except Exception as error:
            asked = (
                error.retry_after_seconds if isinstance(error, DependencyUnavailableError) else None
            )
            delay = backoff.next_delay(asked)
            log.warning("%s: batch redelivered in %.1f s after %r", title, delay, error)
            await (sleep or asyncio.sleep)(delay)
            raise
        backoff.reset()

    broker.subscriber(
        *by_name,
        decoder=undecoded,
        title=title,
        description=description,
        **batch_consumer_options(group_id, max_records=max_records, tuning=settings.tuning),
    )(consume_records)


# -- canonical events ---------------------------------------------------------------

HandleEvents = Callable[[Sequence[Event]], Awaitable[Outcomes]]


def decode_event(record: InboundRecord) -> Event:
    """The record's event (`event_from`); `invalid_event` when it is not one."""
    try:
        return event_from(record.value, record.headers)
    except ValidationError as error:
        fault = RecordFault("invalid_event", f"not a CivicPulse event: {error}")
        raise RecordRejectedError(fault) from error


def event_consumer(
    broker: KafkaBroker,
    topics: Sequence[TopicSpec],
    handle: HandleEvents,
    *,
    settings: ConsumerSettings,
    on_dead_letter: CountDeadLetter | None = None,
    ignore: Ignore | None = None,
) -> RecordConsumer[Event]:
    """A consumer of canonical events; records that are not one are `invalid_event`."""
    return RecordConsumer(
        decode_event,
        handle,
        DeadLetterTopics(broker, topics),
        settings=settings,
        on_dead_letter=on_dead_letter,
        ignore=ignore,
    )


def subscribe_events(
    broker: KafkaBroker,
    topics: Sequence[TopicSpec],
    handle: HandleEvents,
    *,
    group_id: str,
    settings: ConsumerSettings | None = None,
    max_attempts: int | None = None,
    max_records: int = 500,
    ignore: Ignore | None = None,
) -> RecordConsumer[Event]:
    """Subscribe `handle` to canonical topics as consumer group `group_id`.

    `settings` (from `ConsumerSettings.of`) carries every limit; `max_attempts`
    alone, with the other limits' defaults, is what callers gave before.
    """
    if settings is None:
        settings = ConsumerSettings() if max_attempts is None else ConsumerSettings(max_attempts)
    consumer = event_consumer(broker, topics, handle, settings=settings, ignore=ignore)
    subscribe_records(
        broker,
        dict.fromkeys(topics, consumer),
        group_id=group_id,
        settings=settings,
        max_records=max_records,
        title=f"{group_id}/events",
    )
    return consumer
