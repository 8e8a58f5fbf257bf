"""Independent Kafka clients for tests: read what the services published."""

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    within_seconds: float = 30.0,
) -> list[Record]:
    """Read `topic` from the beginning (no consumer group) until `until(records)` holds.

    Returns what was read; the caller asserts on it. Reading stops after
    `within_seconds` rather than failing here, so a test's own assertion says what was
    missing.
    """
    # No group: every partition is assigned, read from the start, nothing committed.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Record] = []
    try:
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


def kcat_produce(bootstrap: str, topic: str, value: bytes, *, key: str | None = None) -> None:
    """Produce one record with kcat: a client that shares no code with CivicPulse."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise RuntimeError("kcat is not installed (Debian package 'kcat'); .ci/run installs it")
    argv = [kcat, "-P", "-b", bootstrap, "-t", topic, "-X", "enable.idempotence=true"]
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
