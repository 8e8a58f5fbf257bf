"""Feedback's decision and sending rates on the real PostgreSQL, beside a plain anchor.

Three phases over N resolved contacts (distinct customers, each with a contact route),
in batches of 500 events per transaction, as the consumer hands them over:

- anchor: per event, the processed-event record plus one plain INSERT, in one
  transaction per batch. The floor for any idempotent consumer on this database.
- decide: `FeedbackHandler.handle` (processed-event record, customer lock, opt-out,
  route, case and quiet-period look-ups, request row, send timer).
- send: `TimerScheduler.fire_due` after the delay: each request's SatisfactionRequested
  and Notify message into the outbox, a signed link, an expiry timer.

Kafka is not involved (the outbox is not relayed), so the figures are the database
work per event. Uses `CIVICPULSE_DATABASE_URL` (with `CIVICPULSE_KAFKA_BOOTSTRAP`) when
set, else starts a throwaway stack; either way it works in a scratch database:

    python -m bench.feedback_decisions --events 5000 --runs 3
"""

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry

from bench.support import infrastructure, print_summary, say
from civicpulse.infra import scratch_database
from services.feedback.handlers import FeedbackHandler, FeedbackMetrics, NotifyTemplates, policy_of
from services.feedback.links import AnswerLinks
from services.feedback.notifications import ContactRoute
from services.feedback.settings import SERVICE
from services.feedback.store import MIGRATIONS, FeedbackStore
from shared.events import ContactResolved, ContactResolvedPayload, Event
from shared.postgres import create_pool, migrate
from shared.processed_events import first_time
from shared.timers import TimerScheduler

BATCH = 500
POLICY_DELAY = timedelta(hours=24)


def _events(run: str, count: int, at: datetime) -> list[Event]:
    return [
        ContactResolved(
            contact_id=f"bench-{run}-{n}",
            occurred_at=at,
            source="bench",
            payload=ContactResolvedPayload(
                channel="phone", service_area="waste", kind="enquiry", customer_ref=f"B{run}-{n}"
            ),
        )
        for n in range(count)
    ]


def _batches(events: Sequence[Event]) -> list[Sequence[Event]]:
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


async def _anchor(pool: asyncpg.Pool, events: Sequence[Event]) -> float:
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_anchor (id text PRIMARY KEY)")
    started = time.perf_counter()
    for batch in _batches(events):
        async with pool.acquire() as connection, connection.transaction():
            for event in batch:
                if await first_time(connection, "bench-anchor", event.event_id):
                    await connection.execute(
                        "INSERT INTO bench_anchor (id) VALUES ($1)", str(event.event_id)
                    )
    return len(events) / (time.perf_counter() - started)


async def _one_run(pool: asyncpg.Pool, count: int) -> tuple[float, float, float]:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    clock = [now]
    store = FeedbackStore(pool)
    handler = FeedbackHandler(
        store,
        policy=policy_of(POLICY_DELAY.total_seconds() / 3600, 14, 30),
        links=AnswerLinks("bench-secret-" + "x" * 32),
        public_url="https://feedback.example.gov.uk",
        templates=NotifyTemplates(email="email-template", sms="sms-template"),
        metrics=FeedbackMetrics(CollectorRegistry()),
        clock=lambda: clock[0],
    )
    events = _events(run, count, now)
    async with store.transaction() as routes:
        for event in events:
            assert isinstance(event, ContactResolved)
            assert event.payload.customer_ref is not None
            await routes.put_contact_route(
                event.payload.customer_ref, ContactRoute(email="r@example.org"), now
            )
    anchor = await _anchor(pool, _events(run + "a", count, now))

    started = time.perf_counter()
    for batch in _batches(events):
        await handler.handle(batch)
    decide = count / (time.perf_counter() - started)

    clock[0] = now + POLICY_DELAY + timedelta(minutes=1)
    scheduler = TimerScheduler(pool, SERVICE, handler.fire, clock=lambda: clock[0])
    started = time.perf_counter()
    fired = await scheduler.fire_due()
    send = fired / (time.perf_counter() - started)
    assert fired == count, f"fired {fired} of {count}"
    await pool.execute("DELETE FROM outbox WHERE service = $1", SERVICE)
    return anchor, decide, send


async def measure(base: str, events: int, runs: int) -> list[tuple[float, float, float]]:
    name = f"bench_feedback_{uuid.uuid4().hex[:8]}"
    async with scratch_database(base, name) as url:
        pool = await create_pool(url)
        try:
            await migrate(pool, SERVICE, MIGRATIONS)
            results = []
            for n in range(runs):
                say(f"run {n + 1}/{runs}: {events} events")
                results.append(await _one_run(pool, events))
        finally:
            await pool.close()
    return results


def main(events: int, runs: int) -> int:
    with infrastructure() as endpoints:
        results = asyncio.run(measure(endpoints.database_url, events, runs))
    print(f"{'run':>4} {'anchor/s':>10} {'decide/s':>10} {'send/s':>10} {'decide/anchor':>14}")
    for n, (anchor, decide, send) in enumerate(results, 1):
        print(f"{n:>4} {anchor:>10.0f} {decide:>10.0f} {send:>10.0f} {decide / anchor:>14.2f}")
    ratios = [decide / anchor for anchor, decide, _ in results]
    print(f"median decide/anchor: {statistics.median(ratios):.2f}")
    print_summary(
        "feedback_decisions",
        {
            "events": events,
            "runs": [
                {
                    "anchor_per_s": round(a, 1),
                    "decide_per_s": round(d, 1),
                    "send_per_s": round(x, 1),
                }
                for a, d, x in results
            ],
            "median_decide_over_anchor": round(statistics.median(ratios), 3),
        },
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.feedback_decisions", description=__doc__)
    parser.add_argument("--events", type=int, default=5000, help="resolutions per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.exit(main(args.events, args.runs))
