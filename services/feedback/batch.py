"""A batch of resolutions decided with a fixed number of statements, whatever its size.

`DecisionBatch` stands in for the store while `FeedbackHandler.handle` runs its
per-event methods over a batch: what they read (complaint facts, the customer's
opt-out, route and earlier requests, the cases already requested) was loaded
for the whole batch at once, after the batch's customers were locked; what
they write (complaint facts, requests, suppressions, send timers) is kept in
memory, so later events in the batch see it, and written at the end with one
statement per table. The decisions are therefore those of the events one by
one, in order.

A store method the decision handlers call that is not batched here raises
`NotBatchedError` instead of reading around the batch's state: add it here.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn
from uuid import UUID

from services.feedback.notifications import ContactRoute, NotifyMessage
from services.feedback.store import (
    ComplaintFacts,
    CustomerState,
    FeedbackStore,
    Suppression,
    SurveyRequest,
)
from shared import timers
from shared.events import ContactReceived, ContactResolved, Event
from shared.events.complaints import ComplaintEvent, ComplaintOpened
from shared.events.vocabulary import CaseType

CaseKey = tuple[CaseType, str]


class NotBatchedError(RuntimeError):
    """A decision handler asked the batch for something it did not load."""


class BatchConflictError(RuntimeError):
    """A request the batch decided to insert was inserted meanwhile by another writer.

    Raised before anything else is written, so that the batch is decided again
    record by record (the consumer's retry), where each decision sees the other
    writer's request; a batch of one is decided again at once by the handler.
    """


@dataclass
class BatchKeys:
    """What a batch's decisions may read: the complaints, contacts, customers and cases."""

    complaint_ids: set[str] = field(default_factory=set)
    contact_ids: set[str] = field(default_factory=set)
    customers: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, events: Iterable[Event]) -> "BatchKeys":
        keys = cls()
        for event in events:
            if isinstance(event, ContactReceived | ContactResolved):
                keys.contact_ids.add(event.contact_id)
                if event.payload.customer_ref is not None:
                    keys.customers.add(event.payload.customer_ref)
            elif isinstance(event, ComplaintEvent):
                keys.complaint_ids.add(event.complaint_id)
                if isinstance(event, ComplaintOpened):
                    if event.payload.customer_ref is not None:
                        keys.customers.add(event.payload.customer_ref)
                    if event.payload.contact_id is not None:
                        keys.contact_ids.add(event.payload.contact_id)
        return keys

    def add_facts(self, facts: Iterable[ComplaintFacts]) -> None:
        for fact in facts:
            self.complaint_ids.add(fact.complaint_id)
            if fact.contact_id is not None:
                self.contact_ids.add(fact.contact_id)
            if fact.customer_ref is not None:
                self.customers.add(fact.customer_ref)

    def case_keys(self) -> list[CaseKey]:
        return [(CaseType.CONTACT, c) for c in sorted(self.contact_ids)] + [
            (CaseType.COMPLAINT, c) for c in sorted(self.complaint_ids)
        ]


