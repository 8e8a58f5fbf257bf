"""How fast `python -m services.metrics rebuild` replays the canonical topics.

Produces `--events` ContactReceived events (as `bench.metrics_throughput` makes them:
30 days, 15 service areas, re-contacts) to `civicpulse.contacts`, then runs the
rebuild itself (`services.metrics.rebuild.rebuild`, what the command runs) from
where those events start into a scratch database, and prints events/s and the
total time. The issue's size is 5 million events (a large council's year):
`--events 5000000` measures it (about 2.5 GB on the broker's disk; the events are
written as JSON from a template and sent in record batches per partition, so
producing them takes a few minutes, not an hour). A smaller run also prints the
5-million time at its rate, labelled as the extrapolation it is.

    python -m bench.rebuild --events 5000000
    python -m bench.rebuild --quick
"""

import argparse
import asyncio
import logging
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from bench.metrics_throughput import CHANNELS
from bench.support import (
    Endpoints,
    end_offsets,
    infrastructure,
    print_summary,
    say,
)
from civicpulse.infra import scratch_database
from services.metrics.applier import BatchApplier
from services.metrics.domain import Rules
from services.metrics.rebuild import rebuild
from services.metrics.settings import SERVICE
from services.metrics.store import MIGRATIONS
from shared.kafka import ensure_topics
from shared.postgres import create_pool, migrate
from shared.settings import DEFAULT_VOCABULARY_FILE
from shared.topics import ALL_TOPICS, CANONICAL_TOPICS, CONTACTS
from shared.vocabulary import load_service_areas

ISSUE_EVENTS = 5_000_000
TARGET_SECONDS = 600  # the issue: 5M events in under 10 minutes
MAKE_CHUNK = 200_000


def contact_records(count: int, customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of `count` ContactReceived events, as `make_events` would make them.

    Written from a template rather than through the model: for millions of events
    the model's construction and serialisation cost more than the rebuild being
    measured. The rebuild parses every one with the full event model, so a
    template that drifted from the schema would show as skipped records.
    """
    rng = random.Random(seed)
    areas = sorted(load_service_areas(DEFAULT_VOCABULARY_FILE))
    channels = [c.value for c in CHANNELS]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    recorded = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    records = []
    for n in range(count):
        contact_id = f"mbench-{seed}-{n}"
        occurred = (start + timedelta(seconds=rng.randrange(30 * 86_400))).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        event = (
            f'{{"event_id":"{uuid.UUID(int=rng.getrandbits(128), version=4)}",'
            f'"event_type":"ContactReceived","schema_version":1,'
            f'"occurred_at":"{occurred}","recorded_at":"{recorded}","source":"bench",'
            f'"correlation_id":null,"causation_id":null,"contact_id":"{contact_id}",'
            f'"payload":{{"channel":"{rng.choice(channels)}",'
            f'"service_area":"{rng.choice(areas)}","kind":"enquiry",'
            f'"customer_ref":"MB-{rng.randrange(customers)}","answered_by_team":null,'
            f'"transfers":0,"resolved_at_first_contact":'
            f'{"true" if rng.random() < 0.6 else "false"},"wait_seconds":null}}}}'
        )
        records.append((contact_id.encode(), event.encode()))
    return records


async def produce_records(bootstrap: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send in record batches per partition (keyed as the default partitioner places them)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, max_batch_size=1_048_576
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(CONTACTS.name))
        headers = [("event_type", b"ContactReceived"), ("schema_version", b"1")]
        batches: dict[int, Any] = {}
        sends = []
        for key, value in records:
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                batch.close()
                sends.append(await producer.send_batch(batch, CONTACTS.name, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            if len(sends) >= 64:
                await asyncio.gather(*sends)
                sends = []
        for partition, batch in batches.items():
            batch.close()
            sends.append(await producer.send_batch(batch, CONTACTS.name, partition=partition))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def bench(endpoints: Endpoints, events: int) -> dict[str, Any]:
    bootstrap = endpoints.kafka_bootstrap
    await ensure_topics(bootstrap, ALL_TOPICS)
    start = await end_offsets(bootstrap, [t.name for t in CANONICAL_TOPICS])
    say(f"producing {events:,} ContactReceived events to {CONTACTS.name}")
    seed = random.randrange(10**9)
    producing = time.perf_counter()
    for first in range(0, events, MAKE_CHUNK):
        count = min(MAKE_CHUNK, events - first)
        records = contact_records(count, max(1000, events // 4), seed + first)
        await produce_records(bootstrap, records)
        if first and first % 1_000_000 == 0:
            say(f"  {first:,} produced")
    produce_seconds = time.perf_counter() - producing
    say(f"  produced in {produce_seconds:.0f} s")
    name = f"civicpulse_rebuildbench_{uuid.uuid4().hex[:8]}"
    async with scratch_database(endpoints.database_url, name) as url:
        pool = await create_pool(url)
        try:
            await migrate(pool, SERVICE, MIGRATIONS)
            applier = BatchApplier(
                rules=Rules(), clock=lambda: datetime.now(UTC), publish_surges=False
            )
            started = time.perf_counter()
            result = await rebuild(pool, bootstrap, applier, progress=say, start_offsets=start)
            seconds = time.perf_counter() - started
        finally:
            await pool.close()
    rate = result.events_read / seconds
    return {
        "events": events,
        "events_read": result.events_read,
        "events_applied": result.events_applied,
        "seconds": round(seconds, 2),
        "events_per_s": round(rate, 1),
        "produce_seconds": round(produce_seconds, 1),
        "extrapolated_5m_seconds": round(ISSUE_EVENTS / rate, 1),
        "target_5m_seconds": TARGET_SECONDS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=100_000, help="events to replay (100,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    events = 20_000 if args.quick else args.events
    with infrastructure() as endpoints:
        figures = asyncio.run(bench(endpoints, events))
    print(
        f"rebuild: {figures['events_read']:,} events in {figures['seconds']} s,"
        f" {figures['events_per_s']:,.0f} events/s"
    )
    if figures["events_read"] >= ISSUE_EVENTS:
        seconds = figures["seconds"]
        verdict = "met" if seconds < TARGET_SECONDS else "NOT met"
        print(
            f"{figures['events_read']:,} events measured: {seconds / 60:.1f} min"
            f" (target < {TARGET_SECONDS // 60} min for 5,000,000: {verdict})"
        )
    else:
        extrapolated = figures["extrapolated_5m_seconds"]
        verdict = "met" if extrapolated < TARGET_SECONDS else "NOT met"
        print(
            f"5,000,000 events at that rate (extrapolated, not measured):"
            f" {extrapolated / 60:.1f} min (target < {TARGET_SECONDS // 60} min: {verdict})"
        )
    print_summary("rebuild", figures)
    return 0 if figures["events_applied"] == events else 1


if __name__ == "__main__":
    sys.exit(main())
