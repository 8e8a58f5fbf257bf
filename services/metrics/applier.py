"""Canonical events in, aggregates out: one transaction per batch.

The batch's event ids are recorded (per generation) in the same transaction
as the counters they add, so a redelivered or replayed event never counts
twice and a crash loses nothing. Surges found on the way leave through the
outbox, in that same transaction. What each event counts is `handlers.py`.
"""

import asyncio
import uuid
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter

from services.metrics.domain import Rules
from services.metrics.domain.complaint_notes import complaint_notes
from services.metrics.domain.measures import (
    Cell,
    Counts,
    Increment,
    Measure,
    complaint_scope,
    contact_cell,
    count_contact_received,
    deadline_outcome,
    is_fcr_candidate,
)
from services.metrics.domain.surges import (
    SURGE_SUBJECTS,
    FoundSurge,
    counts_needed,
    find_surges,
    raises_alert,
    surge_keys,
    window_keys,
)
from services.metrics.handlers import HANDLERS, Batch, count_event
from services.metrics.periods import local_day
from services.metrics.settings import SERVICE
from services.metrics.store import (
    ComplaintChange,
    ComplaintOpening,
    ContactFact,
    ContactSpan,
    MetricsStore,
    OutcomeKey,
    OutcomeRow,
    RecordedSurge,
    TopicProgress,
)
from shared.events import Event
from shared.events.catalogue import ALL_EVENTS, topic_for
from shared.events.complaints import (
    ComplaintEvent,
    ComplaintOpened,
)
from shared.events.contacts import ContactReceived, ContactTransferred
from shared.events.metrics import SurgeDetected, SurgeDetectedPayload

SURGE_NAMESPACE = uuid.UUID("0f4c1f8e-4a53-4d7e-9a44-6d2f3f3c9b61")
Clock = Callable[[], datetime]
Totals = dict[tuple[Cell, str], float]  # counter increments: (cell, measure) → amount
R = TypeVar("R")
W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """What one batch changed, reported to Prometheus only after its commit."""

    progress: Sequence[TopicProgress] = ()
    duplicates: Mapping[str, int] = field(default_factory=dict)  # events per topic

    @property
    def events(self) -> int:
        return sum(topic.events for topic in self.progress)


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "metrics_events_processed",
            "Canonical events applied to the aggregates (redeliveries excluded).",
            ["topic"],
            registry=registry,
        )
        self.duplicates = Counter(
            "metrics_events_duplicate",
            "Canonical events received again and ignored (already applied).",
            ["topic"],
            registry=registry,
        )

    def count(self, applied: AppliedBatch) -> None:
        """Count a batch whose transaction has committed (a rolled-back one counts nothing)."""
        for topic in applied.progress:
            self.processed.labels(topic.topic).inc(topic.events)
        for topic_name, count in applied.duplicates.items():
            self.duplicates.labels(topic_name).inc(count)


