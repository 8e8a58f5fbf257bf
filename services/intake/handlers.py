"""Intake's handlers: raw records in, canonical events (or dead letters) out.

Order of effects, chosen so that a crash at any point loses nothing:
publish the events and wait for the broker, then remember the idempotency
keys, then (the caller) commit the consumed offsets. A crash before the keys
are stored republishes the same events with the same deterministic
`event_id`s, which every consumer deduplicates. The keys' rows are written
while the broker is being waited for, in a transaction that commits only once
it has the events (`IdempotencyStore.record_once_published`): until then they
are not stored.
"""

import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from services.intake.domain import (
    PERSONAL_DATA_FIELDS,
    Accepted,
    Rejected,
    RejectionReason,
    TimestampBounds,
    Vocabulary,
    read_raw_record,
    read_record,
    reject,
)
from services.intake.identity import Classified, classify, identity_of
from services.intake.store import AcceptedRecord, IdempotencyStore
from shared.consumer import (
    ConsumerSettings,
    DeadLetterSink,
    InboundRecord,
    RecordConsumer,
    RecordRejectedError,
)
from shared.events.contacts import CONTACT_EVENTS
from shared.kafka import OutgoingRecord, event_record
from shared.topics import CONTACTS

log = logging.getLogger(__name__)

# Sends records and waits until the broker has all of them (`shared.kafka.publish_records`).
PublishRecords = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]
Clock = Callable[[], datetime]


