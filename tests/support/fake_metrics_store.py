"""`MetricsStore` in memory, for the handlers' fast tests.

It subclasses the real store, so mypy holds the signatures in step, and
overrides every public method (a unit test checks). The same test bodies run
against it and against PostgreSQL (tests/unit/test_metrics_handlers.py), so it
cannot drift from the SQL it stands in for. A transaction keeps a copy of the
state and puts it back when the block raises, as a rollback would.
"""

import copy
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Self, TypeVar
from uuid import UUID

from services.metrics.domain.complaint_notes import ComplaintNote, NoteKind
from services.metrics.domain.measures import Cell
from services.metrics.periods import DateRange
from services.metrics.store import (
    ComplaintChange,
    ComplaintOpening,
    ContactFact,
    ContactSpan,
    KpiTotals,
    MetricsStore,
    NotInTransactionError,
    OpenComplaints,
    OutcomeKey,
    OutcomeRow,
    RecordedSurge,
    Surge,
    TopicProgress,
    TopicState,
    TransferredContact,
    processed_service,
)
from shared.events import Event

AggregateKey = tuple[int, date, str, str, str]  # generation, day, measure, area, channel
SurgeKey = tuple[str, str, date]


@dataclass
class ContactRow:
    fact: ContactFact
    transfers: int
    lost: bool = False


@dataclass
class ComplaintRow:
    service_area: str
    channel: str
    scope: str
    stage: int
    open: bool


@dataclass
class State:
    current: int = 1
    generations: dict[int, str] = field(default_factory=lambda: {1: "live"})
    processed: dict[str, set[UUID]] = field(default_factory=lambda: defaultdict(set))
    aggregates: dict[AggregateKey, float] = field(default_factory=lambda: defaultdict(float))
    contacts: dict[tuple[int, str], ContactRow] = field(default_factory=dict)
    complaints: dict[tuple[int, str], ComplaintRow] = field(default_factory=dict)
    outcomes: dict[tuple[int, str, int, str], bool] = field(default_factory=dict)
    surges: dict[tuple[int, str, str, date], Surge] = field(default_factory=dict)
    progress: dict[tuple[int, str], TopicState] = field(default_factory=dict)
    deadlines: dict[tuple[int, str, int, str], tuple[bool, bool]] = field(default_factory=dict)
    notes: dict[tuple[int, UUID, str], ComplaintNote] = field(default_factory=dict)
    outbox: list[Event] = field(default_factory=list)


K = TypeVar("K", bound=tuple[Any, ...])
V = TypeVar("V")


def _without(rows: dict[K, V], generation: int) -> dict[K, V]:
    return {key: row for key, row in rows.items() if key[0] != generation}


