"""What a batch of events writes: counters, facts, topic progress. SQL in plain sight.

Every write takes the generation it fills and runs in the caller's transaction
(`MetricsStore.transaction()`), with the batch's processed-event records.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from services.metrics.domain.measures import Cell
from services.metrics.settings import SERVICE
from services.metrics.store.base import StoreBase
from shared.events import Event
from shared.outbox import enqueue

# Advisory locks of the re-contact check: (class, bucket) pairs, bucket < BUCKETS.
CUSTOMER_LOCK_CLASS = 0x6D657472  # "metr"
CUSTOMER_LOCK_BUCKETS = 1024  # a power of two (the bucket is a bit mask of the hash)


class ContactFact(NamedTuple):
    """A contact received; in the columns' order of `record_contacts`. A tuple, as `Cell`
    is: a batch makes thousands, and a frozen dataclass costs several times as much."""

    contact_id: str
    customer_ref: str | None
    service_area: str
    channel: str
    occurred_at: datetime
    day: date
    candidate: bool
    transfers: int


class ContactSpan(NamedTuple):
    """A (customer, area) pair of a batch, and its earliest and latest contact in it."""

    customer_ref: str
    service_area: str
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class TransferredContact:
    cell: Cell
    transfers_before: int
    fcr_lost_now: bool  # an FCR candidate not lost before: this transfer loses it


@dataclass(frozen=True, slots=True)
class ComplaintOpening:
    complaint_id: str
    service_area: str
    channel: str
    scope: str


@dataclass(frozen=True, slots=True)
class ComplaintChange:
    complaint_id: str
    stage: int | None
    open: bool | None


OutcomeKey = tuple[str, int, str]  # complaint id, stage, deadline


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """A deadline's outcome: (complaint, stage, deadline) is its key."""

    complaint_id: str
    stage: int
    deadline: str
    on_time: bool


@dataclass(frozen=True, slots=True)
class TopicProgress:
    topic: str
    events: int
    last_occurred_at: datetime
    last_recorded_at: datetime


