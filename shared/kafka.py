"""Kafka plumbing: the broker factory, topic creation and consumer defaults.

Every producer is idempotent (`acks=all`, no duplicates on retry) and every
consumer commits only after its work is done (at-least-once), so handlers
must be idempotent: they deduplicate on `event_id` or an idempotency key.
"""

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from prometheus_client import CollectorRegistry

from shared.events import Event
from shared.kafka_tuning import ClientTuning as ClientTuning
from shared.kafka_tuning import Compression as Compression
from shared.partitioner import KafkaPartitioner
from shared.topics import TopicSpec

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "PLAIN"]


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the brokers are and how a client proves who it is to them.

    A bare bootstrap string (tests, the local launcher) is a PLAINTEXT
    connection; `ServiceSettings.kafka` builds the full one from settings.
    """

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str = ""
    password: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tuning: ClientTuning = ClientTuning()


Kafka = KafkaConnection | str


def kafka_connection(kafka: Kafka) -> KafkaConnection:
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


def kafka_client_options(kafka: Kafka) -> dict[str, Any]:
    """aiokafka keyword arguments for `kafka`: bootstrap servers, TLS and SASL.

    The one place a Kafka client's transport and identity are decided: every
    producer, consumer, admin client and the faststream broker take these.
    """
    connection = kafka_connection(kafka)
    options: dict[str, Any] = {
        "bootstrap_servers": connection.bootstrap,
        "security_protocol": connection.security_protocol,
    }
    if connection.security_protocol == "PLAINTEXT":
        return options
    if (connection.cert_file is None) != (connection.key_file is None):
        raise ValueError("give both a Kafka client certificate and its key, or neither")
    options["ssl_context"] = create_ssl_context(
        cafile=str(connection.ca_file) if connection.ca_file else None,
        certfile=str(connection.cert_file) if connection.cert_file else None,
        keyfile=str(connection.key_file) if connection.key_file else None,
    )
    if connection.security_protocol == "SASL_SSL":
        if not connection.username or not connection.password:
            raise ValueError("SASL_SSL needs a Kafka user name and password")
        options["sasl_mechanism"] = connection.sasl_mechanism
        options["sasl_plain_username"] = connection.username
        options["sasl_plain_password"] = connection.password
    return options


def producer_options(kafka: Kafka) -> dict[str, Any]:
    """An aiokafka producer's keyword arguments: connection, identity and tuning."""
    return kafka_client_options(kafka) | kafka_connection(kafka).tuning.producer_options()


def consumer_options(kafka: Kafka) -> dict[str, Any]:
    """An aiokafka consumer's keyword arguments: connection, identity and fetch tuning."""
    return kafka_client_options(kafka) | kafka_connection(kafka).tuning.consumer_options()


def broker_security(options: dict[str, Any]) -> BaseSecurity | None:
    """faststream's security object carrying the same TLS context and SASL identity."""
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=options["ssl_context"])
    sasl = SASLPlaintext if options["sasl_mechanism"] == "PLAIN" else SASLScram512
    return sasl(
        options["sasl_plain_username"],
        options["sasl_plain_password"],
        ssl_context=options["ssl_context"],
    )


def make_broker(
    kafka: Kafka,
    *,
    client_id: str,
    registry: CollectorRegistry | None = None,
    graceful_timeout: float = 30.0,
) -> KafkaBroker:
    middlewares: Sequence[Any] = (
        (KafkaPrometheusMiddleware(registry=registry, app_name=client_id),) if registry else ()
    )
    options = kafka_client_options(kafka)
    return KafkaBroker(
        # faststream takes one string as one address: a cluster's list is split here.
        [address.strip() for address in options["bootstrap_servers"].split(",") if address.strip()],
        security=broker_security(options),
        client_id=client_id,
        **kafka_connection(kafka).tuning.producer_options(),
        graceful_timeout=graceful_timeout,
        middlewares=middlewares,
        logger=logging.getLogger(f"civicpulse.{client_id}.kafka"),
    )


def batch_consumer_options(
    group_id: str, *, max_records: int = 500, tuning: ClientTuning = ClientTuning()
) -> dict[str, Any]:
    """Subscriber options for an at-least-once batch consumer.

    The batch is committed once all of it is handled; on an unhandled error
    the partitions are rewound to the batch's first offsets and redelivered.
    Poison records never reach that path: handlers dead-letter them (see
    `shared.dead_letters`).
    """
    return tuning.consumer_options() | {
        "group_id": group_id,
        "batch": True,
        "max_records": max_records,
        "batch_timeout_ms": 100,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "max_poll_interval_ms": 5 * 60 * 1000,
    }


