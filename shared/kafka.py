"""Kafka plumbing: the broker factory, topic creation and consumer defaults.

Every producer is idempotent (`acks=all`, no duplicates on retry) and every
consumer commits only after its work is done (at-least-once), so handlers
must be idempotent: they deduplicate on `event_id` or an idempotency key.
"""

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from prometheus_client import CollectorRegistry

from shared.events import Event
from shared.topics import MAX_MESSAGE_BYTES, TopicSpec

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
        enable_idempotence=True,
        linger_ms=5,  # a few ms of batching lifts throughput without hurting latency
        max_request_size=MAX_MESSAGE_BYTES,
        graceful_timeout=graceful_timeout,
        middlewares=middlewares,
        logger=logging.getLogger(f"civicpulse.{client_id}.kafka"),
    )


def batch_consumer_options(group_id: str, *, max_records: int = 500) -> dict[str, Any]:
    """Subscriber options for an at-least-once batch consumer.

    The batch is committed once all of it is handled; on an unhandled error
    the partitions are rewound to the batch's first offsets and redelivered.
    Poison records never reach that path: handlers dead-letter them (see
    `shared.dead_letters`).
    """
    return {
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


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str]


def event_record(event: Event, topic: TopicSpec, *, value: bytes | None = None) -> OutgoingRecord:
    """An event as a Kafka record: keyed by subject, typed in headers for cheap filtering.

    `value` is the event's `to_bytes()` when the caller has it already.
    """
    return OutgoingRecord(
        topic=topic.name,
        key=event.key.encode(),
        value=event.to_bytes() if value is None else value,
        headers={"event_type": event.event_type, "schema_version": str(event.schema_version)},
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
        self._producer = AIOKafkaProducer(
            **kafka_client_options(kafka),
            client_id=f"{client_id}-bulk",
            enable_idempotence=True,  # implies acks="all"
            linger_ms=5,
            max_request_size=MAX_MESSAGE_BYTES,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()  # flushes what is pending first

    async def send_all(self, records: Sequence[OutgoingRecord]) -> None:
        sends = [
            await self._producer.send(
                record.topic,
                record.value,
                key=record.key,
                headers=[(name, value.encode()) for name, value in record.headers.items()],
            )
            for record in records
        ]
        await asyncio.gather(*sends)


async def publish_records(
    target: KafkaBroker | BulkProducer, records: Sequence[OutgoingRecord]
) -> None:
    """Publish records and wait until the broker has all of them.

    Sends are pipelined, then awaited together: a batch costs one round trip,
    not one per record, and keys still spread over partitions (unlike
    `publish_batch`, which sends a whole batch to one partition).
    """
    if isinstance(target, BulkProducer):
        await target.send_all(records)
        return
    confirmations = [
        await target.publish(
            record.value, record.topic, key=record.key, headers=record.headers, no_confirm=True
        )
        for record in records
    ]
    # faststream's in-memory test broker delivers at once and returns no future.
    await asyncio.gather(*(c for c in confirmations if inspect.isawaitable(c)))


async def publish_events(
    broker: KafkaBroker | BulkProducer, topic: TopicSpec, events: Sequence[Event]
) -> None:
    """Publish events keyed by subject and wait until the broker has all of them."""
    await publish_records(broker, [event_record(event, topic) for event in events])
