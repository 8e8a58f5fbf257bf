"""The metrics service's PostgreSQL state: SQL in plain sight.

Writes take the connection of the caller's transaction and a generation;
reads take the pool and read the current generation unless told otherwise.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg

from services.metrics.measures import Cell
from shared.postgres import Connection

MIGRATIONS = Path(__file__).with_name("migrations")
GENERATION_TABLES = (
    "metrics_aggregates",
    "metrics_monthly",
    "metrics_contact_facts",
    "metrics_complaint_facts",
    "metrics_complaint_outcomes",
    "metrics_surges",
    "metrics_topic_progress",
)


def processed_service(generation: int) -> str:
    """Each generation deduplicates events on its own, so a replay applies each once more."""
    return f"metrics@g{generation}"


# -- generations ------------------------------------------------------------------------


async def live_generation(connection: Connection, *, lock: bool = False) -> int:
    """The generation readers use; `lock` holds a switch off until the transaction ends."""
    sql = "SELECT generation FROM metrics_current" + (" FOR SHARE" if lock else "")
    generation: int = await connection.fetchval(sql)
    return generation


async def start_generation(pool: asyncpg.Pool) -> int:
    """A new generation to rebuild into; unfinished rebuilds are discarded first."""
    async with pool.acquire() as connection, connection.transaction():
        abandoned = await connection.fetch(
            "DELETE FROM metrics_generations WHERE state = 'building' RETURNING generation"
        )
        for row in abandoned:
            await drop_generation_rows(connection, row["generation"])
        generation: int = await connection.fetchval(
            """
            INSERT INTO metrics_generations (generation, state)
            SELECT max(generation) + 1, 'building' FROM metrics_generations
            RETURNING generation
            """
        )
    return generation


async def switch_generation(pool: asyncpg.Pool, generation: int) -> int:
    """Make `generation` live; returns the one it replaced. Waits for live batches in hand."""
    async with pool.acquire() as connection, connection.transaction():
        previous: int = await connection.fetchval(
            "SELECT generation FROM metrics_current FOR UPDATE"
        )
        await connection.execute("UPDATE metrics_current SET generation = $1", generation)
        await connection.execute(
            "UPDATE metrics_generations SET state = 'live', switched_at = now()"
            " WHERE generation = $1",
            generation,
        )
        await connection.execute(
            "UPDATE metrics_generations SET state = 'retired' WHERE generation = $1", previous
        )
    return previous


async def drop_retired_before(pool: asyncpg.Pool, generation: int) -> list[int]:
    """Delete retired generations older than `generation` (the one before stays for a look)."""
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(
            "DELETE FROM metrics_generations WHERE state = 'retired' AND generation < $1"
            " RETURNING generation",
            generation,
        )
        for row in rows:
            await drop_generation_rows(connection, row["generation"])
    return [row["generation"] for row in rows]


async def drop_generation_rows(connection: Connection, generation: int) -> None:
    for table in GENERATION_TABLES:
        await connection.execute(f"DELETE FROM {table} WHERE generation = $1", generation)
    await connection.execute(
        "DELETE FROM processed_events WHERE service = $1", processed_service(generation)
    )


# -- writes ---------------------------------------------------------------------------


async def add_to_aggregates(
    connection: Connection, generation: int, totals: Mapping[tuple[Cell, str], float]
) -> None:
    """Add to the daily counters and to their monthly sums (same transaction)."""
    if not totals:
        return
    monthly: dict[tuple[date, str, str, str], float] = {}
    for (cell, measure), value in totals.items():
        key = (cell.day.replace(day=1), measure, cell.service_area, cell.channel)
        monthly[key] = monthly.get(key, 0.0) + value
    daily = [
        (cell.day, measure, cell.service_area, cell.channel, value)
        for (cell, measure), value in totals.items()
    ]
    for table, period, rows in (
        ("metrics_aggregates", "day", daily),
        ("metrics_monthly", "month", [(*key, value) for key, value in monthly.items()]),
    ):
        await connection.execute(
            f"""
            INSERT INTO {table} AS a (generation, {period}, measure, service_area, channel, value)
            SELECT $1, * FROM unnest($2::date[], $3::text[], $4::text[], $5::text[], $6::float8[])
            ON CONFLICT (generation, {period}, measure, service_area, channel)
            DO UPDATE SET value = a.value + excluded.value
            """,
            generation,
            *(list(column) for column in zip(*rows, strict=True)),
        )


@dataclass(frozen=True, slots=True)
class ContactFact:
    contact_id: str
    customer_ref: str | None
    service_area: str
    channel: str
    occurred_at: datetime
    day: date
    candidate: bool
    transfers: int


async def record_contacts(
    connection: Connection, generation: int, facts: Sequence[ContactFact]
) -> None:
    if not facts:
        return
    await connection.execute(
        """
        INSERT INTO metrics_contact_facts
            (generation, contact_id, customer_ref, service_area, channel, occurred_at, day,
             candidate, transfers)
        SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::timestamptz[], $7::date[], $8::bool[], $9::int[])
        ON CONFLICT (generation, contact_id) DO NOTHING
        """,
        generation,
        [f.contact_id for f in facts],
        [f.customer_ref for f in facts],
        [f.service_area for f in facts],
        [f.channel for f in facts],
        [f.occurred_at for f in facts],
        [f.day for f in facts],
        [f.candidate for f in facts],
        [f.transfers for f in facts],
    )


async def lock_customers(connection: Connection, keys: Iterable[str]) -> None:
    """Serialise re-contact checks per customer and area across replicas (sorted: no deadlock)."""
    ordered = sorted(set(keys))
    if ordered:
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('metrics:' || k, 0))"
            " FROM unnest($1::text[]) AS k ORDER BY k",
            ordered,
        )


async def mark_recontacted(
    connection: Connection,
    generation: int,
    pairs: Sequence[tuple[str, str]],
    window: timedelta,
) -> list[Cell]:
    """Candidates of these (customer, area) pairs with a later contact within the window.

    Marks each lost once and returns its cell. Looking both ways (an earlier
    candidate re-contacted now, or a candidate whose re-contact was consumed
    first) makes the result independent of the order events arrive in.
    """
    if not pairs:
        return []
    rows = await connection.fetch(
        """
        UPDATE metrics_contact_facts c SET lost = true
        FROM (
            SELECT f.contact_id
            FROM unnest($2::text[], $3::text[]) AS p(customer_ref, service_area)
            CROSS JOIN LATERAL (
                -- OFFSET 0 and LIMIT 1 keep both lookups per pair on the index:
                -- flattened into joins, a table without fresh statistics is
                -- scanned whole for every batch.
                SELECT contact_id, customer_ref, service_area, occurred_at
                FROM metrics_contact_facts
                WHERE generation = $1
                  AND customer_ref = p.customer_ref AND service_area = p.service_area
                  AND candidate AND NOT lost
                OFFSET 0
            ) AS f
            CROSS JOIN LATERAL (
                SELECT 1 FROM metrics_contact_facts later
                WHERE later.generation = $1
                  AND later.customer_ref = f.customer_ref
                  AND later.service_area = f.service_area
                  AND later.occurred_at > f.occurred_at
                  AND later.occurred_at <= f.occurred_at + $4::interval
                LIMIT 1
            ) AS recontact
        ) AS hit
        WHERE c.generation = $1 AND c.contact_id = hit.contact_id
        RETURNING c.day, c.service_area, c.channel
        """,
        generation,
        [customer for customer, _ in pairs],
        [area for _, area in pairs],
        window,
    )
    return [Cell(row["day"], row["service_area"], row["channel"]) for row in rows]


@dataclass(frozen=True, slots=True)
class TransferredContact:
    cell: Cell
    first_transfer: bool
    fcr_lost_now: bool


async def record_transfer(
    connection: Connection, generation: int, contact_id: str
) -> TransferredContact | None:
    """Count one more transfer of a known contact; None if the contact was never received."""
    row = await connection.fetchrow(
        """
        WITH old AS (
            SELECT contact_id, transfers, candidate, lost FROM metrics_contact_facts
            WHERE generation = $1 AND contact_id = $2 FOR UPDATE
        )
        UPDATE metrics_contact_facts c
        SET transfers = c.transfers + 1, lost = c.lost OR c.candidate
        FROM old
        WHERE c.generation = $1 AND c.contact_id = old.contact_id
        RETURNING c.day, c.service_area, c.channel, old.transfers AS before,
                  (old.candidate AND NOT old.lost) AS fcr_lost_now
        """,
        generation,
        contact_id,
    )
    if row is None:
        return None
    return TransferredContact(
        Cell(row["day"], row["service_area"], row["channel"]),
        first_transfer=row["before"] == 0,
        fcr_lost_now=row["fcr_lost_now"],
    )


async def record_complaint_opened(
    connection: Connection,
    generation: int,
    complaint_id: str,
    *,
    service_area: str,
    channel: str,
    scope: str,
) -> None:
    await connection.execute(
        """
        INSERT INTO metrics_complaint_facts
            (generation, complaint_id, service_area, channel, scope, stage, open)
        VALUES ($1, $2, $3, $4, $5, 1, true)
        ON CONFLICT (generation, complaint_id) DO NOTHING
        """,
        generation,
        complaint_id,
        service_area,
        channel,
        scope,
    )


async def complaint_channels(
    connection: Connection, generation: int, complaint_ids: Sequence[str]
) -> dict[str, str]:
    rows = await connection.fetch(
        "SELECT complaint_id, channel FROM metrics_complaint_facts"
        " WHERE generation = $1 AND complaint_id = ANY($2::text[])",
        generation,
        list(complaint_ids),
    )
    return {row["complaint_id"]: row["channel"] for row in rows}


async def update_complaint(
    connection: Connection,
    generation: int,
    complaint_id: str,
    *,
    stage: int | None = None,
    open_: bool | None = None,
) -> None:
    await connection.execute(
        """
        UPDATE metrics_complaint_facts
        SET stage = coalesce($3, stage), open = coalesce($4, open)
        WHERE generation = $1 AND complaint_id = $2
        """,
        generation,
        complaint_id,
        stage,
        open_,
    )


async def record_outcome(
    connection: Connection,
    generation: int,
    complaint_id: str,
    stage: int,
    deadline: str,
    *,
    on_time: bool,
) -> bool:
    """Record a deadline's first outcome; False if it already had one."""
    inserted = await connection.fetchval(
        """
        INSERT INTO metrics_complaint_outcomes (generation, complaint_id, stage, deadline, on_time)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING
        RETURNING true
        """,
        generation,
        complaint_id,
        stage,
        deadline,
        on_time,
    )
    return bool(inserted)