class BatchApplier:
    """Applies batches of events to one generation's aggregates."""

    def __init__(self, *, rules: Rules, clock: Clock, publish_surges: bool) -> None:
        self._rules = rules
        self._clock = clock
        self._publish_surges = publish_surges

    async def apply(
        self,
        store: MetricsStore,
        generation: int,
        events: Sequence[Event],
        *,
        carry: Totals | None = None,
    ) -> int:
        """Apply the events not applied before; returns how many were new."""
        return (await self.apply_batch(store, generation, events, carry=carry)).events

    async def apply_batch(
        self,
        store: MetricsStore,
        generation: int,
        events: Sequence[Event],
        *,
        carry: Totals | None = None,
    ) -> AppliedBatch:
        """Apply the events not applied before (`store` is bound to the caller's transaction).

        With `carry`, the batch's counter increments are added to it instead of being
        written (see `add_totals`): for a rebuild's generation, which no one reads or
        writes until it is switched in, so that its counters are written once per many
        batches rather than once per batch.
        """
        if not events:
            return AppliedBatch()
        level = self._rules.service_level_seconds
        # PostgreSQL records the ids while this process plans the batch (another core).
        fresh_ids, plan = await while_in_flight(
            store.record_new(generation, [e.event_id for e in events]), lambda: _plan(events, level)
        )
        duplicates: Tally[str] = Tally()
        if fresh_ids is not None:  # some were applied before (or twice in the batch)
            fresh: list[Event] = []
            for event in events:
                if event.event_id in fresh_ids:
                    fresh.append(event)
                    fresh_ids.discard(event.event_id)  # the same event twice in one batch
                else:
                    duplicates[TOPIC_OF[type(event)]] += 1
            if not fresh:
                return AppliedBatch(duplicates=duplicates)
            plan = _plan(fresh, level)  # planned again for what is new
        batch = Batch(store, generation, self._rules)
        totals: Totals = plan.counts

        def add(increments: Sequence[Increment]) -> None:
            for cell, measure, amount in increments:
                totals[(cell, measure)] += amount

        def count_stateless() -> None:
            for event in plan.stateless:
                add(count_event(batch, event))

        # Facts first, for the whole batch: a transfer or a re-contact may
        # arrive in the same batch as the contact it is about.
        await store.lock_customers(plan.customer_keys)
        # The counters that need no memory are added while the contacts are written.
        await while_in_flight(store.record_contacts(generation, plan.contacts), count_stateless)
        lost = await store.mark_recontacted(generation, plan.spans, self._rules.fcr_window)
        add([Increment(cell, Measure.FCR_LOST) for cell in lost])
        await self._record_transfers(batch, plan.transfers)
        await self._record_complaints(batch, plan.complaints)
        for event in plan.stateful:
            add(HANDLERS[type(event)](batch, event))
        await store.update_complaints(
            generation,
            [
                ComplaintChange(complaint_id, stage, open_)
                for complaint_id, (stage, open_) in batch.complaint_changes.items()
            ],
        )
        await store.record_deadline_progress(generation, batch.deadline_progress)
        await store.record_complaint_notes(
            generation, [note for event in plan.complaints for note in complaint_notes(event)]
        )
        if carry is None:
            await self.add_totals(store, generation, totals)
        else:
            for key, value in totals.items():
                carry[key] = carry.get(key, 0.0) + value
        await store.record_progress(generation, plan.progress)
        return AppliedBatch(plan.progress, duplicates)

    async def _record_transfers(self, batch: Batch, events: Sequence[ContactTransferred]) -> None:
        """Count every transfer of the batch in one statement; the handler adds the counters."""
        for event in events:
            added = batch.transfers_added.get(event.contact_id, 0)
            batch.transfers_added[event.contact_id] = added + 1
        batch.transferred = await batch.store.record_transfers(
            batch.generation, batch.transfers_added
        )

    async def _record_complaints(self, batch: Batch, complaints: Sequence[ComplaintEvent]) -> None:
        """Record the complaints opened and the deadlines' first outcomes, then learn the
        channel of every complaint in the batch: one statement each, for the whole batch.
        """
        if not complaints:
            return
        openings: dict[str, ComplaintOpening] = {}
        outcomes: dict[OutcomeKey, OutcomeRow] = {}
        for event in complaints:
            if isinstance(event, ComplaintOpened):
                openings.setdefault(
                    event.complaint_id,
                    ComplaintOpening(
                        event.complaint_id,
                        service_area=event.payload.service_area,
                        channel=event.payload.channel.value,
                        scope=complaint_scope(event.payload.procedure),
                    ),
                )
            outcome = deadline_outcome(event)
            if outcome is not None:
                row = OutcomeRow(
                    event.complaint_id, outcome.stage, outcome.deadline.value, outcome.on_time
                )
                outcomes.setdefault((row.complaint_id, row.stage, row.deadline), row)
        await batch.store.record_complaints_opened(batch.generation, list(openings.values()))
        batch.new_outcomes = await batch.store.record_outcomes(
            batch.generation, list(outcomes.values())
        )
        batch.complaint_channels = await batch.store.complaint_channels(
            batch.generation, sorted({e.complaint_id for e in complaints})
        )

    async def add_totals(self, store: MetricsStore, generation: int, totals: Totals) -> None:
        """Add counter increments to the counters and their rollups, then look for the
        surges the new counts make (in `store`'s transaction).

        Surges are judged on the counts as written, so increments carried over many
        batches are judged once, on the larger counts: a surge day is found when its
        count passes the threshold, whichever batch takes it there.
        """
        await store.add_to_aggregates(generation, totals)  # and their rollups
        await self._check_surges(store, generation, totals)

    async def _check_surges(self, store: MetricsStore, generation: int, totals: Totals) -> None:
        touched = surge_keys((cell.service_area, measure, cell.day) for cell, measure in totals)
        if not touched:
            return
        rule = self._rules.surge
        first, last = counts_needed(touched, rule)
        counts = await store.daily_counts(
            generation,
            sorted({measure for _, measure, _ in touched}),
            sorted({area for area, _, _ in touched}),
            first,
            last,
        )
        known = await store.surge_ids(generation, window_keys(touched, rule))
        found = find_surges(touched, counts, known, rule)
        await store.record_surges(
            generation,
            [
                RecordedSurge(
                    surge.key,
                    surge.surge_id,
                    count=surge.check.count,
                    baseline=surge.check.baseline,
                    threshold=surge.check.threshold,
                )
                for surge in found
            ],
        )
        # The event id derives from the surge id, so even a second raising
        # (another replica, a replay) is one event to consumers.
        if self._publish_surges:
            now = self._clock()
            today = local_day(now)
            raised = [surge_event(s, now) for s in found if raises_alert(s, today)]
            if raised:
                await store.enqueue(raised)


