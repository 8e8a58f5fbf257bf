"""Complaints intake on the real PostgreSQL: set-based batches, the per-action path, a plain peer.

N complaint contacts (`ContactReceived`, kind complaint) open N complaints, then N
acknowledgements arrive on the actions topic, in batches of 500 as the consumer hands
them over (one transaction per batch). Three ways, alternated in one run:

- batched: the service's consumer path, `ComplaintsHandler.handle_contact_events` and
  `handle_actions`: one statement per table per batch (processed inputs, complaints
  loaded and locked at once, complaints, timers, outbox).
- per-action: the path batches replaced, still the HTTP API's: a savepoint per
  input, its processed record, a locked load, the save, its timers and its outbox rows.
- plain: written here with asyncpg alone, the floor for the same rows: per batch the
  processed ids, the complaint rows (a JSON state per complaint), their timers and one
  outbox row each, every table in one `unnest` statement; no domain rules.

Kafka is not involved (the outbox is not relayed), so the figures are the database
work per input. Uses `CIVICPULSE_DATABASE_URL` (with `CIVICPULSE_KAFKA_BOOTSTRAP`)
when both are set, else starts a throwaway stack; either way in a scratch database:

    python -m bench.complaints_throughput --contacts 5000 --runs 3
    python -m bench.complaints_throughput --quick
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
from typing import TypeVar

import asyncpg
from prometheus_client import CollectorRegistry

from bench.support import infrastructure, print_summary, say
from civicpulse.infra import scratch_database
from services.complaints.actions import AcknowledgeComplaint, Action
from services.complaints.domain import action_key, complaint_id_for_contact, open_action_for
from services.complaints.handlers import ComplaintsHandler, ComplaintsMetrics
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE
from services.complaints.store import MIGRATIONS, ComplaintsStore
from services.complaints.working_days import WorkingDayCalendar
from shared.events import ContactReceived, ContactReceivedPayload
from shared.events.vocabulary import Channel, ContactKind
from shared.postgres import create_pool, migrate

BATCH = 500
T = TypeVar("T")
WAYS = ("batched", "per_action", "plain")


def _contacts(run: str, count: int, at: datetime) -> list[ContactReceived]:
    return [
        ContactReceived(
            contact_id=f"bench-{run}-{n}",
            occurred_at=at,
            source="bench",
            payload=ContactReceivedPayload(
                channel=Channel.WEB,
                service_area="waste",
                kind=ContactKind.COMPLAINT,
                customer_ref=f"B{run}-{n}",
            ),
        )
        for n in range(count)
    ]


def _acknowledgements(contacts: Sequence[ContactReceived], at: datetime) -> list[Action]:
    return [
        AcknowledgeComplaint(
            action="acknowledge",
            action_id="ack",
            complaint_id=complaint_id_for_contact(c.contact_id),
            source="bench",
            occurred_at=at,
        )
        for c in contacts
    ]


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


async def _batched(
    handler: ComplaintsHandler, contacts: Sequence[ContactReceived], acks: Sequence[Action]
) -> tuple[float, float]:
    started = time.perf_counter()
    for batch in _batches(contacts):
        await handler.handle_contact_events(batch)
    opened = time.perf_counter()
    for actions in _batches(acks):
        faults = await handler.handle_actions(actions)
        if any(faults):
            raise RuntimeError(f"acknowledgements refused: {faults[:3]}")
    done = time.perf_counter()
    return len(contacts) / (opened - started), len(acks) / (done - opened)


async def _per_action(
    pool: asyncpg.Pool,
    handler: ComplaintsHandler,
    contacts: Sequence[ContactReceived],
    acks: Sequence[Action],
) -> tuple[float, float]:
    """The previous batch path: one transaction per batch, a savepoint per input."""
    started = time.perf_counter()
    for batch in _batches(contacts):
        async with pool.acquire() as connection, connection.transaction():
            for contact in batch:
                opening = open_action_for(contact)
                assert opening is not None
                await handler._apply_in(connection, opening, contact.event_id)
    opened = time.perf_counter()
    for actions in _batches(acks):
        async with pool.acquire() as connection, connection.transaction():
            for item in actions:
                await handler._apply_in(connection, item, action_key(item))
    done = time.perf_counter()
    return len(contacts) / (opened - started), len(acks) / (done - opened)


async def _plain(
    pool: asyncpg.Pool, contacts: Sequence[ContactReceived], timers_each: int
) -> float:
    """The same rows for the openings, by asyncpg alone: one statement per table per batch."""
    started = time.perf_counter()
    for batch in _batches(contacts):
        ids = [f"PLAIN-{c.contact_id}" for c in batch]
        states = [
            json.dumps({"complaint_id": i, "status": "received", "stage": 1, "history": []})
            for i in ids
        ]
        async with pool.acquire() as connection, connection.transaction():
            fresh = await connection.fetch(
                """
                INSERT INTO processed_events (service, event_id)
                SELECT 'bench-plain', unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id
                """,
                [c.event_id for c in batch],
            )
            assert len(fresh) == len(batch)
            await connection.execute(
                """
                INSERT INTO complaints (complaint_id, procedure, statutory, service_area, channel,
                                        stage, status, state, received_at)
                SELECT i, 'corporate', false, 'waste', 'web', 1, 'received', s, $3
                FROM unnest($1::text[], $2::jsonb[]) AS r(i, s)
                ON CONFLICT (complaint_id) DO UPDATE SET state = EXCLUDED.state
                """,
                ids,
                states,
                batch[0].occurred_at,
            )
            timer_ids = [f"{i}/{n}" for i in ids for n in range(timers_each)]
            await connection.execute(
                """
                INSERT INTO timers (service, timer_id, kind, subject, due_at, payload)
                SELECT 'bench-plain', t, 'acknowledge', split_part(t, '/', 1), $2, '{}'
                FROM unnest($1::text[]) AS t
                ON CONFLICT DO NOTHING
                """,
                timer_ids,
                batch[0].occurred_at + timedelta(days=7),
            )
            await connection.execute(
                """
                INSERT INTO outbox (service, topic, key, value)
                SELECT 'bench-plain', 'civicpulse.complaints', convert_to(i, 'UTF8'),
                       convert_to(s::text, 'UTF8')
                FROM unnest($1::text[], $2::jsonb[]) AS r(i, s)
                """,
                ids,
                states,
            )
    return len(contacts) / (time.perf_counter() - started)


async def _one_run(pool: asyncpg.Pool, count: int, order: Sequence[str]) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    handler = ComplaintsHandler(
        store=ComplaintsStore(pool),
        calendar=WorkingDayCalendar(),
        policy=Policy(),
        metrics=ComplaintsMetrics(CollectorRegistry()),
        clock=lambda: now,
    )
    figures: dict[str, float] = {}
    for way in order:
        contacts = _contacts(f"{run}{way[0]}", count, now)
        acks = _acknowledgements(contacts, now + timedelta(hours=1))
        if way == "batched":
            figures["batched_open_per_s"], figures["batched_ack_per_s"] = await _batched(
                handler, contacts, acks
            )
        elif way == "per_action":
            opened, acked = await _per_action(pool, handler, contacts, acks)
            figures["per_action_open_per_s"], figures["per_action_ack_per_s"] = opened, acked
        else:
            timers_each = await pool.fetchval(
                "SELECT count(*)::float / greatest(count(DISTINCT subject), 1) FROM timers"
                " WHERE service = $1",
                SERVICE,
            )
            figures["plain_open_per_s"] = await _plain(pool, contacts, round(timers_each or 1))
        say(f"  {way}: done")
    await pool.execute("DELETE FROM outbox WHERE service IN ($1, 'bench-plain')", SERVICE)
    return figures


async def measure(base: str, count: int, runs: int) -> list[dict[str, float]]:
    name = f"bench_complaints_{uuid.uuid4().hex[:8]}"
    async with scratch_database(base, name) as url:
        pool = await create_pool(url)
        try:
            await migrate(pool, SERVICE, MIGRATIONS)
            results = []
            for n in range(runs):
                # Alternate which way goes first, so a warming cache favours none.
                order = WAYS if n % 2 == 0 else tuple(reversed(WAYS))
                say(f"run {n + 1}/{runs}: {count} contacts, then {count} acknowledgements")
                results.append(await _one_run(pool, count, order))
        finally:
            await pool.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.complaints_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--contacts", type=int, default=5000, help="complaint contacts per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (their medians are compared)")
    parser.add_argument("--quick", action="store_true", help="1,000 contacts, 2 runs")
    args = parser.parse_args(argv)
    count, runs = (1000, 2) if args.quick else (args.contacts, args.runs)
    load_before = os.getloadavg()
    with infrastructure() as endpoints:
        results = asyncio.run(measure(endpoints.database_url, count, runs))
    load_after = os.getloadavg()
    keys = [
        "batched_open_per_s",
        "per_action_open_per_s",
        "plain_open_per_s",
        "batched_ack_per_s",
        "per_action_ack_per_s",
    ]
    print(f"{'run':>4} " + " ".join(f"{k.removesuffix('_per_s'):>18}" for k in keys))
    for n, figures in enumerate(results, 1):
        print(f"{n:>4} " + " ".join(f"{figures[k]:>18.0f}" for k in keys))
    median = {k: statistics.median(r[k] for r in results) for k in keys}
    ratios = {
        "open_batched_over_plain": median["batched_open_per_s"] / median["plain_open_per_s"],
        "open_batched_over_per_action": median["batched_open_per_s"]
        / median["per_action_open_per_s"],
        "ack_batched_over_per_action": median["batched_ack_per_s"] / median["per_action_ack_per_s"],
    }
    for name, ratio in ratios.items():
        print(f"median {name}: {ratio:.2f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print_summary(
        "complaints_throughput",
        {
            "contacts": count,
            "batch": BATCH,
            "runs": [{k: round(v, 1) for k, v in r.items()} for r in results],
            **{f"median_{k}": round(v, 3) for k, v in ratios.items()},
            "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
