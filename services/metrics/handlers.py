"""What each canonical event counts: a table of verb-named handlers.

Each event type has its handler in `HANDLERS`, a verb saying what it does to
the counters; the rules they apply live in `services.metrics.domain`. The
batch around them (one transaction, processed-event records, surges through
the outbox) is `services.metrics.applier`.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.metrics.domain import Rules
from services.metrics.domain.measures import (
    NO_CHANNEL,
    DeadlineEvent,
    Increment,
    Measure,
    complaint_increments,
    deadline_outcome,
    outcome_increments,
    stateless_increments,
    transfer_increments,
)
from services.metrics.store import (
    MetricsStore,
    OutcomeKey,
    TransferredContact,
)
from shared.events import Event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreached,
    ComplaintDeadlineExtended,
    ComplaintEscalated,
    ComplaintEscalationRefused,
    ComplaintEscalationRequested,
    ComplaintEvent,
    ComplaintLearningActionCompleted,
    ComplaintOmbudsmanDecided,
    ComplaintOpened,
    ComplaintReferredToOmbudsman,
    ComplaintResponded,
    ComplaintWithdrawn,
)
from shared.events.contacts import (
    CallAbandoned,
    ContactReceived,
    ContactResolved,
    ContactTransferred,
    MysteryShopAssessed,
)
from shared.events.feedback import (
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionResponded,
)
from shared.events.metrics import SurgeDetected

log = logging.getLogger(__name__)
# SurgeDetected event ids derive from the surge id, so a surge raised twice
# (two replicas, or a replay that publishes) is one event to every consumer.


@dataclass
class Batch:
    """One batch in its transaction: the store bound to it, and what the batch knows."""

    store: MetricsStore
    generation: int
    rules: Rules
    complaint_channels: dict[str, str] = field(default_factory=dict)
    # Recorded for the whole batch before the handlers run (one statement each):
    transfers_added: dict[str, int] = field(default_factory=dict)  # contact id → transfers
    transferred: dict[str, TransferredContact] = field(default_factory=dict)
    new_outcomes: set[OutcomeKey] = field(default_factory=set)  # first outcomes, not counted yet
    # Written for the whole batch after the handlers ran (one statement each):
    # complaint id → (stage, open);
    complaint_changes: dict[str, tuple[int | None, bool | None]] = field(default_factory=dict)
    # (complaint id, stage, deadline) → (breached, done), each seen in the batch or before;
    deadline_progress: dict[OutcomeKey, tuple[bool, bool]] = field(default_factory=dict)

    def change_complaint(
        self, complaint_id: str, *, stage: int | None = None, open_: bool | None = None
    ) -> None:
        """What the complaint's fact becomes; later changes in the batch win, as one by one."""
        old_stage, old_open = self.complaint_changes.get(complaint_id, (None, None))
        self.complaint_changes[complaint_id] = (
            old_stage if stage is None else stage,
            old_open if open_ is None else open_,
        )

    def progress_deadline(self, key: OutcomeKey, *, done: bool) -> None:
        """A deadline met (`done`) or breached; both flags only ever turn on, in any order."""
        breached, was_done = self.deadline_progress.get(key, (False, False))
        self.deadline_progress[key] = (breached or not done, was_done or done)


# Handlers run no I/O: what they need was read for the whole batch before them, and what
# they record beyond counters is kept on the batch and written once after them.
Handler = Callable[[Batch, Any], list[Increment]]


def count_event(batch: Batch, event: Event) -> list[Increment]:
    """Events whose counters need no memory: they add what the event says."""
    return stateless_increments(event, service_level_seconds=batch.rules.service_level_seconds)


def count_transfer(batch: Batch, event: ContactTransferred) -> list[Increment]:
    """More transfers of a known contact: maybe a transferred call, maybe FCR lost.

    The batch's transfers of one contact were recorded together; they count at its first.
    """
    added = batch.transfers_added.pop(event.contact_id, 0)
    if not added:
        return []  # counted with this contact's first transfer in the batch
    transferred = batch.transferred.get(event.contact_id)
    if transferred is None:
        log.warning("transfer of unknown contact %s not counted", event.contact_id)
        return []
    increments = transfer_increments(
        transferred.cell, transfers_before=transferred.transfers_before, added=added
    )
    if transferred.fcr_lost_now:
        increments.append(Increment(transferred.cell, Measure.FCR_LOST))
    return increments


def _channel(batch: Batch, event: ComplaintEvent) -> str:
    return batch.complaint_channels.get(event.complaint_id, NO_CHANNEL)


def count_complaint(batch: Batch, event: ComplaintEvent) -> list[Increment]:
    """Complaint events that only add to counters (the opening's fact is recorded first)."""
    return complaint_increments(event, _channel(batch, event))


def escalate_complaint(batch: Batch, event: ComplaintEscalated) -> list[Increment]:
    batch.change_complaint(event.complaint_id, stage=event.payload.to_stage, open_=True)
    return complaint_increments(event, _channel(batch, event))


def reopen_complaint(batch: Batch, event: ComplaintEscalationRequested) -> list[Increment]:
    """Asked inside the window: a case closed by hand is open again."""
    batch.change_complaint(event.complaint_id, open_=True)
    return complaint_increments(event, _channel(batch, event))


def close_complaint(batch: Batch, event: ComplaintClosed | ComplaintWithdrawn) -> list[Increment]:
    batch.change_complaint(event.complaint_id, open_=False)
    return complaint_increments(event, _channel(batch, event))


def record_deadline_outcome(batch: Batch, event: DeadlineEvent) -> list[Increment]:
    """The event's own counters, and its deadline's outcome if it is the first one."""
    channel = _channel(batch, event)
    increments = complaint_increments(event, channel)
    outcome = deadline_outcome(event)
    if outcome is None:
        return increments
    key = (event.complaint_id, outcome.stage, outcome.deadline.value)
    # The dashboard's overdue list: every deadline event moves its deadline's progress.
    batch.progress_deadline(key, done=outcome.on_time)
    if key in batch.new_outcomes:  # recorded first by this event (see `_record_complaints`)
        batch.new_outcomes.discard(key)
        increments += outcome_increments(event, outcome, channel)
    return increments


# Events absent from the table (an opt-out, a missed target) change no counter.
HANDLERS: dict[type[Event], Handler] = {
    ContactReceived: count_event,  # its fact is recorded for the whole batch first
    ContactResolved: count_event,
    CallAbandoned: count_event,
    MysteryShopAssessed: count_event,
    ContactTransferred: count_transfer,
    SatisfactionRequested: count_event,
    SatisfactionResponded: count_event,  # its comment stays in feedback (comment_ref)
    SatisfactionExpired: count_event,
    SurgeDetected: count_event,
    ComplaintOpened: count_complaint,  # its fact is recorded for the whole batch first
    ComplaintEscalationRequested: reopen_complaint,
    ComplaintEscalationRefused: count_complaint,
    ComplaintDeadlineBreachCorrected: count_complaint,
    ComplaintLearningActionCompleted: count_complaint,
    ComplaintReferredToOmbudsman: count_complaint,
    ComplaintDeadlineExtended: count_complaint,
    ComplaintOmbudsmanDecided: count_complaint,
    ComplaintEscalated: escalate_complaint,
    ComplaintWithdrawn: close_complaint,
    ComplaintClosed: close_complaint,
    ComplaintAcknowledged: record_deadline_outcome,
    ComplaintResponded: record_deadline_outcome,
    ComplaintDeadlineBreached: record_deadline_outcome,
}
