"""The sums behind `GET /v1/kpis`, kept in memory for as long as nothing new is applied.

Managers' screens and reports ask the same periods again and again; with no new events
the answer cannot change, so the sums are kept under the store's applied mark (the live
generation and the count of events applied to it, `MetricsStore.applied_mark`). Every
request reads the mark first, in its own round trip, so a request that starts after a
batch commits sees the new mark and reads afresh: the cache never answers with figures
older than the last commit. A miss stores what `kpi_totals` read under the mark it read
in the same snapshot, never under the mark read before it.

Only the sums and the open complaints are kept, not the judged rows: RAG, trends and
provisional flags depend on today and on settings, and are worked out per request.
"""

from collections import OrderedDict

from services.metrics.periods import DateRange
from services.metrics.store import KpiTotals, MetricsStore

# Enough for every month, quarter and year of five years, for each area and channel
# filter, times a few KPI selections (which share one entry); a few MB at most.
CAPACITY = 4096

Key = tuple[int, int, DateRange, DateRange, str | None, str | None]


class KpiTotalsCache:
    """Least recently used entries go first; entries of older marks are never read again
    and age out the same way."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Key, KpiTotals] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def kpi_totals(
        self,
        store: MetricsStore,
        current: DateRange,
        previous: DateRange,
        *,
        service_area: str | None,
        channel: str | None,
    ) -> KpiTotals:
        """`store.kpi_totals`, unless the same was read since the last batch committed.

        The result is shared between requests: read it, never change it.
        """
        asked = (current, previous, service_area, channel)
        key: Key = (*await store.applied_mark(), *asked)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found
        self.misses += 1
        totals = await store.kpi_totals(
            current, previous, service_area=service_area, channel=channel
        )
        self._entries[(totals.generation, totals.applied, *asked)] = totals
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return totals
