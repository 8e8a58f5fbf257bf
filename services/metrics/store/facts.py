"""What a batch of events writes: counters, facts, surges, topic progress. SQL in plain sight.

Every write takes the generation it fills and runs in the caller's transaction
(`MetricsStore.transaction()`), with the batch's processed-event records.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from services.metrics.domain.measures import Cell
from services.metrics.settings import SERVICE
from services.metrics.store.base import StoreBase
from shared.events import Event
from shared.outbox import enqueue


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


@dataclass(frozen=True, slots=True)
class TransferredContact:
    cell: Cell
    transfers_before: int
    fcr_lost_now: bool  # an FCR candidate not lost before: this transfer loses it


@dataclass(frozen=True, slots=True)
class TopicProgress:
    topic: str
    events: int
    last_occurred_at: datetime
    last_recorded_at: datetime


@dataclass(frozen=True, slots=True)
class SurveyComment:
    """A survey answer's comment, without who wrote it."""

    answered_at: datetime
    service_area: str
    channel: str
    overall: int
    comment: str


class Facts(StoreBase):
    async def add_to_aggregates(
        self, generation: int, totals: Mapping[tuple[Cell, str], float]
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
            await self._tx.execute(
                f"""
                INSERT INTO {table} AS a
                    (generation, {period}, measure, service_area, channel, value)
                SELECT $1, * FROM unnest(
                    $2::date[], $3::text[], $4::text[], $5::text[], $6::float8[]
                )
                ON CONFLICT (generation, {period}, measure, service_area, channel)
                DO UPDATE SET value = a.value + excluded.value
                """,
                generation,
                *(list(column) for column in zip(*rows, strict=True)),
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
            [f.contact_id for f in facts],
            [f.customer_ref for f in facts],
            [f.service_area for f in facts],
            [f.channel for f in facts],
            [f.occurred_at for f in facts],
            [f.day for f in facts],
            [f.candidate for f in facts],
            [f.transfers for f in facts],
        )

    async def lock_customers(self, keys: Iterable[str]) -> None:
        """Serialise re-contact checks per customer and area across replicas.

        Taken in sorted order, so two batches never deadlock on each other.
        """
        ordered = sorted(set(keys))
        if ordered:
            await self._tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('metrics:' || k, 0))"
                " FROM unnest($1::text[]) AS k ORDER BY k",
                ordered,
            )

    async def mark_recontacted(
        self,
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
        rows = await self._tx.fetch(
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

    async def record_transfer(self, generation: int, contact_id: str) -> TransferredContact | None:
        """Count one more transfer of a known contact; None if the contact was never received."""
        row = await self._tx.fetchrow(
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
            transfers_before=row["before"],
            fcr_lost_now=row["fcr_lost_now"],
        )

    async def record_complaint_opened(
        self,
        generation: int,
        complaint_id: str,
        *,
        service_area: str,
        channel: str,
        scope: str,
    ) -> None:
        await self._tx.execute(
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

    async def record_deadline_progress(
        self, generation: int, complaint_id: str, stage: int, deadline: str, *, done: bool
    ) -> None:
        """A deadline was met (`done`) or breached; either may come first."""
        await self._tx.execute(
            """
            INSERT INTO metrics_complaint_deadlines AS d
                (generation, complaint_id, stage, deadline, breached, done)
            VALUES ($1, $2, $3, $4, NOT $5, $5)
            ON CONFLICT (generation, complaint_id, stage, deadline) DO UPDATE
            SET breached = d.breached OR EXCLUDED.breached, done = d.done OR EXCLUDED.done
            """,
            generation,
            complaint_id,
            stage,
            deadline,
            done,
        )

    async def record_comment(self, generation: int, event_id: UUID, comment: SurveyComment) -> None:
        await self._tx.execute(
            """
            INSERT INTO metrics_survey_comments
                (generation, event_id, answered_at, service_area, channel, overall, comment)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (generation, event_id) DO NOTHING
            """,
            generation,
            event_id,
            comment.answered_at,
            comment.service_area,
            comment.channel,
            comment.overall,
            comment.comment,
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

    async def update_complaint(
        self,
        generation: int,
        complaint_id: str,
        *,
        stage: int | None = None,
        open_: bool | None = None,
    ) -> None:
        await self._tx.execute(
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
        self,
        generation: int,
        complaint_id: str,
        stage: int,
        deadline: str,
        *,
        on_time: bool,
    ) -> bool:
        """Record a deadline's first outcome; False if it already had one."""
        inserted = await self._tx.fetchval(
            """
            INSERT INTO metrics_complaint_outcomes
                (generation, complaint_id, stage, deadline, on_time)
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

    async def daily_counts(
        self,
        generation: int,
        measures: Sequence[str],
        areas: Sequence[str],
        first: date,
        last: date,
    ) -> dict[tuple[str, str, date], float]:
        rows = await self._tx.fetch(
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
        self, generation: int, keys: Sequence[tuple[str, str, date]]
    ) -> dict[tuple[str, str, date], str]:
        """The surge ids recorded on these (area, measure, day)s."""
        rows = await self._tx.fetch(
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
        self,
        generation: int,
        key: tuple[str, str, date],
        surge_id: str,
        *,
        count: float,
        baseline: float,
        threshold: float,
    ) -> None:
        await self._tx.execute(
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

    async def enqueue(self, events: Sequence[Event]) -> None:
        """Events to publish once the transaction commits (the outbox)."""
        await enqueue(self._tx, SERVICE, events)