class Facts(StoreBase):
    async def add_to_aggregates(
        self, generation: int, totals: Mapping[tuple[Cell, str], float]
    ) -> None:
        """Add to the daily counters, their monthly sums and their rollups (`store/rollups.py`).

        One statement, one round trip, and PostgreSQL does the summing: the monthly and
        rollup rows are grouped from the daily ones in SQL, as migration 005 first filled
        them. Each table's rows are written in key order (bytewise, "C": cheaper than the
        locale's, and the same everywhere), so concurrent batches (replicas) lock shared
        rows in one order and wait for each other rather than deadlock.
        """
        if not totals:
            return
        await self._tx.execute(
            """
            WITH cells AS (
                SELECT * FROM unnest($2::date[], $3::text[], $4::text[], $5::text[], $6::float8[])
                    AS t(day, measure, service_area, channel, value)
            ), daily AS (
                INSERT INTO metrics_aggregates AS a
                    (generation, day, measure, service_area, channel, value)
                SELECT $1, day, measure, service_area, channel, sum(value) FROM cells
                GROUP BY day, measure, service_area, channel
                ORDER BY day, measure COLLATE "C", service_area COLLATE "C", channel COLLATE "C"
                ON CONFLICT (generation, day, measure, service_area, channel)
                DO UPDATE SET value = a.value + excluded.value
            ), monthly AS (
                INSERT INTO metrics_monthly AS m
                    (generation, month, measure, service_area, channel, value)
                SELECT $1, month, measure, service_area, channel, sum(value)
                FROM (SELECT date_trunc('month', day)::date AS month, * FROM cells) AS c
                GROUP BY month, measure, service_area, channel
                ORDER BY month, measure COLLATE "C", service_area COLLATE "C", channel COLLATE "C"
                ON CONFLICT (generation, month, measure, service_area, channel)
                DO UPDATE SET value = m.value + excluded.value
            ), rollups AS (
                SELECT CASE WHEN grouping(service_area) = 0 THEN 'service_area'
                            WHEN grouping(channel) = 0 THEN 'channel' ELSE 'all' END
                           AS breakdown,
                       grain, start, coalesce(service_area, '*') AS service_area,
                       coalesce(channel, '*') AS channel, measure, sum(value) AS value
                FROM (
                    SELECT 'day' AS grain, day AS start, * FROM cells
                    UNION ALL
                    SELECT 'month', date_trunc('month', day)::date, * FROM cells
                ) AS c
                GROUP BY GROUPING SETS (
                    (grain, start, measure),
                    (grain, start, measure, service_area),
                    (grain, start, measure, channel)
                )
            )
            INSERT INTO metrics_rollups AS r
                (generation, breakdown, grain, start, service_area, channel, measure, value)
            SELECT $1, * FROM rollups
            ORDER BY breakdown COLLATE "C", grain COLLATE "C", start,
                     service_area COLLATE "C", channel COLLATE "C", measure COLLATE "C"
            ON CONFLICT (generation, breakdown, grain, start, service_area, channel, measure)
            DO UPDATE SET value = r.value + excluded.value
            """,
            generation,
            [cell.day for cell, _ in totals],
            [str(measure) for _, measure in totals],
            [cell.service_area for cell, _ in totals],
            [cell.channel for cell, _ in totals],
            list(totals.values()),
        )

    async def record_contacts(self, generation: int, facts: Sequence[ContactFact]) -> None:
        if not facts:
            return
        await self._tx.execute(
            """
            INSERT INTO metrics_contact_facts
                (generation, contact_id, customer_ref, service_area, channel, occurred_at, day,
                 candidate, transfers)
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],
                                     $6::timestamptz[], $7::date[], $8::bool[], $9::int[])
            ON CONFLICT (generation, contact_id) DO NOTHING
            """,
            generation,
            *(list(column) for column in zip(*facts, strict=True)),
        )

    async def lock_customers(self, keys: Iterable[str]) -> None:
        """Serialise re-contact checks per customer and area across replicas.

        Keys are hashed into `CUSTOMER_LOCK_BUCKETS` locks (the two-key form, a
        space of its own), so a batch of any size holds at most that many: one lock
        per key filled PostgreSQL's shared lock table (max_locks_per_transaction x
        max_connections, 6,400 by default) once a rebuild's batch of 20,000 and a
        live batch ran together. Taken in bucket order (the statement's ORDER BY), so
        batches never deadlock, whatever order the keys come in.
        """
        ordered = list(keys)
        if ordered:
            await self._tx.execute(
                "SELECT pg_advisory_xact_lock($2, b) FROM ("
                "  SELECT DISTINCT (hashtextextended('metrics:' || k, 0) & ($3 - 1))::int AS b"
                "  FROM unnest($1::text[]) AS k"
                ") AS buckets ORDER BY b",
                ordered,
                CUSTOMER_LOCK_CLASS,
                CUSTOMER_LOCK_BUCKETS,
            )

    async def mark_recontacted(
        self,
        generation: int,
        spans: Sequence[ContactSpan],
        window: timedelta,
    ) -> list[Cell]:
        """Candidates of these (customer, area) pairs with a later contact within the window.

        Marks each lost once and returns its cell. Looking both ways (an earlier
        candidate re-contacted now, or a candidate whose re-contact was consumed
        first) makes the result independent of the order events arrive in.

        Only candidates from `first - window` to `last` can be lost by this batch:
        every batch before it marked all the losses among the contacts it could see
        (under the same pair's lock), so a new loss has its candidate or its
        re-contact in this batch. The bound keeps the lookup to the window's rows
        of the customer's history, not all of it.
        """
        if not spans:
            return []
        rows = await self._tx.fetch(
            """
            UPDATE metrics_contact_facts c SET lost = true
            FROM (
                SELECT f.contact_id
                FROM unnest($2::text[], $3::text[], $5::timestamptz[], $6::timestamptz[])
                    AS p(customer_ref, service_area, first, last)
                CROSS JOIN LATERAL (
                    -- OFFSET 0 and LIMIT 1 keep both lookups per pair on the index:
                    -- flattened into joins, a table without fresh statistics is
                    -- scanned whole for every batch.
                    SELECT contact_id, customer_ref, service_area, occurred_at
                    FROM metrics_contact_facts
                    WHERE generation = $1
                      AND customer_ref = p.customer_ref AND service_area = p.service_area
                      AND occurred_at >= p.first - $4::interval AND occurred_at <= p.last
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
            [span.customer_ref for span in spans],
            [span.service_area for span in spans],
            window,
            [span.first for span in spans],
            [span.last for span in spans],
        )
        return [Cell(row["day"], row["service_area"], row["channel"]) for row in rows]

    async def record_transfers(
        self, generation: int, added: Mapping[str, int]
    ) -> dict[str, TransferredContact]:
        """Count a batch's transfers of known contacts (contact id → transfers added).

        Contacts never received are absent from the result. Rows are locked in
        contact-id order, so two batches never deadlock on each other.
        """
        if not added:
            return {}
        ids = sorted(added)
        rows = await self._tx.fetch(
            """
            WITH t AS (
                SELECT * FROM unnest($2::text[], $3::int[]) AS t(contact_id, added)
            ), old AS (
                SELECT c.contact_id, c.transfers, c.candidate, c.lost
                FROM metrics_contact_facts c JOIN t USING (contact_id)
                WHERE c.generation = $1
                ORDER BY c.contact_id
                FOR UPDATE OF c
            )
            UPDATE metrics_contact_facts c
            SET transfers = c.transfers + t.added, lost = c.lost OR c.candidate
            FROM old JOIN t USING (contact_id)
            WHERE c.generation = $1 AND c.contact_id = old.contact_id
            RETURNING c.contact_id, c.day, c.service_area, c.channel, old.transfers AS before,
                      (old.candidate AND NOT old.lost) AS fcr_lost_now
            """,
            generation,
            ids,
            [added[contact_id] for contact_id in ids],
        )
        return {
            row["contact_id"]: TransferredContact(
                Cell(row["day"], row["service_area"], row["channel"]),
                transfers_before=row["before"],
                fcr_lost_now=row["fcr_lost_now"],
            )
            for row in rows
        }

    async def record_complaints_opened(
        self, generation: int, openings: Sequence[ComplaintOpening]
    ) -> None:
        """A batch's complaints opened (one already known keeps its first opening)."""
        if not openings:
            return
        await self._tx.execute(
            """
            INSERT INTO metrics_complaint_facts
                (generation, complaint_id, service_area, channel, scope, stage, open)
            SELECT $1, c, a, ch, s, 1, true
            FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(c, a, ch, s)
            ON CONFLICT (generation, complaint_id) DO NOTHING
            """,
            generation,
            [o.complaint_id for o in openings],
            [o.service_area for o in openings],
            [o.channel for o in openings],
            [o.scope for o in openings],
        )

    async def record_deadline_progress(
        self, generation: int, progress: Mapping[OutcomeKey, tuple[bool, bool]]
    ) -> None:
        """Deadlines met or breached, (complaint, stage, deadline) → (breached, done);
        either may come first, and neither flag turns off again."""
        if not progress:
            return
        keys = sorted(progress)  # rows locked in key order: batches never deadlock
        await self._tx.execute(
            """
            INSERT INTO metrics_complaint_deadlines AS d
                (generation, complaint_id, stage, deadline, breached, done)
            SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::bool[], $6::bool[])
            ON CONFLICT (generation, complaint_id, stage, deadline) DO UPDATE
            SET breached = d.breached OR EXCLUDED.breached, done = d.done OR EXCLUDED.done
            """,
            generation,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [progress[k][0] for k in keys],
            [progress[k][1] for k in keys],
        )

    async def complaint_channels(
        self, generation: int, complaint_ids: Sequence[str]
    ) -> dict[str, str]:
        rows = await self._tx.fetch(
            "SELECT complaint_id, channel FROM metrics_complaint_facts"
            " WHERE generation = $1 AND complaint_id = ANY($2::text[])",
            generation,
            list(complaint_ids),
        )
        return {row["complaint_id"]: row["channel"] for row in rows}

    async def update_complaints(self, generation: int, changes: Sequence[ComplaintChange]) -> None:
        """Each complaint's stage and open flag after the batch (None: unchanged)."""
        if not changes:
            return
        await self._tx.execute(
            """
            UPDATE metrics_complaint_facts f
            SET stage = coalesce(x.stage, f.stage), open = coalesce(x.open, f.open)
            FROM unnest($2::text[], $3::int[], $4::bool[]) AS x(complaint_id, stage, open)
            WHERE f.generation = $1 AND f.complaint_id = x.complaint_id
            """,
            generation,
            [c.complaint_id for c in changes],
            [c.stage for c in changes],
            [c.open for c in changes],
        )

    async def record_outcomes(
        self, generation: int, outcomes: Sequence[OutcomeRow]
    ) -> set[OutcomeKey]:
        """Record deadlines' first outcomes; returns the keys that had none before.

        `outcomes` holds each key once, with the outcome the batch settled first.
        """
        if not outcomes:
            return set()
        rows = await self._tx.fetch(
            """
            INSERT INTO metrics_complaint_outcomes
                (generation, complaint_id, stage, deadline, on_time)
            SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::bool[])
            ON CONFLICT DO NOTHING
            RETURNING complaint_id, stage, deadline
            """,
            generation,
            [o.complaint_id for o in outcomes],
            [o.stage for o in outcomes],
            [o.deadline for o in outcomes],
            [o.on_time for o in outcomes],
        )
        return {(row["complaint_id"], row["stage"], row["deadline"]) for row in rows}

    async def record_progress(self, generation: int, progress: Sequence[TopicProgress]) -> None:
        if not progress:
            return
        await self._tx.execute(
            """
            INSERT INTO metrics_topic_progress AS p
                (generation, topic, events, last_occurred_at, last_recorded_at, last_applied_at)
            SELECT $1, t, e, o, r, now()
            FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
                AS x(t, e, o, r)
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

    async def enqueue(self, events: Sequence[Event]) -> None:
        """Events to publish once the transaction commits (the outbox)."""
        await enqueue(self._tx, SERVICE, events)