class DecisionBatch(FeedbackStore):
    """The store for one batch's decisions: reads from memory, writes buffered."""

    def __init__(self, store: FeedbackStore, keys: BatchKeys) -> None:
        # No pool or connection of its own: everything goes through `store` at
        # `load` and `write`, so nothing can read around the batch's state.
        self._store = store
        self._keys = keys
        self._complaints: dict[str, ComplaintFacts] = {}
        self._customers: dict[str, CustomerState] = {}
        self._requested: set[CaseKey] = set()
        self._remembered: dict[str, ComplaintFacts] = {}
        self._withdrawn: set[str] = set()
        self._requests: list[SurveyRequest] = []
        self._suppressions: list[Suppression] = []
        self._timers = timers.TimerChanges()

    @classmethod
    async def load(cls, store: FeedbackStore, events: Sequence[Event]) -> "DecisionBatch":
        """Load and lock what the events' decisions read: four statements."""
        keys = BatchKeys.of(events)
        facts = await store.complaints_for(sorted(keys.complaint_ids), sorted(keys.contact_ids))
        keys.add_facts(facts)
        batch = cls(store, keys)
        batch._complaints = {fact.complaint_id: fact for fact in facts}
        customers = sorted(keys.customers)
        await store.lock_customers(customers)
        batch._customers = await store.customer_states(customers)
        batch._requested = await store.requested_cases(keys.case_keys())
        return batch

    async def write(self) -> None:
        """Write what the batch decided: one statement per table.

        The requests go first: if another writer inserted one meanwhile, nothing
        else is written before `BatchConflictError` says so.
        """
        inserted = await self._store.insert_requests(self._requests)
        if len(inserted) != len(self._requests):
            raise BatchConflictError(
                f"{len(self._requests) - len(inserted)} requests were inserted meanwhile"
            )
        facts = [
            self._complaints[complaint_id]
            for complaint_id in sorted(self._remembered.keys() | self._withdrawn)
        ]
        await self._store.remember_complaints(facts)
        await self._store.record_suppressions(self._suppressions)
        await self._store.write_timers(self._timers)

    @property
    def _db(self) -> NoReturn:
        raise NotBatchedError(
            "a decision handler called a store method DecisionBatch does not batch"
        )

    @property
    def _transaction(self) -> NoReturn:
        raise NotBatchedError(
            "a decision handler called a store method DecisionBatch does not batch"
        )

    def _known(self, keys: set[str], key: str, what: str) -> None:
        if key not in keys:
            raise NotBatchedError(f"{what} {key!r} was not loaded for this batch")

    # Complaints

    async def remember_complaint(self, facts: ComplaintFacts) -> None:
        self._known(self._keys.complaint_ids, facts.complaint_id, "complaint")
        if facts.complaint_id not in self._complaints:  # ON CONFLICT DO NOTHING
            self._complaints[facts.complaint_id] = facts
            self._remembered[facts.complaint_id] = facts

    async def mark_withdrawn(self, complaint_id: str) -> None:
        self._known(self._keys.complaint_ids, complaint_id, "complaint")
        facts = self._complaints.get(complaint_id)
        if facts is not None and not facts.withdrawn:
            self._complaints[complaint_id] = dataclasses.replace(facts, withdrawn=True)
            self._withdrawn.add(complaint_id)

    async def complaint(self, complaint_id: str) -> ComplaintFacts | None:
        self._known(self._keys.complaint_ids, complaint_id, "complaint")
        return self._complaints.get(complaint_id)

    async def complaints_from_contact(self, contact_id: str) -> list[str]:
        self._known(self._keys.contact_ids, contact_id, "contact")
        return [c.complaint_id for c in self._complaints.values() if c.contact_id == contact_id]

    # Customers

    async def lock_customer(self, customer_ref: str) -> None:
        self._known(self._keys.customers, customer_ref, "customer")  # locked at load

    async def is_opted_out(self, customer_ref: str) -> bool:
        return self._customer(customer_ref).opted_out

    async def contact_route(self, customer_ref: str) -> ContactRoute | None:
        return self._customer(customer_ref).route

    async def surveyed_resolutions(self, customer_ref: str) -> tuple[datetime, ...]:
        return tuple(self._customer(customer_ref).surveyed_resolutions)

    def _customer(self, customer_ref: str) -> CustomerState:
        self._known(self._keys.customers, customer_ref, "customer")
        return self._customers.setdefault(customer_ref, CustomerState(False, None))

    # Requests, suppressions, timers

    async def any_request_for(self, case_keys: Sequence[CaseKey]) -> bool:
        for case_type, case_id in case_keys:
            ids = (
                self._keys.contact_ids
                if case_type is CaseType.CONTACT
                else self._keys.complaint_ids
            )
            self._known(ids, case_id, case_type.value)
        return any(key in self._requested for key in case_keys)

    async def insert_request(self, request: SurveyRequest) -> bool:
        key = (request.case_type, request.case_id)
        if key in self._requested:  # ON CONFLICT DO NOTHING: one request per case
            return False
        self._requested.add(key)
        self._requests.append(request)
        self._customer(request.customer_ref).surveyed_resolutions.append(request.resolved_at)
        return True

    async def record_suppression(
        self, event_id: object, case_type: CaseType, case_id: str, reason: str, now: datetime
    ) -> None:
        assert isinstance(event_id, UUID)
        self._suppressions.append(Suppression(event_id, case_type, case_id, reason, now))

    async def schedule_timer(self, timer: timers.Timer) -> None:
        self._timers.schedule(timer)

    async def cancel_timer(self, timer_id: str) -> None:
        self._timers.cancel(timer_id)


