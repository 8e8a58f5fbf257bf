"""Consuming canonical events: decode, hand to the service, dead-letter what fails.

Every service consumes the same way: a batch subscriber with at-least-once
commits (`shared.kafka.batch_consumer_options`) whose records are read as
bytes, so that a record faststream could not decode still reaches the
dead-letter topic instead of blocking its partition.

`EventConsumer` gives the service's handler the whole batch of events first
(one database transaction for many events is what makes consumers fast). If
that fails for a reason other than an outage, it retries event by event, each
up to the attempt cap, and dead-letters only the events that still fail.
Handlers are idempotent (`shared.processed_events`), so the retry is safe.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from shared.dead_letters import (
    AttemptsExhaustedError,
    SourcePosition,
    is_transient,
    send_dead_letter,
    with_attempts,
)
from shared.events.catalogue import parse_event
from shared.events.envelope import Event
from shared.kafka import batch_consumer_options
from shared.topics import TopicSpec, dead_letter_twin

log = logging.getLogger(__name__)

HandleEvents = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One consumed record, as bytes, with where it came from."""

    value: bytes
    key: bytes | None
    position: SourcePosition


async def undecoded(_: Any) -> None:
    """A faststream decoder that decodes nothing: handlers read the records' bytes."""
    return


def inbound_records(message: KafkaMessage) -> list[InboundRecord]:
    raw = message.raw_message
    records = raw if isinstance(raw, tuple | list) else (raw,)
    return [
        InboundRecord(
            value=record.value or b"",
            key=record.key,
            position=SourcePosition(record.topic, record.partition, record.offset),
        )
        for record in records
    ]


async def dead_letter_inbound(
    broker: KafkaBroker,
    dead_letter_topic: TopicSpec,
    record: InboundRecord,
    *,
    reason: str,
    error_type: str,
    attempts: int = 1,
) -> None:
    """Dead-letter a consumed record as it came: its bytes, key and position."""
    await send_dead_letter(
        broker,
        dead_letter_topic,
        original=record.value,
        key=record.key,
        source=record.position,
        reason=reason,
        error_type=error_type,
        attempts=attempts,
    )


class EventConsumer:
    """Turns consumed records into events for `handle`; what fails is dead-lettered."""

    def __init__(
        self,
        broker: KafkaBroker,
        topics: Sequence[TopicSpec],
        handle: HandleEvents,
        *,
        max_attempts: int,
    ) -> None:
        self._broker = broker
        self._handle = handle
        self._max_attempts = max_attempts
        self._dead_letter_topics = {topic.name: dead_letter_twin(topic) for topic in topics}

    async def consume(self, records: Sequence[InboundRecord]) -> None:
        """Handle one batch; raises only on an outage, so the batch is redelivered."""
        decoded: list[tuple[InboundRecord, Event]] = []
        for record in records:
            try:
                decoded.append((record, parse_event(record.value)))
            except ValidationError as error:
                await self._dead_letter(record, f"not a CivicPulse event: {error}", "invalid_event")
        if not decoded:
            return
        try:
            await self._handle([event for _, event in decoded])
        except Exception as error:
            if is_transient(error):
                raise
            log.warning("batch failed (%r); retrying event by event", error)
            for record, event in decoded:
                await self._handle_one(record, event)

    async def _handle_one(self, record: InboundRecord, event: Event) -> None:
        try:
            await with_attempts(lambda: self._handle([event]), max_attempts=self._max_attempts)
        except AttemptsExhaustedError as exhausted:
            await self._dead_letter(
                record, str(exhausted), "processing_failed", attempts=exhausted.attempts
            )

    async def _dead_letter(
        self, record: InboundRecord, reason: str, error_type: str, *, attempts: int = 1
    ) -> None:
        await dead_letter_inbound(
            self._broker,
            self._dead_letter_topics[record.position.topic],
            record,
            reason=reason,
            error_type=error_type,
            attempts=attempts,
        )


def subscribe_events(
    broker: KafkaBroker,
    topics: Sequence[TopicSpec],
    handle: HandleEvents,
    *,
    group_id: str,
    max_attempts: int,
    max_records: int = 500,
) -> EventConsumer:
    """Subscribe `handle` to canonical topics as consumer group `group_id`."""
    consumer = EventConsumer(broker, topics, handle, max_attempts=max_attempts)

    async def consume_events(_: Any, message: KafkaMessage) -> None:
        await consumer.consume(inbound_records(message))

    broker.subscriber(
        *(topic.name for topic in topics),
        decoder=undecoded,
        title=f"{group_id}/events",
        **batch_consumer_options(group_id, max_records=max_records),
    )(consume_events)
    return consumer