class Via(StrEnum):
    KAFKA = "kafka"
    HTTP = "http"


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "intake_records_accepted",
            "Records accepted and published as canonical events.",
            ["via", "event_type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "intake_records_duplicate",
            "Records already accepted under the same idempotency key.",
            ["via"],
            registry=registry,
        )
        self.rejected = Counter(
            "intake_records_rejected",
            "Records refused, by reason.",
            ["via", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "intake_records_dead_lettered",
            "Raw-topic records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.personal_data_stripped = Counter(
            "intake_personal_data_stripped",
            "Personal data fields dropped from records before they became events.",
            ["field"],
            registry=registry,
        )
        # Every series exists from the start at 0, so that rate() and ratios
        # in alerts see the first increments instead of a missing series.
        for name in PERSONAL_DATA_FIELDS:
            self.personal_data_stripped.labels(name)
        for via in Via:
            self.duplicates.labels(via.value)
            for event_class in CONTACT_EVENTS:
                self.accepted.labels(via.value, event_class.type_name())
            for reason in RejectionReason:
                self.rejected.labels(via.value, reason.value)
        for reason in RejectionReason:
            self.dead_lettered.labels(reason.value)


@dataclass(frozen=True, slots=True)
class HttpResult:
    index: int
    idempotency_key: str
    event_id: str
    status: RecordStatus


@dataclass(frozen=True, slots=True)
class HttpRejection:
    index: int
    rejected: Rejected


class IntakeHandler:
    def __init__(
        self,
        *,
        store: IdempotencyStore,
        publish_records: PublishRecords,
        vocabulary: Vocabulary,
        metrics: IntakeMetrics,
        clock: Clock,
        timestamps: TimestampBounds = TimestampBounds(),  # noqa: B008 (frozen, so shareable)
    ) -> None:
        self._store = store
        self._publish_records = publish_records
        self._vocabulary = vocabulary
        self._metrics = metrics
        self._clock = clock
        self._timestamps = timestamps

    def _read_http(self, document: Any, source: str) -> Accepted | Rejected:
        outcome: Accepted | Rejected
        if not isinstance(document, dict):
            outcome = reject(RejectionReason.INVALID_JSON, "", "a record must be a JSON object")
        else:
            outcome = read_record(
                document,
                self._vocabulary,
                authenticated_source=source,
                recorded_at=self._clock(),
                timestamps=self._timestamps,
            )
        if isinstance(outcome, Rejected):
            self._metrics.rejected.labels(Via.HTTP.value, outcome.reason.value).inc()
        return outcome

    async def _classify(self, accepted: Sequence[Accepted]) -> Classified:
        identities = list(dict.fromkeys(identity_of(item) for item in accepted))
        return classify(accepted, await self._store.fingerprints(identities))

    async def _publish_new(self, new: Sequence[Accepted], via: Via) -> None:
        if not new:
            return
        # Each event goes out as the bytes its fingerprint was taken from.
        records = [event_record(item.event, CONTACTS, value=item.value) for item in new]
        await self._store.record_once_published(
            [
                AcceptedRecord(a.source, a.idempotency_key, a.event.event_id, a.fingerprint)
                for a in new
            ],
            lambda: self._publish_records(records),
        )
        # Counted per batch: a labelled increment per record costs more than it tells.
        for event_type, count in Tally(item.event.event_type for item in new).items():
            self._metrics.accepted.labels(via.value, event_type).inc(count)
        stripped = Tally(name for item in new for name in item.stripped_fields)
        for name, count in stripped.items():
            self._metrics.personal_data_stripped.labels(name).inc(count)

    # -- raw topic -----------------------------------------------------------------

    def raw_topic_consumer(
        self, dead_letter: DeadLetterSink, settings: ConsumerSettings
    ) -> RecordConsumer[Accepted]:
        """The raw topic's consumer: rejected records are dead-lettered with their reason."""
        return RecordConsumer(
            self.decode_raw,
            self.handle_raw,
            dead_letter,
            settings=settings,
            on_dead_letter=lambda error_type: self._metrics.dead_lettered.labels(error_type).inc(),
        )

    def decode_raw(self, record: InboundRecord) -> Accepted:
        """Read one raw record; raises `RecordRejectedError` with the reason it is refused."""
        outcome = read_raw_record(
            record.value,
            self._vocabulary,
            recorded_at=self._clock(),
            timestamps=self._timestamps,
        )
        if isinstance(outcome, Rejected):
            self._metrics.rejected.labels(Via.KAFKA.value, outcome.reason.value).inc()
            raise RecordRejectedError(outcome)
        return outcome

    async def handle_raw(self, accepted: Sequence[Accepted]) -> list[Rejected | None]:
        """Publish a batch's new records; a key reused with other content is refused.

        Duplicates are counted once the batch is published, so a batch that is
        retried record by record counts each once.
        """
        classified = await self._classify(accepted)
        await self._publish_new([accepted[index] for index in classified.new], Via.KAFKA)
        self._metrics.duplicates.labels(Via.KAFKA.value).inc(len(classified.duplicates))
        outcomes: list[Rejected | None] = [None] * len(accepted)
        for index in classified.conflicts:
            outcomes[index] = _conflict(accepted[index])
        return outcomes

    # -- HTTP ----------------------------------------------------------------------

    async def handle_http_batch(
        self, documents: Sequence[Any], source: str
    ) -> list[HttpResult] | list[HttpRejection]:
        """All or nothing: with any bad record, nothing is published."""
        outcomes = [self._read_http(document, source) for document in documents]
        rejections = [
            HttpRejection(index, outcome)
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, Rejected)
        ]
        if rejections:
            return rejections
        accepted = [outcome for outcome in outcomes if isinstance(outcome, Accepted)]
        classified = await self._classify(accepted)
        if classified.conflicts:
            self._metrics.rejected.labels(
                Via.HTTP.value, RejectionReason.IDEMPOTENCY_CONFLICT.value
            ).inc(len(classified.conflicts))
            return [HttpRejection(i, _conflict(accepted[i])) for i in classified.conflicts]
        await self._publish_new([accepted[i] for i in classified.new], Via.HTTP)
        self._metrics.duplicates.labels(Via.HTTP.value).inc(len(classified.duplicates))
        new = set(classified.new)
        return [
            HttpResult(
                index=index,
                idempotency_key=item.idempotency_key,
                event_id=str(item.event.event_id),
                status=RecordStatus.ACCEPTED if index in new else RecordStatus.DUPLICATE,
            )
            for index, item in enumerate(accepted)
        ]


def _conflict(item: Accepted) -> Rejected:
    return reject(
        RejectionReason.IDEMPOTENCY_CONFLICT,
        "idempotency_key",
        f"{item.idempotency_key!r} was already accepted from {item.source!r} "
        "with different content",
    )