class SendBatch(FeedbackStore):
    """The store for one batch of due send and expiry timers: the same pattern.

    The requests (locked) and their customers' opt-outs and routes are loaded
    at once; status changes, outgoing events, Notify messages and expiry
    timers are written at the end, one statement each.
    """

    def __init__(self, store: FeedbackStore) -> None:
        self._store = store
        self._requests: dict[str, SurveyRequest] = {}
        self._customers: dict[str, CustomerState] = {}
        self._changed: dict[str, SurveyRequest] = {}
        self._events: list[Event] = []
        self._messages: list[NotifyMessage] = []
        self._timers = timers.TimerChanges()

    @classmethod
    async def load(cls, store: FeedbackStore, due: Sequence[timers.Timer]) -> "SendBatch":
        batch = cls(store)
        batch._requests = await store.survey_requests(sorted({t.subject for t in due}))
        customers = sorted({r.customer_ref for r in batch._requests.values()})
        batch._customers = await store.customer_states(customers)
        return batch

    def request(self, request_id: str) -> SurveyRequest | None:
        return self._requests.get(request_id)

    async def write(self) -> None:
        await self._store.update_requests(list(self._changed.values()))
        await self._store.enqueue(self._events)
        await self._store.enqueue_notifications(self._messages)
        await self._store.write_timers(self._timers)

    @property
    def _db(self) -> NoReturn:
        raise NotBatchedError("a timer handler called a store method SendBatch does not batch")

    @property
    def _transaction(self) -> NoReturn:
        raise NotBatchedError("a timer handler called a store method SendBatch does not batch")

    def _customer(self, customer_ref: str) -> CustomerState:
        if customer_ref not in self._customers:
            raise NotBatchedError(f"customer {customer_ref!r} was not loaded for this batch")
        return self._customers[customer_ref]

    def _update(self, request_id: str, when: str | None, **changes: object) -> bool:
        """The conditional UPDATEs of the single calls, on the locked rows in memory."""
        request = self._requests.get(request_id)
        if request is None or (when is not None and request.status != when):
            return False
        updated = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
        self._requests[request_id] = self._changed[request_id] = updated
        return True

    async def is_opted_out(self, customer_ref: str) -> bool:
        return self._customer(customer_ref).opted_out

    async def contact_route(self, customer_ref: str) -> ContactRoute | None:
        return self._customer(customer_ref).route

    async def mark_requested(self, request_id: str, now: datetime, expires_at: datetime) -> None:
        self._update(request_id, None, status="requested", requested_at=now, expires_at=expires_at)

    async def cancel_request(self, request_id: str, reason: str) -> None:
        self._update(request_id, "scheduled", status="cancelled", cancel_reason=reason)

    async def mark_expired(self, request_id: str) -> bool:
        return self._update(request_id, "requested", status="expired")

    async def enqueue(self, events: Sequence[Event]) -> None:
        self._events.extend(events)

    async def enqueue_notification(self, message: NotifyMessage) -> None:
        self._messages.append(message)

    async def schedule_timer(self, timer: timers.Timer) -> None:
        self._timers.schedule(timer)

    async def cancel_timer(self, timer_id: str) -> None:
        self._timers.cancel(timer_id)
