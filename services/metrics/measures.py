"""What each canonical event adds to the aggregates: pure, no I/O.

An aggregate cell is (local day, service area, channel) and each cell holds
named measures (counters). Most events add to counters on their own; the few
facts that need memory (re-contacts within the FCR window, a call's first
transfer, which of a deadline's outcomes came first) are decided by the
handler with the store and then recorded through the same counters.
"""

from dataclasses import dataclass
from datetime import date

from services.metrics.periods import local_day
from shared.events import Event
from shared.events.complaints import (
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreached,
    ComplaintEscalationRefused,
    ComplaintEscalationRequested,
    ComplaintLearningActionCompleted,
    ComplaintOpened,
    ComplaintReferredToOmbudsman,
    ComplaintResponded,
    ComplaintWithdrawn,
)
from shared.events.contacts import (
    CallAbandoned,
    ContactReceived,
    ContactResolved,
    MysteryShopAssessed,
)
from shared.events.feedback import (
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionResponded,
)
from shared.events.metrics import SurgeDetected
from shared.events.vocabulary import Channel, ComplaintProcedure, ContactKind

# A cell whose channel is not known (complaint events other than the opening
# carry none; the handler looks it up) uses this channel value.
NO_CHANNEL = ""
FCR_KINDS = frozenset({ContactKind.ENQUIRY, ContactKind.SERVICE_REQUEST})
SURGE_MEASURES = ("contacts_received", "complaints_opened")


@dataclass(frozen=True, slots=True)
class Cell:
    day: date
    service_area: str
    channel: str


@dataclass(frozen=True, slots=True)
class Increment:
    cell: Cell
    measure: str
    amount: float = 1.0


def complaint_scope(procedure: ComplaintProcedure) -> str:
    """Corporate complaints follow the Code; statutory ones are counted apart."""
    return "corporate" if procedure is ComplaintProcedure.CORPORATE else "statutory"


def is_fcr_candidate(event: ContactReceived) -> bool:
    """Resolved at first contact with no transfer, on a kind FCR counts."""
    payload = event.payload
    return (
        payload.kind in FCR_KINDS and payload.resolved_at_first_contact and payload.transfers == 0
    )


def contact_received(event: ContactReceived, *, service_level_seconds: float) -> list[Increment]:
    payload = event.payload
    cell = Cell(local_day(event.occurred_at), payload.service_area, payload.channel.value)
    measures = ["contacts_received"]
    if payload.kind in FCR_KINDS:
        measures.append("fcr_eligible")
        if is_fcr_candidate(event):
            measures.append("fcr_first_time")
    if payload.kind is ContactKind.COMPLIMENT:
        measures.append("compliments_received")
    increments = [Increment(cell, measure) for measure in measures]
    if payload.channel is Channel.PHONE:
        increments.append(Increment(cell, "calls_answered"))
        if payload.transfers:
            increments.append(Increment(cell, "calls_transferred"))
            increments.append(Increment(cell, "call_transfers", payload.transfers))
        if payload.wait_seconds is not None:
            increments.append(Increment(cell, "calls_answered_waited"))
            increments.append(Increment(cell, "call_wait_seconds", payload.wait_seconds))
            if payload.wait_seconds <= service_level_seconds:
                increments.append(Increment(cell, "calls_within_service_level"))
    return increments


