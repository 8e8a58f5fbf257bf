"""Surge detection's reads and writes: daily counts for a baseline, surges recorded once.

Runs in the caller's transaction (`MetricsStore.transaction()`), with the batch
whose counts raised the surge.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.metrics.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class RecordedSurge:
    key: tuple[str, str, date]  # (service area, measure, local day)
    surge_id: str
    count: float
    baseline: float
    threshold: float


class Surges(StoreBase):
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

    async def record_surges(self, generation: int, surges: Sequence[RecordedSurge]) -> None:
        """Record surge days found by a batch (a day already recorded keeps its first)."""
        if not surges:
            return
        await self._tx.execute(
            """
            INSERT INTO metrics_surges
                (generation, service_area, measure, day, surge_id, count, baseline, threshold)
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::date[], $5::text[],
                                     $6::float8[], $7::float8[], $8::float8[])
            ON CONFLICT DO NOTHING
            """,
            generation,
            [s.key[0] for s in surges],
            [s.key[1] for s in surges],
            [s.key[2] for s in surges],
            [s.surge_id for s in surges],
            [s.count for s in surges],
            [s.baseline for s in surges],
            [s.threshold for s in surges],
        )

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
        """One surge day (`record_surges` for one)."""
        await self.record_surges(
            generation, [RecordedSurge(key, surge_id, count, baseline, threshold)]
        )
