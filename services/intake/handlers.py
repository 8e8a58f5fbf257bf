"""Intake's handlers: raw records in, canonical events (or dead letters) out.

Order of effects, chosen so that a crash at any point loses nothing:
publish the events and wait for the broker, then remember the idempotency
keys, then (the caller) commit the consumed offsets. A crash before the keys
are stored republishes the same events with the same deterministic
`event_id`s, which every consumer deduplicates. The keys' rows are written
while the broker is being waited for, in a transaction that commits only once
it has every event of the batch (`IdempotencyStore.recording`): until then
they are not stored.

A raw batch's events are built in the handler while the batch's key lookup is
answered, and a batch longer than `CHUNK_RECORDS` is built and sent a chunk at a
time: while one chunk travels to the broker and its keys to PostgreSQL, the next is
built. Chunks are queued for the broker in the batch's order
(`shared.kafka.dispatch_records`), so each key's events keep their order, and every
chunk is sorted against the keys stored before the batch and those seen in its
earlier chunks, so a record repeated anywhere in a batch is still one event.
"""

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from services.intake.domain import (
    PERSONAL_DATA_FIELDS,
    Accepted,
    Checked,
    Rejected,
    RejectionReason,
    TimestampBounds,
    Vocabulary,
    accept,
    check_raw_record,
    read_record,
    reject,
)
from services.intake.identity import Binding, Bindings, Classified, classify, identity_of
from services.intake.store import IdempotencyStore, KeyRecording
from shared.consumer import (
    ConsumerSettings,
    DeadLetterSink,
    Fault,
    InboundRecord,
    RecordConsumer,
    RecordFault,
    RecordRejectedError,
)
from shared.dead_letters import UNDECODABLE
from shared.events.contacts import CONTACT_EVENTS
from shared.kafka import OutgoingRecord, event_headers
from shared.topics import CONTACTS

log = logging.getLogger(__name__)

# Queues records for the broker, in order; what it returns ends once the broker has all
# of them (`shared.kafka.dispatch_records`).
DispatchRecords = Callable[[Sequence[OutgoingRecord]], Awaitable[Awaitable[None]]]
Clock = Callable[[], datetime]

# Raw records built and sent at a time. Chunks of 100, 200 and 250 in batches of 500
# were no faster than one chunk, mostly slower (bench/README.md, 2026-12-02): on two
# cores the broker's and PostgreSQL's share of the work competes for the CPU that
# building the next chunk would overlap, and each chunk costs a produce request and
# a write of its own, and a chunk queued behind an unsent one waits in aiokafka.
CHUNK_RECORDS = 500


