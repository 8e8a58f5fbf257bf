"""Feedback's decision and sending rates on the real PostgreSQL, beside a plain anchor.

Three phases over N resolved contacts (distinct customers, each with a contact route),
in batches of 500 events per transaction, as the consumer hands them over:

- anchor: per event, the processed-event record plus one plain INSERT, in one
  transaction per batch. The floor for any idempotent consumer on this database.
- decide: `FeedbackHandler.handle` (processed-event records, customer locks, opt-out,
  route, case and quiet-period look-ups, request rows, send timers), set-based: a
  fixed number of statements per batch. Beside it, on its own events in the same run,
  `per_event`: the path it replaced, every look-up and write per event.
- send: `TimerScheduler.fire_due` after the delay: each request's SatisfactionRequested
  and Notify message into the outbox, a signed link, an expiry timer; batched
  (`FeedbackHandler.fire_many`) and per timer (a savepoint each, the fallback).

Kafka is not involved (the outbox is not relayed), so the figures are the database
work per event. Uses `CIVICPULSE_DATABASE_URL` (with `CIVICPULSE_KAFKA_BOOTSTRAP`) when
set, else starts a throwaway stack; either way it works in a scratch database:

    python -m bench.feedback_decisions --events 5000 --runs 3
"""

import argparse
import asyncio
import os
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
from services.feedback.handlers import (
    FeedbackHandler,
    FeedbackMetrics,
    NotifyTemplates,
    _Outcomes,
    policy_of,
)
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


async def _decide_per_event(
    handler: FeedbackHandler, store: FeedbackStore, batch: Sequence[Event]
) -> None:
    """The path batches replaced: per event its processed record and every look-up."""
    outcomes = _Outcomes()
    async with store.transaction() as bound:
        for event in batch:
            assert isinstance(event, ContactResolved)
            if await bound.first_time(event.event_id):
                await handler.survey_contact(bound, event, outcomes)


Figures = dict[str, float]


async def _one_run(pool: asyncpg.Pool, count: int, batched_first: bool) -> Figures:
    """Both ways on their own events, in one run; which goes first alternates by run."""
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
    ways = ["batched", "per_event"] if batched_first else ["per_event", "batched"]
    # Each way's resolutions an hour apart, so its send timers fall due on their own.
    resolved = {way: now + timedelta(hours=n) for n, way in enumerate(ways)}
    events = {way: _events(f"{run}{way[0]}", count, resolved[way]) for way in ways}
    async with store.transaction() as routes:
        for event in events["batched"] + events["per_event"]:
            assert isinstance(event, ContactResolved)
            assert event.payload.customer_ref is not None
            await routes.put_contact_route(
                event.payload.customer_ref, ContactRoute(email="r@example.org"), now
            )
    figures: Figures = {"anchor": await _anchor(pool, _events(run + "a", count, now))}

    for way in ways:
        started = time.perf_counter()
        for batch in _batches(events[way]):
            if way == "batched":
                await handler.handle(batch)
            else:
                await _decide_per_event(handler, store, batch)
        figures[f"decide_{way}"] = count / (time.perf_counter() - started)

    for way in ways:
        clock[0] = resolved[way] + POLICY_DELAY + timedelta(minutes=1)
        batch_fire = handler.fire_many if way == "batched" else None
        scheduler = TimerScheduler(
            pool, SERVICE, handler.fire, clock=lambda: clock[0], fire_batch=batch_fire
        )
        started = time.perf_counter()
        fired = await scheduler.fire_due()
        figures[f"send_{way}"] = fired / (time.perf_counter() - started)
        assert fired == count, f"{way}: fired {fired} of {count}"
    await pool.execute("DELETE FROM outbox WHERE service = $1", SERVICE)
    return figures


async def measure(base: str, events: int, runs: int) -> list[Figures]:
    name = f"bench_feedback_{uuid.uuid4().hex[:8]}"
    async with scratch_database(base, name) as url:
        pool = await create_pool(url)
        try:
            await migrate(pool, SERVICE, MIGRATIONS)
            results = []
            for n in range(runs):
                say(f"run {n + 1}/{runs}: {events} events each way")
                results.append(await _one_run(pool, events, batched_first=n % 2 == 0))
        finally:
            await pool.close()
    return results


COLUMNS = ["anchor", "decide_batched", "decide_per_event", "send_batched", "send_per_event"]


def main(events: int, runs: int) -> int:
    load_before = os.getloadavg()
    with infrastructure() as endpoints:
        results = asyncio.run(measure(endpoints.database_url, events, runs))
    load_after = os.getloadavg()
    print(f"{'run':>4} " + " ".join(f"{c + '/s':>17}" for c in COLUMNS))
    for n, figures in enumerate(results, 1):
        print(f"{n:>4} " + " ".join(f"{figures[c]:>17.0f}" for c in COLUMNS))

    def median(top: str, bottom: str) -> float:
        return statistics.median(r[top] / r[bottom] for r in results)

    ratios = {
        "decide_batched_over_anchor": median("decide_batched", "anchor"),
        "decide_batched_over_per_event": median("decide_batched", "decide_per_event"),
        "send_batched_over_per_timer": median("send_batched", "send_per_event"),
    }
    for ratio_name, ratio in ratios.items():
        print(f"median {ratio_name}: {ratio:.2f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print_summary(
        "feedback_decisions",
        {
            "events": events,
            "runs": [
                {
                    "anchor_per_s": round(r["anchor"], 1),
                    "decide_per_s": round(r["decide_batched"], 1),
                    "decide_per_event_per_s": round(r["decide_per_event"], 1),
                    "send_per_s": round(r["send_batched"], 1),
                    "send_per_timer_per_s": round(r["send_per_event"], 1),
                }
                for r in results
            ],
            "median_decide_over_anchor": round(ratios["decide_batched_over_anchor"], 3),
            "median_decide_batched_over_per_event": round(
                ratios["decide_batched_over_per_event"], 3
            ),
            "median_send_batched_over_per_timer": round(ratios["send_batched_over_per_timer"], 3),
            "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        },
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.feedback_decisions", description=__doc__)
    parser.add_argument("--events", type=int, default=5000, help="resolutions per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 resolutions, 2 runs")
    args = parser.parse_args()
    sys.exit(main(*((1000, 2) if args.quick else (args.events, args.runs))))
