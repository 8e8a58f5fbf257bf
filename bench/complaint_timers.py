"""Finding and firing due complaint deadlines costs what is due, not what is open.

One scratch PostgreSQL database holds the complaints service's tables. 1,000
complaints have an overdue acknowledgement (real complaint rows and timers,
made by the service's own domain and store); beside them sit N pending timers
that are not due yet (loaded with COPY). The timed step is the service's real
pass, `TimerScheduler.fire_due(now)` with the complaints handler as callback:
claim the due rows (`FOR UPDATE SKIP LOCKED`), record each breach, write the
`ComplaintDeadlineBreached` events to the outbox, mark the timers fired.

Two ways fire, alternated within each run: `batched`, the service's scheduler
(each claimed batch loaded and written with one statement per table,
`ComplaintsHandler.fire_timers`), and `per_timer`, a savepoint and the handler
per timer (what it replaced, still its fallback when a batch fails).

It runs with N = 10,000 and then, in the same database, N = 1,000,000, and
prints both times and their ratio (target: under 2), plus the plan of the
claim query, which should read the partial index `timers_pending_due` and
touch only the due rows.

    python -m bench.complaint_timers            # about a minute on 2 cores
    python -m bench.complaint_timers --runs 5 --large 2000000

Uses `CIVICPULSE_KAFKA_BOOTSTRAP` and `CIVICPULSE_DATABASE_URL` if both are set
(only PostgreSQL is used), else starts a throwaway stack. The scratch database
is dropped at the end.
"""

import argparse
import asyncio
import json
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
from services.complaints.actions import OpenComplaint
from services.complaints.domain import Complaint, Context, Decision, decide
from services.complaints.handlers import ComplaintsHandler, ComplaintsMetrics
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE
from services.complaints.store import MIGRATIONS, ComplaintsStore
from services.complaints.working_days import WorkingDayCalendar
from shared.events.vocabulary import Channel
from shared.postgres import create_pool, migrate
from shared.timers import TimerScheduler

