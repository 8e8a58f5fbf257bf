"""Reading the aggregates back: sums over a range, by area, by day. SQL in plain sight.

Reads take the generation to read (most callers: `live_generation()`); they run
on the pool, or on the transaction's connection inside one.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from services.metrics.periods import DateRange
from services.metrics.store.base import StoreBase
from services.metrics.store.rollups import ALL, Sql, breakdown_of, breakdown_rows, span_rows


def _filters(service_area: str | None, channel: str | None, first: int) -> tuple[str, list[str]]:
    clauses, values = [], []
    for column, value in (("service_area", service_area), ("channel", channel)):
        if value is not None:
            values.append(value)
            clauses.append(f" AND {column} = ${first + len(values) - 1}")
    return "".join(clauses), values


@dataclass(frozen=True, slots=True)
class OpenComplaints:
    scope: str
    stage: int
    count: int


@dataclass(frozen=True, slots=True)
class KpiTotals:
    """The live generation and, in the same snapshot, its applied-event count (which
    grows with every batch that changes a figure), two spans' sums and the open complaints."""

    generation: int
    applied: int
    current: dict[str, float]
    previous: dict[str, float]
    open_complaints: list[OpenComplaints]


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
        sql = Sql([generation])
        rows_sql = span_rows(sql, "$1", span, service_area=service_area, channel=channel)
        rows = await self._db.fetch(
            f"SELECT measure, sum(value) AS value FROM ({rows_sql}) AS r GROUP BY measure",
            *sql.values,
        )
        return {row["measure"]: row["value"] for row in rows}

    async def totals_by(
        self, generation: int, span: DateRange, dimension: str
    ) -> dict[str, dict[str, float]]:
        """Sums per service area or per channel: `dimension` is one of those two columns."""
        if dimension not in ("service_area", "channel"):
            raise ValueError(f"cannot group by {dimension!r}")
        sql = Sql([generation])
        rows = await self._db.fetch(
            f"SELECT key, measure, sum(value) AS value FROM"
            f" ({breakdown_rows(sql, '$1', span, dimension)}) AS r GROUP BY key, measure",
            *sql.values,
        )
        grouped: dict[str, dict[str, float]] = defaultdict(dict)
        for row in rows:
            grouped[row["key"]][row["measure"]] = row["value"]
        return dict(grouped)

    async def applied_mark(self) -> tuple[int, int]:
        """The live generation and how many events have been applied to it: every batch
        that changes a figure applies at least one new event and adds it to
        `metrics_topic_progress` in its own transaction, so equal marks mean equal figures.
        """
        row = await self._db.fetchrow(
            "SELECT c.generation, coalesce(sum(p.events), 0) AS applied FROM metrics_current c"
            " LEFT JOIN metrics_topic_progress p ON p.generation = c.generation"
            " GROUP BY c.generation"
        )
        assert row is not None  # metrics_current always holds its one row
        return row["generation"], int(row["applied"])

    async def kpi_totals(
        self,
        current: DateRange,
        previous: DateRange,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> KpiTotals:
        """What `GET /v1/kpis` reads, in one statement (one round trip, one snapshot): the
        live generation and its applied-event count, the sums of both spans, and the
        complaints open now."""
        sql = Sql()
        live = "(SELECT generation FROM live)"
        filters = {"service_area": service_area, "channel": channel}
        spans = [
            f"SELECT '{part}', measure, NULL::integer, sum(value) FROM"
            f" ({span_rows(sql, live, span, service_area=service_area, channel=channel)})"
            " AS r GROUP BY measure"
            for part, span in (("current", current), ("previous", previous))
        ]
        where = "".join(
            f" AND {column} = {sql.param(value)}"
            for column, value in filters.items()
            if value is not None
        )
        rows = await self._db.fetch(
            f"""
            WITH live AS (SELECT generation FROM metrics_current)
            SELECT 'live' AS part, NULL AS key, generation AS stage,
                   (SELECT coalesce(sum(events), 0) FROM metrics_topic_progress p
                    WHERE p.generation = live.generation)::float8 AS value
            FROM live
            UNION ALL {spans[0]}
            UNION ALL {spans[1]}
            UNION ALL SELECT 'open', scope, stage, count(*)::float8 FROM metrics_complaint_facts
                WHERE generation = {live} AND open{where} GROUP BY scope, stage
            """,
            *sql.values,
        )
        sums: dict[str, dict[str, float]] = {"current": {}, "previous": {}}
        opened: list[OpenComplaints] = []
        generation, applied = 0, 0
        for row in rows:
            if row["part"] == "live":
                generation, applied = row["stage"], int(row["value"])
            elif row["part"] == "open":
                opened.append(OpenComplaints(row["key"], row["stage"], int(row["value"])))
            else:
                sums[row["part"]][row["key"]] = row["value"]
        opened.sort(key=lambda o: (o.scope, o.stage))
        return KpiTotals(generation, applied, sums["current"], sums["previous"], opened)

    async def daily_totals(
        self,
        generation: int,
        span: DateRange,
        measures: Sequence[str],
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> dict[date, dict[str, float]]:
        if service_area is not None and channel is not None:
            sql = (
                "SELECT day, measure, sum(value) AS value FROM metrics_aggregates"
                " WHERE generation = $1 AND day BETWEEN $2 AND $3"
            )
        else:
            sql = (
                "SELECT start AS day, measure, sum(value) AS value FROM metrics_rollups"
                f" WHERE generation = $1 AND breakdown = '{breakdown_of(service_area, channel)}'"
                " AND grain = 'day' AND start BETWEEN $2 AND $3"
            )
        rows = await self._db.fetch(
            sql + " AND measure = ANY($4::text[]) AND service_area = $5 AND channel = $6"
            " GROUP BY 1, measure",
            generation,
            span.start,
            span.end,
            list(measures),
            service_area or ALL,
            channel or ALL,
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
        # The monthly per-area rollups: 12 rows a year per area, where the daily cells
        # (read every few seconds by the gauges) would be every row of the generation.
        rows = await self._db.fetch(
            "SELECT service_area, sum(value) AS value FROM metrics_rollups"
            " WHERE generation = $1 AND breakdown = 'service_area' AND grain = 'month'"
            " AND measure = $2 GROUP BY service_area",
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