async def topic_partitions(
    consumer: AIOKafkaConsumer,
    topics: Iterable[str],
    *,
    attempts: int = 100,
    missing_ok: bool = False,
) -> list[TopicPartition]:
    """Every partition of `topics`, in order, once the consumer's metadata knows them.

    A consumer that has not subscribed learns of a topic only after a metadata
    refresh, and aiokafka has no public way to ask for one: this asks up to
    `attempts` times per topic. A topic still unknown then is an error, unless
    `missing_ok` (it then simply has no partitions in the answer).
    """
    partitions: list[TopicPartition] = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)
        for _ in range(attempts):
            if ids:
                break
            await consumer._client.force_metadata_update()
            ids = consumer.partitions_for_topic(topic)
        if not ids and not missing_ok:
            raise RuntimeError(f"topic {topic} has no partitions")
        partitions += [TopicPartition(topic, p) for p in sorted(ids or ())]
    return partitions


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, through aiokafka's race on stopping (aio-libs/aiokafka#647).

    Its fetcher cancels a fetch that is backing off (after losing a broker) and then
    awaits it, so the fetch's CancelledError leaves `stop()` before the client closes.
    That error is passed on only when this task itself is being cancelled.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        await consumer._client.close()  # what stop() had left to do


async def ensure_topics(
    kafka: Kafka, topics: Iterable[TopicSpec], *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    With more than one replica, a majority must be in sync for a write
    (`min.insync.replicas`, 2 of 3), so an acknowledged record survives the
    loss of any one broker, and the topic stays writable through it.
    """
    admin = AIOKafkaAdminClient(**kafka_client_options(kafka), client_id="civicpulse-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic.name not in existing]
        if not missing:
            return []
        min_insync = (
            {"min.insync.replicas": str(replication_factor // 2 + 1)}
            if replication_factor > 1
            else {}
        )
        new_topics = [
            NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=replication_factor,
                topic_configs={**topic.config, **min_insync},
            )
            for topic in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another replica was first
            await admin.create_topics(new_topics)
        log.info("created topics: %s", ", ".join(topic.name for topic in missing))
        return [topic.name for topic in missing]
    finally:
        await admin.close()


class OutgoingRecord(NamedTuple):  # a tuple: intake builds one per record
    topic: str
    key: bytes
    value: bytes
    headers: Mapping[str, str]


@functools.cache
def event_headers(event_class: type[Event]) -> Mapping[str, str]:
    """An event class's headers, one read-only mapping for all its records: `dispatch`
    encodes each mapping once a call, not once a record."""
    return MappingProxyType(
        {"event_type": event_class.type_name(), "schema_version": str(event_class.version())}
    )


def event_record(event: Event, topic: TopicSpec, *, value: bytes | None = None) -> OutgoingRecord:
    """An event as a Kafka record: keyed by subject, typed in headers for cheap filtering.

    `value` is the event's `to_bytes()` when the caller has it already.
    """
    return OutgoingRecord(
        topic.name,
        event.key.encode(),
        event.to_bytes() if value is None else value,
        dict(event_headers(type(event))),  # a dict of its own: callers may write it out as JSON
    )


class BulkProducer:
    """An idempotent aiokafka producer for a service's high-volume sends.

    faststream's `publish` costs about three times aiokafka's own `send` per
    record (middlewares, per-message metrics, encoding); on intake's hot path,
    its canonical events, that was half of intake's time. Intake alone uses
    it. The outbox relays publish through their service's broker (`OutboxRelay`
    would take this producer too, but no service passes one); the broker also
    does the consuming and the occasional dead letter.
    """

    def __init__(self, kafka: Kafka, *, client_id: str) -> None:
        # Held so that `dispatch` places each key where `send` would (murmur2).
        self._partitioner = KafkaPartitioner()
        options = producer_options(kafka)  # once: it may build a TLS context
        self._producer = AIOKafkaProducer(
            **options, client_id=f"{client_id}-bulk", partitioner=self._partitioner
        )
        self._max_request_size = int(options["max_request_size"])

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()  # flushes what is pending first

    async def send_all(self, records: Sequence[OutgoingRecord]) -> None:
        """Send records and wait until the broker has all of them."""
        await (await self.dispatch(records))

    async def dispatch(self, records: Sequence[OutgoingRecord]) -> Awaitable[None]:
        """Queue records for sending, in order; the awaitable returned ends once the broker
        has all of them (or raises the first failure).

        Records are gathered into one aiokafka batch per partition (more when one
        fills), in order, and each batch is queued whole: one future per batch
        instead of one per record. Each key's partition is the one `send` would
        choose, by the same hash over the same partition list, so a subject's records
        stay in order whichever way they went out, and across calls: batches queued by
        one call are sent after those of the calls before it, and the idempotent
        producer keeps a partition's batches in that order, retries included (a batch
        that fails for good fails the ones after it on its partition too, out of
        sequence), so a later record never lands without an earlier one.
        """
        partitions: dict[str, list[int]] = {}
        filling: dict[tuple[str, int], BatchBuilder] = {}
        full: list[tuple[str, int, BatchBuilder]] = []
        encoded: dict[int, list[tuple[str, bytes]]] = {}  # by the headers mapping's id
        for topic, key, value, header_map in records:
            if (all_partitions := partitions.get(topic)) is None:
                # As `AIOKafkaProducer._partition` lists them, for the partitioner.
                all_partitions = partitions[topic] = list(
                    await self._producer.partitions_for(topic)
                )
            partition = self._partitioner(key, all_partitions, all_partitions)
            if (headers := encoded.get(id(header_map))) is None:
                # `records` holds every mapping until the call ends, so ids are not reused.
                headers = encoded[id(header_map)] = [
                    (name, text.encode()) for name, text in header_map.items()
                ]
            batch = filling.get((topic, partition))
            if (
                batch is None
                or batch.append(timestamp=None, key=key, value=value, headers=headers) is None
            ):
                # Only a batch's first record can be over the limit: a batch is smaller.
                self._check_size(topic, key, value, headers)
                if batch is not None:
                    full.append((topic, partition, batch))
                batch = filling[topic, partition] = self._producer.create_batch()
                # A new batch always takes its first record, whatever its size.
                batch.append(timestamp=None, key=key, value=value, headers=headers)
        full += [(topic, partition, batch) for (topic, partition), batch in filling.items()]
        sends = []
        for topic, partition, batch in full:
            batch.close()  # nothing else joins it, and it goes without lingering
            sends.append(await self._producer.send_batch(batch, topic, partition=partition))
        return _all_of(sends)

    def _check_size(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """`send`'s own refusal of a record too large for one request."""
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > self._max_request_size:
            raise MessageSizeTooLargeError(
                f"a record of {size} bytes for {topic} is over the "
                f"{self._max_request_size}-byte request limit"
            )