# A checked record's identity, (source, idempotency_key), built in C.
_IDENTITY = attrgetter("source", "record.idempotency_key")


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
        dispatch_records: DispatchRecords,
        vocabulary: Vocabulary,
        metrics: IntakeMetrics,
        clock: Clock,
        timestamps: TimestampBounds = TimestampBounds(),  # noqa: B008 (frozen, so shareable)
    ) -> None:
        self._store = store
        self._dispatch_records = dispatch_records
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

    async def _send(
        self, recording: KeyRecording, new: Sequence[Accepted]
    ) -> Awaitable[None] | None:
        """Queue `new`'s events for the broker and their keys for the open transaction."""
        if not new:
            return None
        recording.add(new)  # each holds its row's fields (`store.KeyRow`)
        # The rows go out first: PostgreSQL takes longer to have them than the broker
        # the events, and queueing the events keeps the loop busy for a while.
        await asyncio.sleep(0)
        # Each event goes out as the bytes its fingerprint was taken from.
        topic, headers = CONTACTS.name, event_headers
        return await self._dispatch_records(
            [
                OutgoingRecord(topic, a.contact_id.encode(), a.value, headers(a.event_class))
                for a in new
            ]
        )

    def _count_published(self, new: Sequence[Accepted], via: Via) -> None:
        # Counted per batch: a labelled increment per record costs more than it tells.
        for event_class, count in Tally(item.event_class for item in new).items():
            self._metrics.accepted.labels(via.value, event_class.type_name()).inc(count)
        stripped = Tally(name for item in new for name in item.stripped_fields)
        for name, count in stripped.items():
            self._metrics.personal_data_stripped.labels(name).inc(count)

    # -- raw topic -----------------------------------------------------------------

    def raw_topic_consumer(
        self, dead_letter: DeadLetterSink, settings: ConsumerSettings
    ) -> RecordConsumer[Checked]:
        """The raw topic's consumer: rejected records are dead-lettered with their reason."""
        return RecordConsumer(
            self.decode_raw,
            self.handle_raw,
            dead_letter,
            settings=settings,
            on_dead_letter=lambda error_type: self._metrics.dead_lettered.labels(error_type).inc(),
        )

    def decode_raw(self, record: InboundRecord) -> Checked:
        """Read one raw record; raises `RecordRejectedError` with the reason it is refused."""
        outcome = check_raw_record(
            record.value,
            self._vocabulary,
            recorded_at=self._clock(),
            timestamps=self._timestamps,
        )
        if isinstance(outcome, Rejected):
            self._metrics.rejected.labels(Via.KAFKA.value, outcome.reason.value).inc()
            raise RecordRejectedError(outcome)
        return outcome

    async def handle_raw(self, checked: Sequence[Checked]) -> list[Fault | None]:
        """Publish a batch's new records; a key reused with other content is refused.

        Duplicates are counted once the batch is published, so a batch that is
        retried record by record counts each once.
        """
        identities = list(dict.fromkeys(map(_IDENTITY, checked)))
        # One lookup for the batch, answered while the first chunk is built (once the
        # task has run: see below).
        lookup = asyncio.ensure_future(self._store.fingerprints(identities))
        outcomes: list[Fault | None] = [None] * len(checked)
        new: list[Accepted] = []
        duplicates = 0
        acknowledged: list[Awaitable[None]] = []
        try:
            async with self._store.recording() as recording:
                # The lookup's query and the transaction's BEGIN go out now: building a
                # chunk keeps the loop busy, and they would wait for it to be done.
                await asyncio.sleep(0)
                bindings: Bindings | None = None
                for start in range(0, len(checked), CHUNK_RECORDS):
                    built = self._build(checked, start, outcomes)
                    bindings = bindings or Bindings(await lookup)
                    fresh = []
                    for index, item in built:
                        binding = bindings.sort(item)
                        if binding is Binding.NEW:
                            fresh.append(item)
                        elif binding is Binding.DUPLICATE:
                            duplicates += 1
                        else:
                            outcomes[index] = _conflict(item)
                    if (sent := await self._send(recording, fresh)) is not None:
                        acknowledged.append(asyncio.ensure_future(sent))
                    new += fresh
                # The keys commit as the block ends: only once the broker has every chunk.
                await asyncio.gather(*acknowledged)
        except BaseException:
            # What was queued still goes: the batch is redelivered only once it has settled.
            await asyncio.gather(*acknowledged, return_exceptions=True)
            raise
        finally:
            if not lookup.cancel() and not lookup.cancelled():
                lookup.exception()  # retrieved, awaited or not: the first error is raised
        self._count_published(new, Via.KAFKA)
        self._metrics.duplicates.labels(Via.KAFKA.value).inc(duplicates)
        return outcomes

    @staticmethod
    def _build(
        checked: Sequence[Checked], start: int, outcomes: list[Fault | None]
    ) -> list[tuple[int, Accepted]]:
        """The events of one chunk; one that cannot be built is `undecodable`, as it would
        be had the decoder failed on it."""
        built = []
        for index in range(start, min(start + CHUNK_RECORDS, len(checked))):
            try:
                built.append((index, accept(checked[index])))
            except Exception as error:  # noqa: BLE001 - pure code: the record caused it
                reason = f"{UNDECODABLE}: {type(error).__name__}: {str(error)[:500]}"
                outcomes[index] = RecordFault(UNDECODABLE, reason)
        return built

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
        new = [accepted[i] for i in classified.new]
        async with self._store.recording() as recording:
            if (sent := await self._send(recording, new)) is not None:
                await sent
        self._count_published(new, Via.HTTP)
        self._metrics.duplicates.labels(Via.HTTP.value).inc(len(classified.duplicates))
        fresh = set(classified.new)
        return [
            HttpResult(
                index=index,
                idempotency_key=item.idempotency_key,
                event_id=item.event_id,
                status=RecordStatus.ACCEPTED if index in fresh else RecordStatus.DUPLICATE,
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