TARGET_RATIO = 2.0
DUE = 1000
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
RECEIVED_AT = datetime(2026, 2, 2, 10, tzinfo=UTC)  # acknowledgement due 9 Feb: overdue at NOW
COPY_CHUNK = 100_000
# The claim query of `shared.timers.TimerScheduler._fire_batch`, for EXPLAIN.
CLAIM_QUERY = """
SELECT timer_id, kind, subject, due_at, payload FROM timers
WHERE service = $1 AND due_at <= $2 AND fired_at IS NULL AND cancelled_at IS NULL
ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.complaint_timers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--small", type=int, default=10_000, help="open timers, first size")
    parser.add_argument("--large", type=int, default=1_000_000, help="open timers, second size")
    parser.add_argument(
        "--runs", type=int, default=3, help="timed passes per size and way (median)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="10,000 and 100,000 open timers, 2 runs"
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.large, options.runs = 100_000, 2
    return options


def due_complaints() -> list[Complaint]:
    context = Context(WorkingDayCalendar(), Policy(), recorded_at=NOW)
    complaints = []
    for n in range(DUE):
        open_action = OpenComplaint(
            action="open",
            action_id="open",
            complaint_id=f"DUE-{n:05d}",
            source="bench",
            occurred_at=RECEIVED_AT,
            service_area="waste",
            channel=Channel.WEB,
        )
        opened = decide(None, open_action, context)
        assert isinstance(opened, Decision)
        complaints.append(opened.complaint)
    return complaints


async def load_due(pool: asyncpg.Pool, complaints: Sequence[Complaint]) -> None:
    """(Re)set the due complaints as just opened, their timers pending, the outbox empty."""
    store = ComplaintsStore(pool)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "DELETE FROM timers WHERE service = $1 AND subject LIKE 'DUE-%'", SERVICE
        )
        await connection.execute("DELETE FROM outbox WHERE service = $1", SERVICE)
        for complaint in complaints:
            await store.save(connection, complaint)
            await store.sync_timers(connection, None, complaint)


async def load_open(pool: asyncpg.Pool, start: int, stop: int) -> None:
    """Pending timers of open complaints, due over the next 30 days (none due at NOW)."""
    for chunk in range(start, stop, COPY_CHUNK):
        rows = [
            (
                SERVICE,
                f"OPEN-{n:08d}/1:acknowledge",
                "acknowledge",
                f"OPEN-{n:08d}",
                NOW + timedelta(days=1 + n % 30, minutes=n % 1440),
                json.dumps({"stage": 1, "due_date": "2026-03-03"}),
            )
            for n in range(chunk, min(chunk + COPY_CHUNK, stop))
        ]
        async with pool.acquire() as connection:
            await connection.copy_records_to_table(
                "timers",
                records=rows,
                columns=["service", "timer_id", "kind", "subject", "due_at", "payload"],
            )
        say(f"  loaded {min(chunk + COPY_CHUNK, stop):,} / {stop:,} open timers")
    await pool.execute("ANALYZE timers")


async def explain(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            rows = await connection.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + CLAIM_QUERY, SERVICE, NOW, 200
            )
        finally:
            await transaction.rollback()
    return "\n".join(row[0] for row in rows)


async def time_firing(
    pool: asyncpg.Pool,
    schedulers: dict[str, TimerScheduler],
    complaints: Sequence[Complaint],
    runs: int,
) -> dict[str, float]:
    """Median seconds per way; the ways alternate within each run, first one then the other."""
    times: dict[str, list[float]] = {way: [] for way in schedulers}
    for run in range(runs):
        ways = list(schedulers) if run % 2 == 0 else list(reversed(schedulers))
        for way in ways:
            await load_due(pool, complaints)
            started = time.perf_counter()
            fired = await schedulers[way].fire_due(NOW)
            times[way].append(time.perf_counter() - started)
            breaches = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE service = $1", SERVICE
            )
            if (fired, breaches) != (DUE, DUE):
                raise RuntimeError(
                    f"{way}: fired {fired} timers and wrote {breaches} events, wanted {DUE}"
                )
            say(f"  run {run + 1} {way}: fired {fired} due deadlines in {times[way][-1]:.3f} s")
    return {way: statistics.median(seconds) for way, seconds in times.items()}


async def main_async(options: argparse.Namespace) -> int:
    with infrastructure() as endpoints:
        name = f"bench_timers_{uuid.uuid4().hex[:8]}"
        async with scratch_database(endpoints.database_url, name) as url:
            pool = await create_pool(url)
            try:
                await migrate(pool, SERVICE, MIGRATIONS)
                handler = ComplaintsHandler(
                    store=ComplaintsStore(pool),
                    calendar=WorkingDayCalendar(),
                    policy=Policy(),
                    metrics=ComplaintsMetrics(CollectorRegistry()),
                    clock=lambda: NOW,
                )
                # batched: the service's scheduler (one load and one write per table for
                # each claimed batch); per_timer: the savepoint-per-timer path it replaced,
                # still its fallback.
                schedulers = {
                    "batched": TimerScheduler(
                        pool,
                        SERVICE,
                        handler.fire_timer,
                        clock=lambda: NOW,
                        fire_batch=handler.fire_timers,
                    ),
                    "per_timer": TimerScheduler(
                        pool, SERVICE, handler.fire_timer, clock=lambda: NOW
                    ),
                }
                complaints = due_complaints()
                results = {}
                loaded = 0
                for size in (options.small, options.large):
                    say(f"{size:,} open timers beside {DUE:,} due ones")
                    await load_open(pool, loaded, size)
                    loaded = size
                    await load_due(pool, complaints)
                    plan = await explain(pool)
                    results[size] = await time_firing(pool, schedulers, complaints, options.runs)
            finally:
                await pool.close()
    small, large = results[options.small]["batched"], results[options.large]["batched"]
    ratio = large / small
    print(f"\nclaim query plan with {options.large:,} open timers:\n{plan}\n")
    print(
        f"{'open timers':>12}  {'way':>10}  {'fire 1,000 due (median s)':>26}  {'deadlines/s':>12}"
    )
    for size, ways in results.items():
        for way, seconds in ways.items():
            print(f"{size:>12,}  {way:>10}  {seconds:>26.3f}  {DUE / seconds:>12,.0f}")
    verdict = "meets" if ratio < TARGET_RATIO else "MISSES"
    print(
        f"\nratio {options.large:,} / {options.small:,} (batched): {ratio:.2f} "
        f"({verdict} the target of under {TARGET_RATIO})"
    )
    speedups = {size: ways["per_timer"] / ways["batched"] for size, ways in results.items()}
    for size, speedup in speedups.items():
        print(f"batched / per_timer speed with {size:,} open: {speedup:.2f}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f}")
    print_summary(
        "complaint_timers",
        {
            "fire_due_seconds": {str(size): round(w["batched"], 4) for size, w in results.items()},
            "fire_due_seconds_per_timer": {
                str(size): round(w["per_timer"], 4) for size, w in results.items()
            },
            "batched_speedup": {str(size): round(x, 2) for size, x in speedups.items()},
            "ratio": round(ratio, 3),
            "target_ratio_below": TARGET_RATIO,
            "load_average": round(load[0], 2),
        },
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
