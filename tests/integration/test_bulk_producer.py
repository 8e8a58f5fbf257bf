"""`shared.kafka.BulkProducer` on the real broker: per-partition batches, same placement as `send`.

Intake publishes its canonical events (raw topic and HTTP alike) through
`BulkProducer.send_all`, which builds one aiokafka batch per partition instead
of calling `send` per record. Per-key ordering (KAFKA.md: a subject's events
stay on one partition, in order) holds only if every key lands where aiokafka's
own `send` puts it, whichever way it was published.
"""

import uuid
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from shared.kafka import (
    BulkProducer,
    ClientTuning,
    KafkaConnection,
    OutgoingRecord,
    kafka_client_options,
)
from shared.topics import MAX_MESSAGE_BYTES
from tests.support.kafka import Record, end_offsets, read_to_end

pytestmark = pytest.mark.integration

PARTITIONS = 6
KEYS = 150
RECORDS_PER_KEY = 4


@pytest.fixture
async def scratch_topics(kafka_bootstrap: str) -> AsyncIterator[tuple[str, str]]:
    """(bulk, plain): two fresh six-partition topics, deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    names = (f"test.bulk.{run}", f"test.plain.{run}")
    admin = AIOKafkaAdminClient(**kafka_client_options(kafka_bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
        yield names
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


def outgoing(topic: str) -> list[OutgoingRecord]:
    """Each key's records in sequence, interleaved with the other keys'."""
    return [
        OutgoingRecord(
            topic,
            f"contact-{key:04d}".encode(),
            f"contact-{key:04d}:{sequence}".encode() + b"." * (key % 50),
            {"event_type": "ContactReceived", "schema_version": str(sequence)},
        )
        for sequence in range(RECORDS_PER_KEY)
        for key in range(KEYS)
    ]


def by_key(records: list[Record]) -> dict[bytes, list[Record]]:
    grouped: dict[bytes, list[Record]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        grouped.setdefault(record.key, []).append(record)
    return grouped


async def test_send_all_places_every_key_where_send_does_and_keeps_each_keys_order(
    kafka_bootstrap: str, scratch_topics: tuple[str, str]
) -> None:
    bulk_topic, plain_topic = scratch_topics
    # Small batches: each partition's share of a call fills several of them.
    connection = KafkaConnection(kafka_bootstrap, tuning=ClientTuning(batch_bytes=2048))
    bulk = BulkProducer(connection, client_id="test-bulk")
    plain = AIOKafkaProducer(**kafka_client_options(kafka_bootstrap), enable_idempotence=True)
    await bulk.start()
    await plain.start()
    try:
        sent = outgoing(bulk_topic)
        await bulk.send_all(sent[: len(sent) // 3])
        await bulk.send_all(sent[len(sent) // 3 :])
        for record in outgoing(plain_topic):
            await plain.send(record.topic, record.value, key=record.key)
        await plain.flush()
    finally:
        await bulk.stop()
        await plain.stop()

    bulk_read = by_key(await read_to_end(kafka_bootstrap, bulk_topic))
    plain_read = by_key(await read_to_end(kafka_bootstrap, plain_topic))

    assert len(bulk_read) == KEYS
    assert len({records[0].partition for records in bulk_read.values()}) == PARTITIONS
    for key, records in bulk_read.items():
        assert {r.partition for r in records} == {plain_read[key][0].partition}
        assert [r.value.split(b".")[0] for r in records] == [
            key + f":{sequence}".encode() for sequence in range(RECORDS_PER_KEY)
        ]
        assert [r.headers["schema_version"] for r in records] == [
            str(sequence).encode() for sequence in range(RECORDS_PER_KEY)
        ]
        assert all(a.offset < b.offset for a, b in pairwise(records))
        assert {r.headers["event_type"] for r in records} == {b"ContactReceived"}


async def test_a_record_too_large_for_one_request_is_refused_and_nothing_is_sent(
    kafka_bootstrap: str, scratch_topics: tuple[str, str]
) -> None:
    bulk_topic, _ = scratch_topics
    bulk = BulkProducer(kafka_bootstrap, client_id="test-bulk")
    await bulk.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await bulk.send_all(
                [
                    OutgoingRecord(bulk_topic, b"small", b"fine", {}),
                    OutgoingRecord(bulk_topic, b"large", b"x" * MAX_MESSAGE_BYTES, {}),
                ]
            )
    finally:
        await bulk.stop()

    assert sum((await end_offsets(kafka_bootstrap, [bulk_topic])).values()) == 0
