"""Canonical events in, aggregates out: one transaction per batch.

The batch's event ids are recorded (per generation) in the same transaction
as the counters they add, so a redelivered or replayed event never counts
twice and a crash loses nothing. Surges found on the way leave through the
outbox, in that same transaction.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.metrics import store
from services.metrics.domain import SurgeCheck, SurgeRule, baseline, check_surge
from services.metrics.measures import (
    NO_CHANNEL,
    SURGE_MEASURES,
    Cell,
    Increment,
    complaint_increments,
    complaint_scope,
    is_fcr_candidate,
    stateless_increments,
)
from services.metrics.periods import local_day
from shared.events import Event
from shared.events.catalogue import topic_for
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintDeadlineBreached,
    ComplaintEscalated,
    ComplaintEscalationRequested,
    ComplaintEvent,
    ComplaintOpened,
    ComplaintResponded,
    ComplaintWithdrawn,
)
from shared.events.contacts import ContactReceived, ContactTransferred
from shared.events.metrics import SurgeDetected, SurgeDetectedPayload
from shared.outbox import enqueue
from shared.postgres import Connection
from shared.processed_events import first_times

log = logging.getLogger(__name__)
SERVICE = "metrics"
# SurgeDetected event ids derive from the surge id, so a surge raised twice
# (two replicas, or a replay that publishes) is one event to every consumer.
SURGE_NAMESPACE = uuid.UUID("0f4c1f8e-4a53-4d7e-9a44-6d2f3f3c9b61")
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Rules:
    service_level_seconds: float = 20.0
    fcr_window: timedelta = timedelta(days=7)
    surge: SurgeRule = field(default_factory=SurgeRule)


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


class BatchApplier:
    """Applies batches of events to one generation's aggregates."""

    def __init__(
        self,
        *,
        rules: Rules,
        clock: Clock,
        publish_surges: bool,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self._rules = rules
        self._clock = clock
        self._publish_surges = publish_surges
        self._metrics = metrics

    async def apply(self, connection: Connection, generation: int, events: Sequence[Event]) -> int:
        """Apply the events not applied before (inside the caller's transaction)."""
        fresh_ids = await first_times(
            connection, store.processed_service(generation), [e.event_id for e in events]
        )
        fresh: list[Event] = []
        for event in events:
            if event.event_id in fresh_ids:
                fresh.append(event)
                fresh_ids.discard(event.event_id)  # the same event twice in one batch
            elif self._metrics:
                self._metrics.duplicates.labels(topic_for(type(event)).name).inc()
        if not fresh:
            return 0
        rules = self._rules
        totals: dict[tuple[Cell, str], float] = defaultdict(float)

        def add(increments: Sequence[Increment]) -> None:
            for increment in increments:
                totals[(increment.cell, increment.measure)] += increment.amount

        for event in fresh:
            add(stateless_increments(event, service_level_seconds=rules.service_level_seconds))
        add(await self._contacts(connection, generation, fresh))
        add(await self._complaints(connection, generation, fresh))
        await store.add_to_aggregates(connection, generation, totals)
        await self._check_surges(connection, generation, totals)
        await store.record_progress(connection, generation, _progress(fresh))
        if self._metrics:
            for event in fresh:
                self._metrics.processed.labels(topic_for(type(event)).name).inc()
        return len(fresh)

    async def _contacts(
        self, connection: Connection, generation: int, events: Sequence[Event]
    ) -> list[Increment]:
        received = [e for e in events if isinstance(e, ContactReceived)]
        facts = [
            store.ContactFact(
                contact_id=e.contact_id,
                customer_ref=e.payload.customer_ref,
                service_area=e.payload.service_area,
                channel=e.payload.channel.value,
                occurred_at=e.occurred_at,
                day=local_day(e.occurred_at),
                candidate=is_fcr_candidate(e),
                transfers=e.payload.transfers,
            )
            for e in received
        ]
        increments: list[Increment] = []
        pairs = sorted(
            {(f.customer_ref, f.service_area) for f in facts if f.customer_ref is not None}
        )
        await store.lock_customers(connection, [f"{c}\x1f{a}" for c, a in pairs])
        await store.record_contacts(connection, generation, facts)
        for cell in await store.mark_recontacted(
            connection, generation, pairs, self._rules.fcr_window
        ):
            increments.append(Increment(cell, "fcr_lost"))
        for event in events:
            if not isinstance(event, ContactTransferred):
                continue
            transferred = await store.record_transfer(connection, generation, event.contact_id)
            if transferred is None:
                log.warning("transfer of unknown contact %s not counted", event.contact_id)
                continue
            if transferred.fcr_lost_now:
                increments.append(Increment(transferred.cell, "fcr_lost"))
            if transferred.cell.channel == "phone":
                increments.append(Increment(transferred.cell, "call_transfers"))
                if transferred.first_transfer:
                    increments.append(Increment(transferred.cell, "calls_transferred"))
        return increments

    async def _complaints(
        self, connection: Connection, generation: int, events: Sequence[Event]
    ) -> list[Increment]:
        complaints = [e for e in events if isinstance(e, ComplaintEvent)]
        if not complaints:
            return []
        for event in complaints:
            if isinstance(event, ComplaintOpened):
                await store.record_complaint_opened(
                    connection,
                    generation,
                    event.complaint_id,
                    service_area=event.payload.service_area,
                    channel=event.payload.channel.value,
                    scope=complaint_scope(event.payload.procedure),
                )
        channels = await store.complaint_channels(
            connection, generation, sorted({e.complaint_id for e in complaints})
        )
        increments: list[Increment] = []
        for event in complaints:
            channel = channels.get(event.complaint_id, NO_CHANNEL)
            increments += complaint_increments(event, channel)
            increments += await self._complaint_state(connection, generation, event, channel)
        return increments

    async def _complaint_state(
        self, connection: Connection, generation: int, event: ComplaintEvent, channel: str
    ) -> list[Increment]:
        match event:
            case ComplaintEscalated(payload=p):
                await store.update_complaint(
                    connection, generation, event.complaint_id, stage=p.to_stage, open_=True
                )
                return []
            case ComplaintEscalationRequested():  # reopens a case closed inside its window
                await store.update_complaint(connection, generation, event.complaint_id, open_=True)
                return []
            case ComplaintClosed() | ComplaintWithdrawn():
                await store.update_complaint(
                    connection, generation, event.complaint_id, open_=False
                )
                return []
            case ComplaintAcknowledged(payload=p):
                stage, deadline, on_time = p.stage, "acknowledge", True
            case ComplaintResponded(payload=p):
                stage, deadline, on_time = p.stage, "respond", True
            case ComplaintDeadlineBreached(payload=p):
                stage, deadline, on_time = p.stage, p.deadline.value, False
            case _:
                return []
        if not await store.record_outcome(
            connection, generation, event.complaint_id, stage, deadline, on_time=on_time
        ):
            return []
        scope = complaint_scope(event.payload.procedure)
        name = "ack" if deadline == "acknowledge" else "response"
        cell = Cell(local_day(event.occurred_at), event.payload.service_area, channel)
        increments = [Increment(cell, f"{scope}_{name}_due_s{stage}")]
        if on_time:
            increments.append(Increment(cell, f"{scope}_{name}_on_time_s{stage}"))
        return increments

    async def _check_surges(
        self,
        connection: Connection,
        generation: int,
        totals: dict[tuple[Cell, str], float],
    ) -> None:
        touched = sorted(
            {
                (cell.service_area, measure, cell.day)
                for cell, measure in totals
                if measure in SURGE_MEASURES
            }
        )
        if not touched:
            return
        rule = self._rules.surge
        days = [day for _, _, day in touched]
        counts = await store.daily_counts(
            connection,
            generation,
            SURGE_MEASURES,
            sorted({area for area, _, _ in touched}),
            min(days) - timedelta(days=rule.window_days + 1),
            max(days),
        )
        window = [
            (area, measure, day - timedelta(days=back))
            for area, measure, day in touched
            for back in range(rule.window_days, -1, -1)
        ]
        known = await store.surge_ids(connection, generation, window)
        for area, measure, day in touched:  # in day order: a surge found feeds the next day
            key = (area, measure, day)
            if key in known:
                continue  # this day already raised (or continued) its surge
            history = baseline(
                [
                    (counts.get((area, measure, past), 0.0), (area, measure, past) in known)
                    for back in range(rule.window_days, 0, -1)
                    for past in [day - timedelta(days=back)]
                ]
            )
            check = check_surge(counts.get(key, 0.0), history, rule)
            if not check.surging:
                continue
            previous = known.get((area, measure, day - timedelta(days=1)))
            surge_id = previous or f"{area}:{measure}:{day.isoformat()}"
            await store.record_surge(
                connection,
                generation,
                key,
                surge_id,
                count=check.count,
                baseline=check.baseline,
                threshold=check.threshold,
            )
            known[key] = surge_id
            # Raised on the surge's first recent day: its first day when it is
            # happening now, or today's when it began in replayed history (a
            # backfill, a restart after days away). The event id derives from
            # the surge id, so even a second raising is one event to consumers.
            first_recent = previous is None or not self._should_publish(day - timedelta(days=1))
            if first_recent and self._should_publish(day):
                event = surge_event(surge_id, area, measure, day, check, self._clock())
                await enqueue(connection, SERVICE, [event])

    def _should_publish(self, day: date) -> bool:
        # Alerts are for what is happening now: history replayed or a late
        # event about an old day records the surge but raises no event.
        return self._publish_surges and day >= local_day(self._clock()) - timedelta(days=1)


def surge_event(
    surge_id: str, area: str, measure: str, day: date, check: SurgeCheck, now: datetime
) -> SurgeDetected:
    return SurgeDetected(
        event_id=uuid.uuid5(SURGE_NAMESPACE, surge_id),
        surge_id=surge_id,
        occurred_at=now,
        source="civicpulse-metrics",
        payload=SurgeDetectedPayload(
            service_area=area,
            measure="contacts" if measure == "contacts_received" else "complaints",
            day=day,
            count=int(check.count),
            baseline=check.baseline,
            threshold=check.threshold,
        ),
    )


def _progress(events: Sequence[Event]) -> list[store.TopicProgress]:
    by_topic: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_topic[topic_for(type(event)).name].append(event)
    return [
        store.TopicProgress(
            topic,
            len(items),
            max(e.occurred_at for e in items),
            max(e.recorded_at for e in items),
        )
        for topic, items in by_topic.items()
    ]


class LiveConsumer:
    """The live path: each batch goes to the current generation in one transaction."""

    def __init__(self, pool: asyncpg.Pool, applier: BatchApplier) -> None:
        self._pool = pool
        self._applier = applier

    async def handle(self, events: Sequence[Event]) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            generation = await store.live_generation(connection, lock=True)
            await self._applier.apply(connection, generation, events)
