"""Reading the aggregates back: sums over a range, by area, by day. SQL in plain sight.

Reads take the generation to read (most callers: `live_generation()`); they run
on the pool, or on the transaction's connection inside one.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from services.metrics.periods import DateRange, split_whole_months
from services.metrics.store.base import StoreBase


def _filters(service_area: str | None, channel: str | None, first: int) -> tuple[str, list[str]]:
    clauses, values = [], []
    for column, value in (("service_area", service_area), ("channel", channel)):
        if value is not None:
            values.append(value)
            clauses.append(f" AND {column} = ${first + len(values) - 1}")
    return "".join(clauses), values


def _span_sql(span: DateRange, first: int) -> tuple[str, list[date]]:
    """Rows of the span: whole months from the monthly sums, the other days from the daily."""
    split = split_whole_months(span)
    parts: list[str] = []
    values: list[date] = []
    for days in split.days:
        parts.append(
            f"SELECT service_area, channel, measure, value FROM metrics_aggregates"
            f" WHERE generation = $1 AND day BETWEEN ${first + len(values)}"
            f" AND ${first + len(values) + 1}"
        )
        values += [days.start, days.end]
    if split.months is not None:
        parts.append(
            f"SELECT service_area, channel, measure, value FROM metrics_monthly"
            f" WHERE generation = $1 AND month BETWEEN ${first + len(values)}"
            f" AND ${first + len(values) + 1}"
        )
        values += [split.months.start, split.months.end]
    return " UNION ALL ".join(parts), values


@dataclass(frozen=True, slots=True)
class OpenComplaints:
    scope: str
    stage: int
    count: int


@dataclass(frozen=True, slots=True)
class Surge:
    surge_id: str
    service_area: str
    measure: str
    day: date
    count: float
    baseline: float
    threshold: float


@dataclass(frozen=True, slots=True)
class TopicState:
    topic: str
    events: int
    last_occurred_at: datetime
    last_recorded_at: datetime
    last_applied_at: datetime


class Reads(StoreBase):
    async def totals(
        self,
        generation: int,
        span: DateRange,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> dict[str, float]:
        rows_sql, span_values = _span_sql(span, 2)
        where, values = _filters(service_area, channel, 2 + len(span_values))
        rows = await self._db.fetch(
            f"SELECT measure, sum(value) AS value FROM ({rows_sql}) AS r"
            f" WHERE true{where} GROUP BY measure",
            generation,
            *span_values,
            *values,
        )
        return {row["measure"]: row["value"] for row in rows}

    async def totals_by(
        self, generation: int, span: DateRange, dimension: str
    ) -> dict[str, dict[str, float]]:
        """Sums per service area or per channel: `dimension` is one of those two columns."""
        if dimension not in ("service_area", "channel"):
            raise ValueError(f"cannot group by {dimension!r}")
        rows_sql, span_values = _span_sql(span, 2)
        rows = await self._db.fetch(
            f"SELECT {dimension} AS key, measure, sum(value) AS value FROM ({rows_sql}) AS r"
            f" GROUP BY {dimension}, measure",
            generation,
            *span_values,
        )
        grouped: dict[str, dict[str, float]] = defaultdict(dict)
        for row in rows:
            grouped[row["key"]][row["measure"]] = row["value"]
        return dict(grouped)

    async def daily_totals(
        self,
        generation: int,
        span: DateRange,
        measures: Sequence[str],
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> dict[date, dict[str, float]]:
        where, values = _filters(service_area, channel, 5)
        rows = await self._db.fetch(
            "SELECT day, measure, sum(value) AS value FROM metrics_aggregates"
            " WHERE generation = $1 AND day BETWEEN $2 AND $3 AND measure = ANY($4::text[])"
            + where
            + " GROUP BY day, measure",
            generation,
            span.start,
            span.end,
            list(measures),
            *values,
        )
        days: dict[date, dict[str, float]] = defaultdict(dict)
        for row in rows:
            days[row["day"]][row["measure"]] = row["value"]
        return dict(days)

    async def open_complaints(
        self,
        generation: int,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> list[OpenComplaints]:
        """Complaints open now, by scope and stage (a snapshot, not a period figure)."""
        where, values = _filters(service_area, channel, 2)
        rows = await self._db.fetch(
            "SELECT scope, stage, count(*) AS count FROM metrics_complaint_facts"
            " WHERE generation = $1 AND open"
            + where
            + " GROUP BY scope, stage ORDER BY scope, stage",
            generation,
            *values,
        )
        return [OpenComplaints(row["scope"], row["stage"], row["count"]) for row in rows]

    async def overdue_complaints(self, generation: int) -> dict[str, int]:
        """Open complaints per service area with a deadline of their current stage
        breached and its action not yet taken."""
        rows = await self._db.fetch(
            "SELECT f.service_area, count(DISTINCT f.complaint_id) AS count"
            " FROM metrics_complaint_facts f JOIN metrics_complaint_deadlines d"
            " ON d.generation = f.generation AND d.complaint_id = f.complaint_id"
            " AND d.stage = f.stage AND d.breached AND NOT d.done"
            " WHERE f.generation = $1 AND f.open GROUP BY f.service_area ORDER BY 1",
            generation,
        )
        return {row["service_area"]: row["count"] for row in rows}

    async def surges_between(self, generation: int, span: DateRange) -> list[Surge]:
        rows = await self._db.fetch(
            "SELECT surge_id, service_area, measure, day, count, baseline, threshold"
            " FROM metrics_surges WHERE generation = $1 AND day BETWEEN $2 AND $3"
            " ORDER BY day, service_area, measure",
            generation,
            span.start,
            span.end,
        )
        return [Surge(**dict(row)) for row in rows]

    async def measure_totals_by_area(self, generation: int, measure: str) -> dict[str, float]:
        """All-time sum of one measure per service area (e.g. deadline breaches, for alerts)."""
        rows = await self._db.fetch(
            "SELECT service_area, sum(value) AS value FROM metrics_aggregates"
            " WHERE generation = $1 AND measure = $2 GROUP BY service_area",
            generation,
            measure,
        )
        return {row["service_area"]: row["value"] for row in rows}

    async def topic_states(self, generation: int) -> list[TopicState]:
        rows = await self._db.fetch(
            "SELECT topic, events, last_occurred_at, last_recorded_at, last_applied_at"
            " FROM metrics_topic_progress WHERE generation = $1 ORDER BY topic",
            generation,
        )
        return [TopicState(**dict(row)) for row in rows]
