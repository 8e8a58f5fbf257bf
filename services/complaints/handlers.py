"""Complaints handlers: contacts, case actions and passing deadlines in; events out.

Every effect of one input commits in one PostgreSQL transaction: the record
that the input was processed (`shared.processed_events`), the complaint's new
state, its deadline timers and the outgoing events (`shared.outbox`). A
redelivered input therefore changes nothing, and an event leaves only once
the state that caused it is committed.
"""

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from services.complaints import erasure
from services.complaints.actions import ACTION_ADAPTER, Action
from services.complaints.domain import (
    WINDOW_TIMER_KIND,
    Complaint,
    Context,
    Decision,
    Refusal,
    RefusalReason,
    action_key,
    breach,
    decide,
    lapse,
    open_action_for,
    recalculate,
)
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE
from services.complaints.store import ComplaintsStore, WorklistQuery, note_timers
from services.complaints.working_days import WorkingDayCalendar, local_date
from shared import timers
from shared.consumer import (
    ConsumerSettings,
    DeadLetterSink,
    Fault,
    InboundRecord,
    RecordConsumer,
    RecordFault,
    RecordRejectedError,
)
from shared.consumer_lag import consumer_lag_gauge
from shared.erasure import ErasureReceipt
from shared.events.complaints import ComplaintDeadlineBreached, ComplaintEvent
from shared.events.contacts import ContactReceived
from shared.events.envelope import Event
from shared.events.vocabulary import ComplaintProcedure, DeadlineKind
from shared.postgres import Connection

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class ComplaintsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "complaints_actions",
            "Case actions handled, by action and result (applied, duplicate, refused).",
            ["action", "result"],
            registry=registry,
        )
        self.refused = Counter(
            "complaints_actions_refused",
            "Case actions refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "complaints_actions_dead_lettered",
            "Action records sent to the dead-letter topic, by error type.",
            ["error_type"],
            registry=registry,
        )
        self.breaches = Counter(
            "complaints_deadlines_breached",
            "Deadlines that passed without their action.",
            ["procedure", "stage", "deadline"],
            registry=registry,
        )
        self.open = Gauge(
            "complaints_open",
            "Open complaints by procedure, stage and status.",
            ["procedure", "stage", "status"],
            registry=registry,
        )
        self.due_today = Gauge(
            "complaints_deadlines_due_today",
            "Running deadlines due today (Europe/London).",
            registry=registry,
        )
        self.learning_actions_overdue = Gauge(
            "complaints_learning_actions_overdue",
            "Learning actions from complaint responses past their due date and not done.",
            registry=registry,
        )
        self.consumer_lag = consumer_lag_gauge(SERVICE, registry)
        for reason in RefusalReason:
            self.refused.labels(reason.value)
        for procedure in ComplaintProcedure:
            for stage in (1, 2, 3):
                for kind in DeadlineKind:
                    self.breaches.labels(procedure.value, str(stage), kind.value)


