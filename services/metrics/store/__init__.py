"""The metrics service's PostgreSQL state: one injectable class, `MetricsStore`.

`MetricsStore(pool)` reads; `async with store.transaction() as tx` gives the same
store bound to one transaction, whose writes commit together. Its SQL sits in
plain sight, one module per job:

- `generations`: the live generation, the one a rebuild fills, processed-event records;
- `facts`: what a batch writes (counters, contact and complaint facts, progress);
- `surges`: the daily counts a surge is judged on, and the surges recorded;
- `reads`: the aggregates read back for the API and the gauges;
- `rollups`: the counters summed across areas and channels, and which rows a read sums;
- `notes`: what the annual complaints report lists (reasons, decisions, learning actions).
"""

from pathlib import Path

from services.metrics.store.base import NotInTransactionError
from services.metrics.store.facts import (
    ComplaintChange,
    ComplaintOpening,
    ContactFact,
    ContactSpan,
    Facts,
    OutcomeKey,
    OutcomeRow,
    TopicProgress,
    TransferredContact,
)
from services.metrics.store.generations import Generations, processed_service
from services.metrics.store.notes import Notes
from services.metrics.store.reads import KpiTotals, OpenComplaints, Reads, Surge, TopicState
from services.metrics.store.surges import RecordedSurge, Surges

MIGRATIONS = Path(__file__).parent.parent / "migrations"


class MetricsStore(Generations, Facts, Surges, Reads, Notes):
    """Everything the handlers, the rebuild, the gauges and the API ask PostgreSQL."""


__all__ = [
    "MIGRATIONS",
    "ComplaintChange",
    "ComplaintOpening",
    "ContactFact",
    "ContactSpan",
    "KpiTotals",
    "MetricsStore",
    "NotInTransactionError",
    "OpenComplaints",
    "OutcomeKey",
    "OutcomeRow",
    "RecordedSurge",
    "Surge",
    "TopicProgress",
    "TopicState",
    "TransferredContact",
    "processed_service",
]