async def publish_records(
    target: KafkaBroker | BulkProducer, records: Sequence[OutgoingRecord]
) -> None:
    """Publish records and wait until the broker has all of them (`dispatch_records`)."""
    await (await dispatch_records(target, records))


async def dispatch_records(
    target: KafkaBroker | BulkProducer, records: Sequence[OutgoingRecord]
) -> Awaitable[None]:
    """Queue records for publishing, in order; the awaitable returned ends once the broker
    has all of them.

    Sends are pipelined, then awaited together: a batch costs one round trip,
    not one per record, and keys still spread over partitions (unlike
    `publish_batch`, which sends a whole batch to one partition).
    """
    if isinstance(target, BulkProducer):
        return await target.dispatch(records)
    confirmations = [
        await target.publish(
            record.value,
            record.topic,
            key=record.key,
            headers=dict(record.headers),
            no_confirm=True,
        )
        for record in records
    ]
    # faststream's in-memory test broker delivers at once and returns no future.
    return _all_of([c for c in confirmations if inspect.isawaitable(c)])


async def _all_of(confirmations: Sequence[Awaitable[Any]]) -> None:
    await asyncio.gather(*confirmations)


async def publish_events(
    broker: KafkaBroker | BulkProducer, topic: TopicSpec, events: Sequence[Event]
) -> None:
    """Publish events keyed by subject and wait until the broker has all of them."""
    await publish_records(broker, [event_record(event, topic) for event in events])