@dataclass(frozen=True, slots=True)
class Applied:
    complaint: Complaint
    events: tuple[ComplaintEvent, ...]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The action was applied before; nothing changed."""

    complaint: Complaint | None


Outcome = Applied | Duplicate | Refusal


class _RollBack(Exception):  # noqa: N818 - control flow: undo a refused action's savepoint
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class ComplaintsHandler:
    def __init__(
        self,
        *,
        store: ComplaintsStore,
        calendar: WorkingDayCalendar,
        policy: Policy,
        metrics: ComplaintsMetrics,
        clock: Clock,
    ) -> None:
        self._store = store
        self._pool = store.pool  # transactions: the store's methods take their connection
        self._calendar = calendar
        self._policy = policy
        self._metrics = metrics
        self._clock = clock

    def _context(self) -> Context:
        return Context(self._calendar, self._policy, recorded_at=self._clock())

    async def get(self, complaint_id: str) -> Complaint | None:
        return await self._store.get(complaint_id)

    async def erase_customer(self, customer_ref: str) -> ErasureReceipt:
        """Officers' free text about the customer goes from their complaints; the receipt
        says what was changed and what stays on topics until when."""
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            cases = await self._store.erase_free_text(connection, customer_ref)
        return erasure.receipt(customer_ref, cases, now)

    async def list_complaints(self, query: WorklistQuery) -> list[Complaint]:
        return await self._store.worklist(query)

    @property
    def calendar(self) -> WorkingDayCalendar:
        return self._calendar

    # -- one action ---------------------------------------------------------------

    async def _apply_in(self, connection: Connection, action: Action, input_id: UUID) -> Outcome:
        """Apply one input inside a savepoint, so a refusal undoes its processed-record."""
        try:
            async with connection.transaction():
                if not await self._store.first_time(connection, input_id):
                    return Duplicate(await self._store.load(connection, action.complaint_id))
                current = await self._store.load(connection, action.complaint_id, lock=True)
                outcome = decide(current, action, self._context())
                if isinstance(outcome, Refusal):
                    raise _RollBack(outcome)
                await self._save(connection, current, outcome)
                return Applied(outcome.complaint, outcome.events)
        except _RollBack as rolled_back:
            return rolled_back.refusal

    async def _save(
        self, connection: Connection, before: Complaint | None, decision: Decision
    ) -> None:
        await self._store.save(connection, decision.complaint)
        await self._store.sync_timers(connection, before, decision.complaint)
        await self._store.enqueue(connection, decision.events)

    def _count_breaches(self, events: Sequence[ComplaintEvent]) -> None:
        """Prometheus's breach counter, called once the events' transaction has committed."""
        for event in events:
            if isinstance(event, ComplaintDeadlineBreached):
                payload = event.payload
                self._metrics.breaches.labels(
                    payload.procedure.value, str(payload.stage), payload.deadline.value
                ).inc()

    def _count(self, action: Action, outcome: Outcome) -> None:
        """Count an input's outcome once its transaction has committed."""
        result = {Applied: "applied", Duplicate: "duplicate", Refusal: "refused"}[type(outcome)]
        self._metrics.actions.labels(action.action, result).inc()
        if isinstance(outcome, Refusal):
            self._metrics.refused.labels(outcome.reason.value).inc()
        elif isinstance(outcome, Applied):
            self._count_breaches(outcome.events)

    async def apply(self, action: Action) -> Outcome:
        """Apply one action in its own transaction (the HTTP API)."""
        async with self._pool.acquire() as connection, connection.transaction():
            outcome = await self._apply_in(connection, action, action_key(action))
        self._count(action, outcome)
        return outcome

    # -- a batch of inputs: set-based -------------------------------------------------

    async def _apply_batch(
        self, connection: Connection, inputs: Sequence[tuple[Action, UUID]]
    ) -> list[Outcome]:
        """Apply inputs in order with a fixed number of statements, whatever their count.

        The same outcomes as `_apply_in` one after another: the processed-input
        records, the complaints (loaded and locked at once) and the decisions in
        order in memory, then one write per table. An input applied earlier, in
        this batch or before, is a duplicate; a refused one leaves no record, so
        it may be applied when sent again (as a refused savepoint would).
        """
        claimed = await self._store.first_times(
            connection, list(dict.fromkeys(k for _, k in inputs))
        )
        complaints = await self._store.load_many(
            connection, sorted({action.complaint_id for action, _ in inputs})
        )
        applied: set[UUID] = set()
        refused: set[UUID] = set()
        changed: dict[str, Complaint] = {}
        changes = timers.TimerChanges()
        events: list[ComplaintEvent] = []
        context = self._context()
        outcomes: list[Outcome] = []
        for action, key in inputs:
            current = complaints.get(action.complaint_id)
            if key not in claimed or key in applied:
                outcomes.append(Duplicate(current))
                continue
            outcome = decide(current, action, context)
            if isinstance(outcome, Refusal):
                refused.add(key)
                outcomes.append(outcome)
                continue
            applied.add(key)
            refused.discard(key)
            complaints[action.complaint_id] = changed[action.complaint_id] = outcome.complaint
            note_timers(changes, current, outcome.complaint)
            events.extend(outcome.events)
            outcomes.append(Applied(outcome.complaint, outcome.events))
        await self._write_batch(connection, list(changed.values()), changes, events)
        await self._store.forget(connection, sorted(refused))
        return outcomes

    async def _write_batch(
        self,
        connection: Connection,
        complaints: Sequence[Complaint],
        changes: timers.TimerChanges,
        events: Sequence[ComplaintEvent],
    ) -> None:
        await self._store.save_many(connection, complaints)
        await self._store.write_timers(connection, changes)
        await self._store.enqueue(connection, events)

    # -- contacts -----------------------------------------------------------------

    async def handle_contact_events(self, events: Sequence[Event]) -> None:
        """Open a complaint for each complaint contact; everything else is not ours."""
        opens = [
            (event.event_id, action)
            for event in events
            if isinstance(event, ContactReceived) and (action := open_action_for(event))
        ]
        if not opens:
            return
        actions = [action for _, action in opens]
        async with self._pool.acquire() as connection, connection.transaction():
            outcomes = await self._apply_batch(connection, [(a, e) for e, a in opens])
        for action, outcome in zip(actions, outcomes, strict=True):
            self._count(action, outcome)
            if isinstance(outcome, Refusal):
                # The same contact delivered again under a new event id: already open.
                log.info("contact %s: %s", action.contact_id, outcome.describe())

    # -- case actions from the topic -----------------------------------------------

    def action_topic_consumer(
        self, dead_letter: DeadLetterSink, settings: ConsumerSettings
    ) -> RecordConsumer[Action]:
        """The actions topic's consumer: refused and unreadable actions are dead-lettered."""
        return RecordConsumer(
            decode_action,
            self.handle_actions,
            dead_letter,
            settings=settings,
            on_dead_letter=lambda error_type: self._metrics.dead_lettered.labels(error_type).inc(),
        )

    async def handle_actions(self, actions: Sequence[Action]) -> list[Fault | None]:
        """Apply a batch of actions in one transaction; a refusal is its action's fault."""
        async with self._pool.acquire() as connection, connection.transaction():
            outcomes = await self._apply_batch(
                connection, [(action, action_key(action)) for action in actions]
            )
        faults: list[Fault | None] = []
        for action, outcome in zip(actions, outcomes, strict=True):
            self._count(action, outcome)
            if isinstance(outcome, Refusal):
                faults.append(RecordFault("refused", outcome.describe()))
            else:
                faults.append(None)
        return faults

    # -- deadlines ------------------------------------------------------------------

    async def fire_timer(
        self, connection: Connection, timer: timers.Timer
    ) -> timers.OnCommit | None:
        """A deadline's or a window's day has ended (called by the scheduler).

        A deadline records its breach once; a window closes the complaint once.
        """
        complaint = await self._store.load(connection, timer.subject, lock=True)
        if complaint is None:
            log.error("timer %s names unknown complaint %s", timer.timer_id, timer.subject)
            return None
        decision = _timer_decision(complaint, timer, self._clock())
        if decision is None:  # met or moved in the same instant: nothing is late
            return None
        # Only the firing timer changes, and the scheduler marks it fired.
        await self._store.save(connection, decision.complaint)
        await self._store.enqueue(connection, decision.events)
        log.info("complaint %s: timer %s fired", complaint.complaint_id, timer.timer_id)
        return functools.partial(self._count_breaches, decision.events)

    async def fire_timers(
        self, connection: Connection, due: Sequence[timers.Timer]
    ) -> timers.OnCommit | None:
        """`fire_timer` for a claimed batch, in due order: one load and one write per table."""
        complaints = await self._store.load_many(connection, sorted({t.subject for t in due}))
        now = self._clock()
        changed: dict[str, Complaint] = {}
        events: list[ComplaintEvent] = []
        for timer in due:
            complaint = complaints.get(timer.subject)
            if complaint is None:
                log.error("timer %s names unknown complaint %s", timer.timer_id, timer.subject)
                continue
            decision = _timer_decision(complaint, timer, now)
            if decision is None:
                continue
            complaints[timer.subject] = changed[timer.subject] = decision.complaint
            events.extend(decision.events)
        # Only the firing timers change, and the scheduler marks them fired.
        await self._write_batch(connection, list(changed.values()), timers.TimerChanges(), events)
        log.info("complaints: %d timers fired, %d complaints changed", len(due), len(changed))
        return functools.partial(self._count_breaches, events)

    async def recalculate_deadlines(self) -> int:
        """Recount open deadlines if the calendar changed since they were counted.

        Returns how many complaints had a deadline moved.
        """
        today = local_date(self._clock())
        fingerprint = self._calendar.fingerprint(range(today.year - 1, today.year + 3))
        moved = 0
        async with self._pool.acquire() as connection, connection.transaction():
            await self._store.lock_recalculation(connection)
            stored = await self._store.calendar_fingerprint(connection)
            if stored == fingerprint:
                return 0
            if stored is not None:
                async for batch in self._store.open_complaints(connection):
                    moved += await self._recalculate_batch(connection, batch)
            await self._store.save_calendar_fingerprint(connection, fingerprint)
        if moved:
            log.info("calendar changed: recounted the deadlines of %d open complaints", moved)
        return moved

    async def _recalculate_batch(self, connection: Connection, batch: Sequence[Complaint]) -> int:
        """Recount a page of open complaints: one write per table, however many moved."""
        changes = timers.TimerChanges()
        updated: list[Complaint] = []
        for complaint in batch:
            recounted = recalculate(complaint, self._calendar)
            if recounted != complaint:
                note_timers(changes, complaint, recounted)
                updated.append(recounted)
        await self._store.save_many(connection, updated)
        await self._store.write_timers(connection, changes)
        return len(updated)

    async def refresh_gauges(self) -> None:
        counts = await self._store.open_counts()
        self._metrics.open.clear()
        for count in counts:
            self._metrics.open.labels(count.procedure, str(count.stage), count.status).set(
                count.count
            )
        today = local_date(self._clock())
        self._metrics.due_today.set(await self._store.deadlines_due_on(today))
        self._metrics.learning_actions_overdue.set(
            await self._store.learning_actions_overdue(today)
        )


def _timer_decision(complaint: Complaint, timer: timers.Timer, now: datetime) -> Decision | None:
    """What a timer's day ending does to its complaint; None when nothing is late."""
    if timer.kind == WINDOW_TIMER_KIND:
        return lapse(complaint, now=max(now, timer.due_at), recorded_at=now)
    return breach(
        complaint,
        int(timer.payload["stage"]),
        DeadlineKind(timer.kind),
        now=max(now, timer.due_at),
        recorded_at=now,
    )


def decode_action(record: InboundRecord) -> Action:
    """Read one case action; raises `RecordRejectedError` if it is not one, or mis-keyed."""
    try:
        action = ACTION_ADAPTER.validate_json(record.value)
    except ValidationError as error:
        raise RecordRejectedError(
            RecordFault("invalid_action", f"not a case action: {error}")
        ) from error
    if record.key is not None and record.key.decode(errors="replace") != action.complaint_id:
        raise RecordRejectedError(
            RecordFault(
                "invalid_action",
                f"record key {record.key[:100]!r} is not the complaint_id "
                f"{action.complaint_id!r}: key actions by complaint_id so that one complaint's "
                "actions stay in order",
            )
        )
    return action