@dataclass(frozen=True, slots=True)
class TopicProgress:
    topic: str
    events: int
    last_occurred_at: datetime
    last_recorded_at: datetime


async def record_progress(
    connection: Connection, generation: int, progress: Sequence[TopicProgress]
) -> None:
    if not progress:
        return
    await connection.execute(
        """
        INSERT INTO metrics_topic_progress AS p
            (generation, topic, events, last_occurred_at, last_recorded_at, last_applied_at)
        SELECT $1, t, e, o, r, now()
        FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[]) AS x(t, e, o, r)
        ON CONFLICT (generation, topic) DO UPDATE SET
            events = p.events + excluded.events,
            last_occurred_at = greatest(p.last_occurred_at, excluded.last_occurred_at),
            last_recorded_at = greatest(p.last_recorded_at, excluded.last_recorded_at),
            last_applied_at = now()
        """,
        generation,
        [p.topic for p in progress],
        [p.events for p in progress],
        [p.last_occurred_at for p in progress],
        [p.last_recorded_at for p in progress],
    )


# -- surges ---------------------------------------------------------------------------


async def daily_counts(
    connection: Connection,
    generation: int,
    measures: Sequence[str],
    areas: Sequence[str],
    first: date,
    last: date,
) -> dict[tuple[str, str, date], float]:
    rows = await connection.fetch(
        """
        SELECT service_area, measure, day, sum(value) AS value FROM metrics_aggregates
        WHERE generation = $1 AND measure = ANY($2::text[]) AND service_area = ANY($3::text[])
          AND day BETWEEN $4 AND $5
        GROUP BY service_area, measure, day
        """,
        generation,
        list(measures),
        list(areas),
        first,
        last,
    )
    return {(row["service_area"], row["measure"], row["day"]): row["value"] for row in rows}


async def surge_ids(
    connection: Connection, generation: int, keys: Sequence[tuple[str, str, date]]
) -> dict[tuple[str, str, date], str]:
    """The surge ids recorded on these (area, measure, day)s."""
    rows = await connection.fetch(
        """
        SELECT s.service_area, s.measure, s.day, s.surge_id FROM metrics_surges s
        JOIN unnest($2::text[], $3::text[], $4::date[]) AS k(service_area, measure, day)
          USING (service_area, measure, day)
        WHERE s.generation = $1
        """,
        generation,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    return {(row["service_area"], row["measure"], row["day"]): row["surge_id"] for row in rows}


async def record_surge(
    connection: Connection,
    generation: int,
    key: tuple[str, str, date],
    surge_id: str,
    *,
    count: float,
    baseline: float,
    threshold: float,
) -> None:
    await connection.execute(
        """
        INSERT INTO metrics_surges
            (generation, service_area, measure, day, surge_id, count, baseline, threshold)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT DO NOTHING
        """,
        generation,
        *key,
        surge_id,
        count,
        baseline,
        threshold,
    )
