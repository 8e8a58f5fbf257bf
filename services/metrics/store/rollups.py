"""The counters summed across areas and channels (`metrics_rollups`), and where a read of a
span's rows comes from. SQL in plain sight.

A KPI over every area (or one area, or one channel) sums one rollup row per measure and
month, plus days at the span's ragged ends, instead of every cell's rows: a year reads
about 12 x 36 rows however many areas and channels a council has. Only a read filtered by
both area and channel reads the cells themselves (`metrics_monthly`, `metrics_aggregates`).

The rollups are written in the batch's transaction, in the same statement as the counters
they sum (`Facts.add_to_aggregates`), by the same `BatchApplier.apply` that the live
consumer and the rebuild by replay both use, so a rebuilt generation has them too.
"""

from dataclasses import dataclass, field

from services.metrics.periods import DateRange, split_whole_months
from shared.postgres import Connection

ALL = "*"  # "every area" or "every channel"; neither is a service area slug nor a channel


@dataclass
class Sql:
    """Numbered parameters for a statement built in parts."""

    values: list[object] = field(default_factory=list)

    def param(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def breakdown_of(service_area: str | None, channel: str | None) -> str:
    """The rollup that answers a read with these filters (not both given)."""
    if service_area is not None:
        return "service_area"
    return "channel" if channel is not None else "all"


def span_rows(
    sql: Sql,
    generation: str,
    span: DateRange,
    *,
    service_area: str | None,
    channel: str | None,
    columns: str = "measure, value",
) -> str:
    """A SELECT of `columns` for every row of `span` with these filters (UNION ALL of
    the whole months and the days around them); `generation` is SQL (a parameter or a
    subquery).
    """
    split = split_whole_months(span)
    grains = [("day", days) for days in split.days]
    if split.months is not None:
        grains.append(("month", split.months))
    parts = []
    for grain, part in grains:
        between = f"BETWEEN {sql.param(part.start)} AND {sql.param(part.end)}"
        if service_area is not None and channel is not None:
            table, column = (
                ("metrics_monthly", "month") if grain == "month" else ("metrics_aggregates", "day")
            )
            parts.append(
                f"SELECT {columns} FROM {table} WHERE generation = {generation}"
                f" AND {column} {between} AND service_area = {sql.param(service_area)}"
                f" AND channel = {sql.param(channel)}"
            )
        else:
            parts.append(
                f"SELECT {columns} FROM metrics_rollups WHERE generation = {generation}"
                f" AND breakdown = '{breakdown_of(service_area, channel)}' AND grain = '{grain}'"
                f" AND start {between}"
                f" AND service_area = {sql.param(service_area or ALL)}"
                f" AND channel = {sql.param(channel or ALL)}"
            )
    return " UNION ALL ".join(parts)


def breakdown_rows(sql: Sql, generation: str, span: DateRange, dimension: str) -> str:
    """A SELECT of (key, measure, value) for every row of `span` per area or per channel."""
    split = split_whole_months(span)
    grains = [("day", days) for days in split.days]
    if split.months is not None:
        grains.append(("month", split.months))
    return " UNION ALL ".join(
        f"SELECT {dimension} AS key, measure, value FROM metrics_rollups"
        f" WHERE generation = {generation} AND breakdown = '{dimension}' AND grain = '{grain}'"
        f" AND start BETWEEN {sql.param(part.start)} AND {sql.param(part.end)}"
        for grain, part in grains
    )


async def refill_rollups(connection: Connection, generation: int, span: DateRange) -> None:
    """Recompute the rollups of `span`'s days and of the months they touch from the cells
    (`metrics_aggregates`, `metrics_monthly`): for history loaded straight into the cell
    tables, as the KPI latency benchmark does with COPY. The same sums as migration 005."""
    months = DateRange(span.start.replace(day=1), span.end.replace(day=1))
    await connection.execute(
        "DELETE FROM metrics_rollups WHERE generation = $1 AND ((grain = 'day'"
        " AND start BETWEEN $2 AND $3) OR (grain = 'month' AND start BETWEEN $4 AND $5))",
        generation,
        span.start,
        span.end,
        months.start,
        months.end,
    )
    await connection.execute(
        """
        INSERT INTO metrics_rollups
            (generation, breakdown, grain, start, service_area, channel, measure, value)
        SELECT $1,
               CASE WHEN grouping(service_area) = 0 THEN 'service_area'
                    WHEN grouping(channel) = 0 THEN 'channel' ELSE 'all' END,
               grain, start, coalesce(service_area, '*'), coalesce(channel, '*'), measure,
               sum(value)
        FROM (
            SELECT 'day' AS grain, day AS start, service_area, channel, measure, value
            FROM metrics_aggregates WHERE generation = $1 AND day BETWEEN $2 AND $3
            UNION ALL
            SELECT 'month', month, service_area, channel, measure, value
            FROM metrics_monthly WHERE generation = $1 AND month BETWEEN $4 AND $5
        ) AS cells
        GROUP BY GROUPING SETS (
            (grain, start, measure),
            (grain, start, measure, service_area),
            (grain, start, measure, channel)
        )
        """,
        generation,
        span.start,
        span.end,
        months.start,
        months.end,
    )
