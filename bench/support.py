"""What every benchmark shares: the infrastructure it runs on, Kafka positions, the JSON summary.

`infrastructure()` uses the stack named by `CIVICPULSE_KAFKA_BOOTSTRAP` and
`CIVICPULSE_DATABASE_URL` when both are set, else starts a throwaway one through
`civicpulse.infra`'s public entry points on a temporary run directory and stops it
at the end; scratch databases come from `civicpulse.infra.scratch_database`. Every
benchmark ends with `print_summary(...)`: one JSON line on stdout,
so runs can be compared by machine.
"""

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

Offsets = dict[TopicPartition, int]


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def print_summary(benchmark: str, figures: dict[str, Any]) -> None:
    """The benchmark's one JSON summary line, last on stdout."""
    print(json.dumps({"benchmark": benchmark, **figures}, default=str), flush=True)


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    p95_ms: float = float("nan")


def percentiles(samples: Sequence[float]) -> Percentiles:
    """p50, p95, p99 and max of durations in seconds, as milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return Percentiles(0, float("nan"), float("nan"), float("nan"))

    def rank(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000

    return Percentiles(
        len(ordered),
        statistics.median(ordered) * 1000,
        rank(0.99),
        ordered[-1] * 1000,
        p95_ms=rank(0.95),
    )


# -- infrastructure -------------------------------------------------------------------


@contextlib.contextmanager
def infrastructure() -> Iterator[Endpoints]:
    """The stack named by the environment, else a throwaway one from the local launcher."""
    bootstrap = os.environ.get("CIVICPULSE_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("CIVICPULSE_DATABASE_URL")
    if bootstrap and database_url:
        say(f"using Kafka {bootstrap} and PostgreSQL from the environment")
        yield Endpoints(bootstrap, database_url)
        return
    from civicpulse.infra import infra_down, infra_up

    run_dir = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    say(f"no CIVICPULSE_KAFKA_BOOTSTRAP/DATABASE_URL: starting a local stack in {run_dir}")
    try:
        infra = infra_up(run_dir)
        yield Endpoints(infra.kafka_bootstrap, infra.database_url)
    finally:
        infra_down(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


# -- Kafka helpers --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="civicpulse-bench")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def partitions_of(
    bootstrap: str, names: Sequence[str], within_s: float = 30.0
) -> list[TopicPartition]:
    """Every partition of the topics, once each has a leader (new topics need a moment)."""
    deadline = time.monotonic() + within_s
    async with admin_client(bootstrap) as admin:
        while time.monotonic() < deadline:
            described = await admin.describe_topics(list(names))
            if all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(partition["leader"] >= 0 for partition in topic["partitions"])
                for topic in described
            ):
                return [
                    TopicPartition(topic["topic"], partition["partition"])
                    for topic in described
                    for partition in topic["partitions"]
                ]
            await asyncio.sleep(0.1)
    raise BenchError(f"{', '.join(names)}: partitions without a leader after {within_s:.0f} s")


async def end_offsets(bootstrap: str, names: Sequence[str]) -> Offsets:
    """End offsets of every partition; also waits until the leaders serve requests."""
    partitions = await partitions_of(bootstrap, names)
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await client.start()
    try:
        offsets: Offsets = await client.end_offsets(partitions)
    finally:
        await client.stop()
    return offsets


async def place_group(bootstrap: str, group_id: str, offsets: Offsets) -> None:
    """Commit `offsets` for a group that has never run, so it starts exactly there."""
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await client.start()
    try:
        client.assign(list(offsets))
        await client.commit(offsets)
    finally:
        await client.stop()
