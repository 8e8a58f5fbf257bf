"""How fast `python -m services.metrics rebuild` replays the canonical topics.

Produces `--events` ContactReceived events (as `bench.metrics_throughput` makes them:
30 days, 15 service areas, re-contacts) to `civicpulse.contacts`, then runs the
rebuild itself (`services.metrics.rebuild.rebuild`, what the command runs) from
where those events start into a scratch database, and prints events/s. The issue's
size is 5 million events (a large council's year); on a shared 2-core machine use a
smaller `--events` and read the 5-million figure, which is printed as what it is:
an extrapolation at the measured rate.

    python -m bench.rebuild --events 100000
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
from datetime import UTC, datetime
from typing import Any

from bench.metrics_throughput import make_events, produce
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
from shared.topics import ALL_TOPICS, CANONICAL_TOPICS, CONTACTS

ISSUE_EVENTS = 5_000_000
TARGET_SECONDS = 600  # the issue: 5M events in under 10 minutes
MAKE_CHUNK = 50_000


async def bench(endpoints: Endpoints, events: int) -> dict[str, Any]:
    bootstrap = endpoints.kafka_bootstrap
    await ensure_topics(bootstrap, ALL_TOPICS)
    start = await end_offsets(bootstrap, [t.name for t in CANONICAL_TOPICS])
    say(f"producing {events:,} ContactReceived events to {CONTACTS.name}")
    seed = random.randrange(10**9)
    for first in range(0, events, MAKE_CHUNK):
        count = min(MAKE_CHUNK, events - first)
        await produce(bootstrap, make_events(count, max(1000, events // 4), seed + first))
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
    extrapolated = figures["extrapolated_5m_seconds"]
    verdict = "met" if extrapolated < TARGET_SECONDS else "NOT met"
    print(
        f"rebuild: {figures['events_read']:,} events in {figures['seconds']} s,"
        f" {figures['events_per_s']:,.0f} events/s"
    )
    print(
        f"5,000,000 events at that rate (extrapolated, not measured): {extrapolated / 60:.1f} min"
        f" (target < {TARGET_SECONDS // 60} min: {verdict})"
    )
    print_summary("rebuild", figures)
    return 0 if figures["events_applied"] == events else 1


if __name__ == "__main__":
    sys.exit(main())