def stateless_increments(event: Event, *, service_level_seconds: float) -> list[Increment]:
    """Counters an event adds on its own (the handler adds the stateful ones)."""
    day = local_day(event.occurred_at)
    match event:
        case ContactReceived():
            return contact_received(event, service_level_seconds=service_level_seconds)
        case ContactResolved(payload=p):
            return [Increment(Cell(day, p.service_area, p.channel.value), "contacts_resolved")]
        case CallAbandoned(payload=p):
            cell = Cell(day, p.service_area, Channel.PHONE.value)
            return [
                Increment(cell, "calls_abandoned"),
                Increment(cell, "call_abandoned_wait_seconds", p.wait_seconds),
            ]
        case MysteryShopAssessed(payload=p):
            cell = Cell(day, p.service_area, p.channel.value)
            mean = sum(p.scores.values()) / len(p.scores)
            return [Increment(cell, "mystery_shops"), Increment(cell, "mystery_score_total", mean)]
        case SatisfactionRequested(payload=p):
            return [Increment(Cell(day, p.service_area, p.channel.value), "surveys_requested")]
        case SatisfactionResponded(payload=p):
            cell = Cell(day, p.service_area, p.channel.value)
            increments = [
                Increment(cell, "surveys_responded"),
                Increment(cell, "survey_ease_total", p.ease),
            ]
            if p.overall >= 4:
                increments.append(Increment(cell, "surveys_satisfied"))
            return increments
        case SatisfactionExpired(payload=p):
            return [Increment(Cell(day, p.service_area, p.channel.value), "surveys_expired")]
        case SurgeDetected(payload=p):
            return [Increment(Cell(day, p.service_area, NO_CHANNEL), "surges_detected")]
    return []


def complaint_increments(event: Event, channel: str) -> list[Increment]:
    """Counters of a complaint event, in the channel the complaint arrived on."""
    day = local_day(event.occurred_at)
    match event:
        case ComplaintOpened(payload=p):
            scope = complaint_scope(p.procedure)
            cell = Cell(day, p.service_area, p.channel.value)
            return [
                Increment(cell, "complaints_opened"),
                Increment(cell, f"{scope}_complaints_received_s1"),
            ]
        case ComplaintEscalationRequested(payload=p):
            # The next stage is counted when the customer asks for it (DOMAIN.md), so
            # refused or unacknowledged escalations stay in the escalation rate.
            scope, cell = complaint_scope(p.procedure), Cell(day, p.service_area, channel)
            return [
                Increment(cell, f"{scope}_escalations_requested"),
                Increment(cell, f"{scope}_complaints_received_s{p.from_stage + 1}"),
            ]
        case ComplaintEscalationRefused(payload=p):
            cell = Cell(day, p.service_area, channel)
            return [Increment(cell, f"{complaint_scope(p.procedure)}_escalations_refused")]
        case ComplaintDeadlineBreachCorrected(payload=p):
            # Dated at the breach it undoes: that day's breach becomes an on-time outcome.
            scope, cell = complaint_scope(p.procedure), Cell(day, p.service_area, channel)
            name = "ack" if p.deadline.value == "acknowledge" else "response"
            return [
                Increment(cell, f"{scope}_{name}_on_time_s{p.stage}"),
                Increment(cell, f"{scope}_deadline_breaches", -1),
            ]
        case ComplaintLearningActionCompleted(payload=p):
            scope, cell = complaint_scope(p.procedure), Cell(day, p.service_area, channel)
            done = [Increment(cell, f"{scope}_learning_actions_done")]
            if p.on_time:
                done.append(Increment(cell, f"{scope}_learning_actions_done_on_time"))
            return done
        case ComplaintResponded(payload=p):
            scope = complaint_scope(p.procedure)
            cell = Cell(day, p.service_area, channel)
            return [
                Increment(cell, f"{scope}_responded"),
                Increment(cell, f"{scope}_responded_{p.outcome.value}"),
                Increment(cell, f"{scope}_learning_actions", len(p.learning_actions)),
            ]
        case ComplaintDeadlineBreached(payload=p):
            cell = Cell(day, p.service_area, channel)
            return [Increment(cell, f"{complaint_scope(p.procedure)}_deadline_breaches")]
        case ComplaintReferredToOmbudsman(payload=p):
            cell = Cell(day, p.service_area, channel)
            return [Increment(cell, f"{complaint_scope(p.procedure)}_ombudsman_referrals")]
        case ComplaintWithdrawn(payload=p):
            cell = Cell(day, p.service_area, channel)
            return [Increment(cell, f"{complaint_scope(p.procedure)}_withdrawn")]
    return []
