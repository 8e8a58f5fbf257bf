"""Independent Kafka clients for tests: read what the services published."""

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import Kafka, kafka_client_options, topic_partitions


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


# Where each topic ended when the test session began: reads start there, so a
# long-lived broker's history (a developer's `civicpulse infra up`) costs nothing.
_session_start: dict[TopicPartition, int] = {}


async def mark_session_start(kafka: Kafka, topics: Iterable[str]) -> None:
    consumer = AIOKafkaConsumer(**kafka_client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        for topic in topics:
            partitions = await topic_partitions(consumer, [topic])
            _session_start.update(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_topic(
    kafka: Kafka,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    within_seconds: float = 30.0,
) -> list[Record]:
    """Read `topic` from the session's start (no consumer group) until `until(records)` holds.

    Returns what was read; the caller asserts on it. Reading stops after
    `within_seconds` rather than failing here, so a test's own assertion says what was
    missing.
    """
    # No group: every partition is assigned by hand, nothing is committed.
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = await topic_partitions(consumer, [topic])
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, _session_start.get(partition, 0))
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline and not until(records):
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(
                    Record(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value or b"",
                        dict(r.headers),
                    )
                    for r in batch
                )
    finally:
        await consumer.stop()
    return records


def kcat_produce(
    bootstrap: str,
    topic: str,
    value: bytes,
    *,
    key: str | None = None,
    config: Iterable[str] = (),
) -> None:
    """Produce one record with kcat: a client that shares no code with CivicPulse.

    `config` adds librdkafka properties (`name=value`), e.g. a larger
    `message.max.bytes` for a record near the broker's limit.
    """
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise RuntimeError("kcat is not installed (Debian package 'kcat'); .ci/run installs it")
    argv = [kcat, "-P", "-b", bootstrap, "-t", topic, "-X", "enable.idempotence=true"]
    for setting in config:
        argv += ["-X", setting]
    if key is not None:
        argv += ["-K", "\t"]
        value = key.encode() + b"\t" + value
    subprocess.run(argv, input=value, check=True, timeout=30, capture_output=True)


async def eventually(
    check: Callable[[], bool], *, within_seconds: float = 20.0, interval: float = 0.1
) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(interval)
    return check()


async def end_offsets(kafka: Kafka, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Where each partition of `topics` ends now."""
    consumer = AIOKafkaConsumer(**kafka_client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            await topic_partitions(consumer, topics)
        )
        return ends
    finally:
        await consumer.stop()


async def group_at(kafka: Kafka, offsets: dict[TopicPartition, int], prefix: str) -> str:
    """A fresh consumer group whose committed offsets are `offsets`."""
    group_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
    return group_id


async def new_group_at_end(kafka: Kafka, topics: str | Iterable[str], prefix: str) -> str:
    """A fresh consumer group positioned at the current end of each topic it will read.

    On a long-lived broker (a developer's `civicpulse infra up`) the topics
    hold earlier runs' records: a test's service starts after them.
    """
    named = [topics] if isinstance(topics, str) else list(topics)
    return await group_at(kafka, await end_offsets(kafka, named), prefix)


async def read_to_end(kafka: Kafka, topic: str, *, within_seconds: float = 30.0) -> list[Record]:
    """Every record of `topic` from the session's start to where it ends now.

    The end offsets are taken first, so the read stops there: nothing is
    inferred from a quiet spell.
    """
    ends = await end_offsets(kafka, [topic])
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Record] = []
    try:
        consumer.assign(list(ends))
        for partition in ends:
            consumer.seek(partition, _session_start.get(partition, 0))
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in ends]
            if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for batch in batches.values():
                records.extend(
                    Record(r.topic, r.partition, r.offset, r.key, r.value or b"", dict(r.headers))
                    for r in batch
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        else:
            raise TimeoutError(f"{topic} not read to its end offsets in {within_seconds} s")
    finally:
        await consumer.stop()
    return records


async def committed_up_to(
    kafka: Kafka, group_id: str, offsets: dict[TopicPartition, int], *, within_seconds: float
) -> bool:
    """Whether `group_id` commits at least `offsets` within the time (it has consumed them)."""
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within_seconds
        while True:
            committed = {tp: await consumer.committed(tp) or 0 for tp in offsets}
            if all(committed[tp] >= end for tp, end in offsets.items()):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