class FakeMetricsStore(MetricsStore):
    def __init__(self) -> None:  # no pool: nothing here touches PostgreSQL
        self.state = State()
        self.locked: list[list[str]] = []
        self._in_transaction = False

    def _writing(self) -> None:
        if not self._in_transaction:
            raise NotInTransactionError("metrics store writes run inside `transaction()`")

    def _drop(self, generation: int) -> None:
        state = self.state
        state.aggregates = defaultdict(float, _without(state.aggregates, generation))
        state.contacts = _without(state.contacts, generation)
        state.complaints = _without(state.complaints, generation)
        state.outcomes = _without(state.outcomes, generation)
        state.surges = _without(state.surges, generation)
        state.progress = _without(state.progress, generation)
        state.deadlines = _without(state.deadlines, generation)
        state.notes = _without(state.notes, generation)
        state.processed.pop(processed_service(generation), None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        if self._in_transaction:
            raise RuntimeError("already in a transaction: use this store, not a new one")
        saved = copy.deepcopy(self.state)
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self.state = saved
            raise
        finally:
            self._in_transaction = False

    # -- generations -----------------------------------------------------------------

    async def live_generation(self, *, lock: bool = False) -> int:
        if lock:
            self._writing()
        return self.state.current

    async def first_times(self, generation: int, event_ids: Sequence[UUID]) -> set[UUID]:
        self._writing()
        seen = self.state.processed[processed_service(generation)]
        fresh = set(event_ids) - seen
        seen |= fresh
        return fresh

    async def record_new(self, generation: int, event_ids: Sequence[UUID]) -> set[UUID] | None:
        fresh = await self.first_times(generation, event_ids)
        return None if len(fresh) == len(event_ids) else fresh

    async def start_generation(self) -> int:
        generations = self.state.generations
        for generation in [g for g, state in generations.items() if state == "building"]:
            del generations[generation]
            self._drop(generation)
        generation = max(generations) + 1
        generations[generation] = "building"
        return generation

    async def switch_generation(self, generation: int) -> int:
        previous = self.state.current
        self.state.current = generation
        self.state.generations[generation] = "live"
        self.state.generations[previous] = "retired"
        return previous

    async def drop_retired_before(self, generation: int) -> list[int]:
        generations = self.state.generations
        dropped = sorted(g for g, s in generations.items() if s == "retired" and g < generation)
        for old in dropped:
            del generations[old]
            self._drop(old)
        return dropped

    # -- writes ----------------------------------------------------------------------

    async def add_to_aggregates(
        self, generation: int, totals: Mapping[tuple[Cell, str], float]
    ) -> None:
        self._writing()
        for (cell, measure), value in totals.items():
            key = (generation, cell.day, str(measure), cell.service_area, cell.channel)
            self.state.aggregates[key] += value
        # The fake's reads sum the cells themselves: what the rollups hold, by definition.

    async def record_contacts(self, generation: int, facts: Sequence[ContactFact]) -> None:
        self._writing()
        for fact in facts:
            self.state.contacts.setdefault(
                (generation, fact.contact_id), ContactRow(fact, fact.transfers)
            )

    async def lock_customers(self, keys: Iterable[str]) -> None:
        self._writing()
        self.locked.append(sorted(set(keys)))

    async def mark_recontacted(
        self, generation: int, spans: Sequence[ContactSpan], window: timedelta
    ) -> list[Cell]:
        # Every candidate of the pairs, not only those in the spans' window: the store's
        # bound must give the same losses, which the tests on both check.
        self._writing()
        wanted = {(span.customer_ref, span.service_area) for span in spans}
        rows = [
            row
            for (g, _), row in self.state.contacts.items()
            if g == generation and (row.fact.customer_ref, row.fact.service_area) in wanted
        ]
        hits = [
            row
            for row in rows
            if row.fact.candidate
            and not row.lost
            and any(
                later.fact.customer_ref == row.fact.customer_ref
                and later.fact.service_area == row.fact.service_area
                and row.fact.occurred_at < later.fact.occurred_at <= row.fact.occurred_at + window
                for later in rows
            )
        ]
        for row in hits:
            row.lost = True
        return [Cell(row.fact.day, row.fact.service_area, row.fact.channel) for row in hits]

    async def record_transfers(
        self, generation: int, added: Mapping[str, int]
    ) -> dict[str, TransferredContact]:
        self._writing()
        result: dict[str, TransferredContact] = {}
        for contact_id, count in added.items():
            row = self.state.contacts.get((generation, contact_id))
            if row is None:
                continue
            result[contact_id] = TransferredContact(
                Cell(row.fact.day, row.fact.service_area, row.fact.channel),
                transfers_before=row.transfers,
                fcr_lost_now=row.fact.candidate and not row.lost,
            )
            row.transfers += count
            row.lost = row.lost or row.fact.candidate
        return result

    async def record_complaints_opened(
        self, generation: int, openings: Sequence[ComplaintOpening]
    ) -> None:
        self._writing()
        for o in openings:
            self.state.complaints.setdefault(
                (generation, o.complaint_id),
                ComplaintRow(o.service_area, o.channel, str(o.scope), 1, True),
            )

    async def complaint_channels(
        self, generation: int, complaint_ids: Sequence[str]
    ) -> dict[str, str]:
        complaints = self.state.complaints
        return {
            complaint_id: complaints[(generation, complaint_id)].channel
            for complaint_id in complaint_ids
            if (generation, complaint_id) in complaints
        }

    async def update_complaints(self, generation: int, changes: Sequence[ComplaintChange]) -> None:
        self._writing()
        for change in changes:
            row = self.state.complaints.get((generation, change.complaint_id))
            if row is not None:
                row.stage = row.stage if change.stage is None else change.stage
                row.open = row.open if change.open is None else change.open

    async def record_outcomes(
        self, generation: int, outcomes: Sequence[OutcomeRow]
    ) -> set[OutcomeKey]:
        self._writing()
        new: set[OutcomeKey] = set()
        for o in outcomes:
            key = (generation, o.complaint_id, o.stage, o.deadline)
            if key not in self.state.outcomes:
                self.state.outcomes[key] = o.on_time
                new.add((o.complaint_id, o.stage, o.deadline))
        return new

    async def record_progress(self, generation: int, progress: Sequence[TopicProgress]) -> None:
        self._writing()
        now = datetime.now(UTC)
        for p in progress:
            old = self.state.progress.get((generation, p.topic))
            self.state.progress[(generation, p.topic)] = TopicState(
                p.topic,
                p.events + (old.events if old else 0),
                max(p.last_occurred_at, old.last_occurred_at) if old else p.last_occurred_at,
                max(p.last_recorded_at, old.last_recorded_at) if old else p.last_recorded_at,
                now,
            )

    async def daily_counts(
        self,
        generation: int,
        measures: Sequence[str],
        areas: Sequence[str],
        first: date,
        last: date,
    ) -> dict[SurgeKey, float]:
        counts: dict[SurgeKey, float] = defaultdict(float)
        for (g, day, measure, area, _), value in self.state.aggregates.items():
            if g == generation and measure in measures and area in areas and first <= day <= last:
                counts[(area, measure, day)] += value
        return dict(counts)

    async def surge_ids(self, generation: int, keys: Sequence[SurgeKey]) -> dict[SurgeKey, str]:
        surges = self.state.surges
        return {
            key: surges[(generation, *key)].surge_id for key in keys if (generation, *key) in surges
        }

    async def record_surge(
        self,
        generation: int,
        key: SurgeKey,
        surge_id: str,
        *,
        count: float,
        baseline: float,
        threshold: float,
    ) -> None:
        self._writing()
        area, measure, day = key
        self.state.surges.setdefault(
            (generation, *key), Surge(surge_id, area, measure, day, count, baseline, threshold)
        )

    async def record_surges(self, generation: int, surges: Sequence[RecordedSurge]) -> None:
        for s in surges:
            await self.record_surge(
                generation,
                s.key,
                s.surge_id,
                count=s.count,
                baseline=s.baseline,
                threshold=s.threshold,
            )

    async def enqueue(self, events: Sequence[Event]) -> None:
        self._writing()
        self.state.outbox.extend(events)

    # -- reads -----------------------------------------------------------------------

    def _sums(
        self,
        generation: int,
        days: DateRange,
        group: str | None,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> dict[tuple[str, str], float]:
        sums: dict[tuple[str, str], float] = defaultdict(float)
        for (g, day, measure, area, ch), value in self.state.aggregates.items():
            if g != generation or not days.contains(day):
                continue
            if service_area is not None and area != service_area:
                continue
            if channel is not None and ch != channel:
                continue
            key = {"service_area": area, "channel": ch, None: ""}[group]
            sums[(key, measure)] += value
        return sums

    async def record_complaint_notes(self, generation: int, notes: Sequence[ComplaintNote]) -> None:
        self._writing()
        for note in notes:
            self.state.notes.setdefault((generation, note.event_id, note.kind.value), note)

    async def complaint_notes(self, generation: int, span: DateRange) -> list[ComplaintNote]:
        kept = [
            note
            for (g, _, _), note in self.state.notes.items()
            if g == generation
            and (span.start <= note.day <= span.end or note.kind is NoteKind.LEARNING_ACTION_DONE)
        ]
        return sorted(kept, key=lambda n: (n.day, n.complaint_id, str(n.event_id), n.kind.value))

    async def totals(
        self,
        generation: int,
        span: DateRange,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> dict[str, float]:
        sums = self._sums(generation, span, None, service_area=service_area, channel=channel)
        return {measure: value for (_, measure), value in sums.items()}

    async def totals_by(
        self, generation: int, span: DateRange, dimension: str
    ) -> dict[str, dict[str, float]]:
        if dimension not in ("service_area", "channel"):
            raise ValueError(f"cannot group by {dimension!r}")
        grouped: dict[str, dict[str, float]] = defaultdict(dict)
        for (key, measure), value in self._sums(generation, span, dimension).items():
            grouped[key][measure] = value
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
        days: dict[date, dict[str, float]] = defaultdict(dict)
        for (g, day, measure, area, ch), value in self.state.aggregates.items():
            if g != generation or not span.contains(day) or measure not in measures:
                continue
            if (service_area is None or area == service_area) and (
                channel is None or ch == channel
            ):
                days[day][measure] = days[day].get(measure, 0.0) + value
        return dict(days)

    async def applied_mark(self) -> tuple[int, int]:
        generation = self.state.current
        return generation, sum(
            p.events for (g, _), p in self.state.progress.items() if g == generation
        )

    async def kpi_totals(
        self,
        current: DateRange,
        previous: DateRange,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> KpiTotals:
        generation, applied = await self.applied_mark()
        filters = {"service_area": service_area, "channel": channel}
        return KpiTotals(
            generation,
            applied,
            await self.totals(generation, current, **filters),
            await self.totals(generation, previous, **filters),
            await self.open_complaints(generation, **filters),
        )

    async def open_complaints(
        self,
        generation: int,
        *,
        service_area: str | None = None,
        channel: str | None = None,
    ) -> list[OpenComplaints]:
        counts: dict[tuple[str, int], int] = defaultdict(int)
        for (g, _), row in self.state.complaints.items():
            if g != generation or not row.open:
                continue
            if service_area is not None and row.service_area != service_area:
                continue
            if channel is not None and row.channel != channel:
                continue
            counts[(row.scope, row.stage)] += 1
        return [OpenComplaints(scope, stage, n) for (scope, stage), n in sorted(counts.items())]

    async def overdue_complaints(self, generation: int) -> dict[str, int]:
        pending = {
            (complaint_id, stage)
            for (g, complaint_id, stage, _), (breached, done) in self.state.deadlines.items()
            if g == generation and breached and not done
        }
        counts: dict[str, int] = defaultdict(int)
        for (g, complaint_id), row in self.state.complaints.items():
            if g == generation and row.open and (complaint_id, row.stage) in pending:
                counts[row.service_area] += 1
        return dict(sorted(counts.items()))

    async def record_deadline_progress(
        self, generation: int, progress: Mapping[OutcomeKey, tuple[bool, bool]]
    ) -> None:
        self._writing()
        for (complaint_id, stage, deadline), (breached, done) in progress.items():
            key = (generation, complaint_id, stage, deadline)
            was_breached, was_done = self.state.deadlines.get(key, (False, False))
            self.state.deadlines[key] = (was_breached or breached, was_done or done)

    async def surges_between(self, generation: int, span: DateRange) -> list[Surge]:
        found = [
            surge
            for (g, *_), surge in self.state.surges.items()
            if g == generation and span.contains(surge.day)
        ]
        return sorted(found, key=lambda s: (s.day, s.service_area, s.measure))

    async def measure_totals_by_area(self, generation: int, measure: str) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for (g, _, m, area, _), value in self.state.aggregates.items():
            if g == generation and m == measure:
                sums[area] += value
        return dict(sums)

    async def topic_states(self, generation: int) -> list[TopicState]:
        return sorted(
            (state for (g, _), state in self.state.progress.items() if g == generation),
            key=lambda state: state.topic,
        )