def surge_event(surge: FoundSurge, now: datetime) -> SurgeDetected:
    area, measure, day = surge.key
    return SurgeDetected(
        event_id=uuid.uuid5(SURGE_NAMESPACE, surge.surge_id),
        surge_id=surge.surge_id,
        occurred_at=now,
        source=f"civicpulse-{SERVICE}",
        payload=SurgeDetectedPayload(
            service_area=area,
            measure=SURGE_SUBJECTS[measure],
            day=day,
            count=int(surge.check.count),
            baseline=surge.check.baseline,
            threshold=surge.check.threshold,
        ),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch's events ask of the store and the handlers, worked out without I/O."""

    contacts: list[ContactFact]  # the contacts received, recorded for the whole batch first
    spans: list[ContactSpan]  # their (customer, area) pairs, for the re-contact check
    customer_keys: list[str]  # the pairs' lock keys (`MetricsStore.lock_customers`)
    counts: Counts  # the contacts' counters (`count_contact_received`), added up
    stateless: list[Event]  # the other events counted by `count_event`: no memory needed
    stateful: list[Event]  # the other handled events, in order: they read what was recorded
    transfers: list[ContactTransferred]
    complaints: list[ComplaintEvent]
    progress: list[TopicProgress]


# Told apart by exact type (events are upcast, so of these classes only): pydantic's
# models have an ABC metaclass, whose `isinstance` costs several times a set lookup.
COMPLAINT_CLASSES = frozenset(cls for cls in ALL_EVENTS if issubclass(cls, ComplaintEvent))
TOPIC_OF = {cls: topic_for(cls).name for cls in ALL_EVENTS}


def _plan(events: Sequence[Event], service_level_seconds: float) -> Plan:
    """One pass over the batch: most events are contacts received, and each of them
    becomes its fact, its counters and its (customer, area) span here, its day worked
    out once."""
    contacts: list[ContactFact] = []
    counts: Counts = defaultdict(float)
    spans: dict[tuple[str, str], list[datetime]] = {}  # (customer, area) → [first, last]
    stateless: list[Event] = []
    stateful: list[Event] = []
    transfers: list[ContactTransferred] = []
    complaints: list[ComplaintEvent] = []
    progress: dict[str, list[Any]] = {}  # topic → [events, last occurred_at, last recorded_at]
    for event in events:
        at = event.occurred_at
        topic = TOPIC_OF[type(event)]
        seen = progress.get(topic)
        if seen is None:
            progress[topic] = [1, at, event.recorded_at]
        else:
            seen[0] += 1
            if at > seen[1]:
                seen[1] = at
            if event.recorded_at > seen[2]:
                seen[2] = event.recorded_at
        if type(event) is ContactReceived:
            payload = event.payload
            cell = contact_cell(event)
            customer_ref = payload.customer_ref
            contacts.append(
                ContactFact(
                    event.contact_id,
                    customer_ref,
                    cell.service_area,
                    cell.channel,
                    at,
                    cell.day,
                    is_fcr_candidate(event),
                    payload.transfers,
                )
            )
            count_contact_received(
                counts, cell, payload, service_level_seconds=service_level_seconds
            )
            if customer_ref is not None:
                span = spans.get((customer_ref, cell.service_area))
                if span is None:
                    spans[(customer_ref, cell.service_area)] = [at, at]
                elif at < span[0]:
                    span[0] = at
                elif at > span[1]:
                    span[1] = at
            continue
        handler = HANDLERS.get(type(event))
        if handler is count_event:
            stateless.append(event)
        elif handler is not None:
            stateful.append(event)
        if type(event) is ContactTransferred:
            transfers.append(event)
        elif type(event) in COMPLAINT_CLASSES:
            complaints.append(cast(ComplaintEvent, event))
    # Not sorted: the store takes the pairs' locks in bucket order itself, and sorting a
    # rebuild's 20,000 pairs here was a third of its applier's time.
    return Plan(
        contacts,
        [
            ContactSpan(customer, area, first, last)
            for (customer, area), (first, last) in spans.items()
        ],
        [f"{customer}\x1f{area}" for customer, area in spans],
        counts,
        stateless,
        stateful,
        transfers,
        complaints,
        [TopicProgress(topic, *seen) for topic, seen in progress.items()],
    )


async def while_in_flight(statement: Awaitable[R], work: Callable[[], W]) -> tuple[R, W]:
    """`statement`'s result and `work()`'s, the work done while the statement is in flight.

    The statement is sent first (one turn of the event loop), then `work` (pure Python,
    no I/O on the connection) runs while PostgreSQL, another process, executes it.
    """
    sent = asyncio.ensure_future(statement)
    await asyncio.sleep(0)
    try:
        done = work()
    except BaseException:
        sent.cancel()  # the transaction is rolled back as the error leaves it
        raise
    return await sent, done


class LiveConsumer:
    """The live path: each batch goes to the current generation in one transaction."""

    def __init__(
        self, store: MetricsStore, applier: BatchApplier, metrics: ConsumerMetrics | None = None
    ) -> None:
        self._store = store
        self._applier = applier
        self._metrics = metrics

    async def handle(self, events: Sequence[Event]) -> None:
        async with self._store.transaction() as tx:
            generation = await tx.live_generation(lock=True)
            applied = await self._applier.apply_batch(tx, generation, events)
        # After the commit: a batch that fails and is retried event by event counts once.
        if self._metrics:
            self._metrics.count(applied)
