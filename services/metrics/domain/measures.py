"""What each canonical event adds to the aggregates, and every measure's name: pure, no I/O.

An aggregate cell is (local day, service area, channel) and each cell holds
named measures (counters). Every name is written once, here: `Measure` for
the counters of contacts, calls and surveys, and `ComplaintMeasure` for those
kept per complaint scope (and stage). A misspelt member is an AttributeError,
never a counter nobody reads.

Most events add to counters on their own. The few facts that need memory
(re-contacts within the FCR window, a call's first transfer, which of a
deadline's outcomes came first) are looked up by the handler in the store;
the rules that turn them into counters are here too.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from services.metrics.periods import local_day
from shared.events import Event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreached,
    ComplaintDeadlineExtended,
    ComplaintEscalationRefused,
    ComplaintEscalationRequested,
    ComplaintFacts,
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
    ContactReceivedPayload,
    ContactResolved,
    MysteryShopAssessed,
)
from shared.events.feedback import (
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionResponded,
)
from shared.events.metrics import SurgeDetected
from shared.events.vocabulary import (
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    ContactKind,
    DeadlineKind,
)


class Measure(StrEnum):
    """Counters of contacts, calls, surveys and surges (the stored measure names)."""

    CONTACTS_RECEIVED = "contacts_received"
    CONTACTS_RESOLVED = "contacts_resolved"
    COMPLIMENTS_RECEIVED = "compliments_received"
    FCR_ELIGIBLE = "fcr_eligible"
    FCR_FIRST_TIME = "fcr_first_time"
    FCR_LOST = "fcr_lost"
    CALLS_ANSWERED = "calls_answered"
    CALLS_TRANSFERRED = "calls_transferred"  # answered calls transferred at least once
    CALL_TRANSFERS = "call_transfers"  # every transfer
    CALLS_ANSWERED_WAITED = "calls_answered_waited"
    CALL_WAIT_SECONDS = "call_wait_seconds"
    CALLS_WITHIN_SERVICE_LEVEL = "calls_within_service_level"
    CALLS_ABANDONED = "calls_abandoned"
    CALL_ABANDONED_WAIT_SECONDS = "call_abandoned_wait_seconds"
    MYSTERY_SHOPS = "mystery_shops"
    MYSTERY_SCORE_TOTAL = "mystery_score_total"
    SURVEYS_REQUESTED = "surveys_requested"
    SURVEYS_RESPONDED = "surveys_responded"
    SURVEYS_SATISFIED = "surveys_satisfied"
    SURVEY_EASE_TOTAL = "survey_ease_total"
    SURVEYS_EXPIRED = "surveys_expired"
    SURGES_DETECTED = "surges_detected"
    COMPLAINTS_OPENED = "complaints_opened"  # every scope: the surge check counts these


class Scope(StrEnum):
    """Corporate complaints follow the Code; statutory ones are counted apart."""

    CORPORATE = "corporate"
    STATUTORY = "statutory"


class ComplaintMeasure(StrEnum):
    """Complaint counters, stored as `<scope>_<name>`, staged ones with `_s<stage>`."""

    RECEIVED = "complaints_received"  # staged: opened at stage 1, asked for at stage n
    ESCALATIONS_REQUESTED = "escalations_requested"
    ESCALATIONS_REFUSED = "escalations_refused"
    RESPONDED = "responded"
    RESPONDED_UPHELD = "responded_upheld"
    RESPONDED_PARTLY_UPHELD = "responded_partly_upheld"
    RESPONDED_NOT_UPHELD = "responded_not_upheld"
    LEARNING_ACTIONS = "learning_actions"
    LEARNING_ACTIONS_DONE = "learning_actions_done"
    LEARNING_ACTIONS_DONE_ON_TIME = "learning_actions_done_on_time"
    DEADLINE_BREACHES = "deadline_breaches"
    OMBUDSMAN_REFERRALS = "ombudsman_referrals"
    WITHDRAWN = "withdrawn"
    ACK_DUE = "ack_due"  # staged: acknowledgements made or breached
    ACK_ON_TIME = "ack_on_time"  # staged
    RESPONSE_DUE = "response_due"  # staged: responses made or breached
    RESPONSE_ON_TIME = "response_on_time"  # staged
    # The annual report's figures, each a KPI (services.metrics.domain.report_kpis).
    OUTCOME_UPHELD = "outcome_upheld"  # staged: responses at the stage, by outcome
    OUTCOME_PARTLY_UPHELD = "outcome_partly_upheld"  # staged
    OUTCOME_NOT_UPHELD = "outcome_not_upheld"  # staged
    EXTENSIONS = "deadline_extensions"  # staged


STAGED = frozenset(
    {
        ComplaintMeasure.RECEIVED,
        ComplaintMeasure.ACK_DUE,
        ComplaintMeasure.ACK_ON_TIME,
        ComplaintMeasure.RESPONSE_DUE,
        ComplaintMeasure.RESPONSE_ON_TIME,
        ComplaintMeasure.OUTCOME_UPHELD,
        ComplaintMeasure.OUTCOME_PARTLY_UPHELD,
        ComplaintMeasure.OUTCOME_NOT_UPHELD,
        ComplaintMeasure.EXTENSIONS,
    }
)
RESPONDED_WITH = {
    ComplaintOutcome.UPHELD: ComplaintMeasure.RESPONDED_UPHELD,
    ComplaintOutcome.PARTLY_UPHELD: ComplaintMeasure.RESPONDED_PARTLY_UPHELD,
    ComplaintOutcome.NOT_UPHELD: ComplaintMeasure.RESPONDED_NOT_UPHELD,
}
STAGE_OUTCOME = {
    ComplaintOutcome.UPHELD: ComplaintMeasure.OUTCOME_UPHELD,
    ComplaintOutcome.PARTLY_UPHELD: ComplaintMeasure.OUTCOME_PARTLY_UPHELD,
    ComplaintOutcome.NOT_UPHELD: ComplaintMeasure.OUTCOME_NOT_UPHELD,
}
# Which counters a deadline's outcome adds: (due, on time).
OUTCOME_MEASURES = {
    DeadlineKind.ACKNOWLEDGE: (ComplaintMeasure.ACK_DUE, ComplaintMeasure.ACK_ON_TIME),
    DeadlineKind.RESPOND: (ComplaintMeasure.RESPONSE_DUE, ComplaintMeasure.RESPONSE_ON_TIME),
}


def complaint_measure(scope: Scope, measure: ComplaintMeasure, stage: int | None = None) -> str:
    """The stored name of a complaint counter; a staged one needs its stage, others none."""
    if (stage is None) == (measure in STAGED):
        raise ValueError(f"{measure}: stage {stage!r} does not fit")
    name = f"{scope}_{measure}"
    return name if stage is None else f"{name}_s{stage}"


def refusal_measure(scope: Scope, reason: str) -> str:
    """Escalations refused for one reason (an `EscalationRefusalReason` value)."""
    return f"{scope}_escalations_refused_{reason}"


def ombudsman_decision_measure(scope: Scope, decision: str) -> str:
    """Ombudsman decisions of one kind (upheld, not_upheld, withdrawn)."""
    return f"{scope}_ombudsman_decided_{decision}"


# A cell whose channel is not known (complaint events other than the opening
# carry none; the handler looks it up) uses this channel value.
NO_CHANNEL = ""
FCR_KINDS = frozenset({ContactKind.ENQUIRY, ContactKind.SERVICE_REQUEST})
SURGE_MEASURES = (Measure.CONTACTS_RECEIVED, Measure.COMPLAINTS_OPENED)


# Named tuples, not dataclasses: a batch makes and hashes a few of these per event,
# and a tuple's hash and equality run in C.
class Cell(NamedTuple):
    day: date
    service_area: str
    channel: str


class Increment(NamedTuple):
    cell: Cell
    measure: str
    amount: float = 1.0


def complaint_scope(procedure: ComplaintProcedure) -> Scope:
    return Scope.CORPORATE if procedure is ComplaintProcedure.CORPORATE else Scope.STATUTORY


def is_fcr_candidate(event: ContactReceived) -> bool:
    """Resolved at first contact with no transfer, on a kind FCR counts."""
    payload = event.payload
    return (
        payload.kind in FCR_KINDS and payload.resolved_at_first_contact and payload.transfers == 0
    )


def transfer_increments(cell: Cell, *, transfers_before: int, added: int) -> list[Increment]:
    """Transfers of an answered call: each one counts, the call itself only at its first.

    Transfers come in the receipt (`ContactReceived.transfers`) or later, one
    `ContactTransferred` each; both paths count through here, so a call is
    "transferred" once whichever way its transfers arrived.
    """
    if cell.channel != Channel.PHONE.value or added <= 0:
        return []
    increments = [Increment(cell, Measure.CALL_TRANSFERS, added)]
    if transfers_before == 0:
        increments.append(Increment(cell, Measure.CALLS_TRANSFERRED))
    return increments


# A channel's stored text by member: a dict lookup, several times cheaper than `.value`.
CHANNEL_TEXT: dict[Channel, str] = {channel: channel.value for channel in Channel}
Counts = defaultdict[tuple[Cell, str], float]  # counter increments: (cell, measure) → amount


def contact_cell(event: ContactReceived) -> Cell:
    payload = event.payload
    return Cell(local_day(event.occurred_at), payload.service_area, CHANNEL_TEXT[payload.channel])


def count_contact_received(
    counts: Counts, cell: Cell, payload: ContactReceivedPayload, *, service_level_seconds: float
) -> None:
    """The counters a contact received adds, added into `counts` at its cell.

    The one statement of the rule (`contact_received` lists the same counters): a batch
    counts its thousands of contacts through here, without an `Increment` per counter.
    """
    counts[(cell, Measure.CONTACTS_RECEIVED)] += 1.0
    kind = payload.kind
    if kind in FCR_KINDS:
        counts[(cell, Measure.FCR_ELIGIBLE)] += 1.0
        if payload.resolved_at_first_contact and payload.transfers == 0:  # is_fcr_candidate
            counts[(cell, Measure.FCR_FIRST_TIME)] += 1.0
    elif kind is ContactKind.COMPLIMENT:
        counts[(cell, Measure.COMPLIMENTS_RECEIVED)] += 1.0
    if payload.channel is Channel.PHONE:
        counts[(cell, Measure.CALLS_ANSWERED)] += 1.0
        for _, measure, amount in transfer_increments(
            cell, transfers_before=0, added=payload.transfers
        ):
            counts[(cell, measure)] += amount
        wait = payload.wait_seconds
        if wait is not None:
            counts[(cell, Measure.CALLS_ANSWERED_WAITED)] += 1.0
            counts[(cell, Measure.CALL_WAIT_SECONDS)] += wait
            if wait <= service_level_seconds:
                counts[(cell, Measure.CALLS_WITHIN_SERVICE_LEVEL)] += 1.0


def contact_received(event: ContactReceived, *, service_level_seconds: float) -> list[Increment]:
    cell = contact_cell(event)
    counts: Counts = defaultdict(float)
    count_contact_received(counts, cell, event.payload, service_level_seconds=service_level_seconds)
    return [Increment(cell, measure, amount) for (_, measure), amount in counts.items()]


def stateless_increments(event: Event, *, service_level_seconds: float) -> list[Increment]:
    """Counters an event adds on its own (the handler adds the stateful ones)."""
    day = local_day(event.occurred_at)
    match event:
        case ContactReceived():
            return contact_received(event, service_level_seconds=service_level_seconds)
        case ContactResolved(payload=p):
            return [
                Increment(Cell(day, p.service_area, p.channel.value), Measure.CONTACTS_RESOLVED)
            ]
        case CallAbandoned(payload=p):
            cell = Cell(day, p.service_area, Channel.PHONE.value)
            return [
                Increment(cell, Measure.CALLS_ABANDONED),
                Increment(cell, Measure.CALL_ABANDONED_WAIT_SECONDS, p.wait_seconds),
            ]
        case MysteryShopAssessed(payload=p):
            cell = Cell(day, p.service_area, p.channel.value)
            mean = sum(p.scores.values()) / len(p.scores)
            return [
                Increment(cell, Measure.MYSTERY_SHOPS),
                Increment(cell, Measure.MYSTERY_SCORE_TOTAL, mean),
            ]
        case SatisfactionRequested(payload=p):
            return [
                Increment(Cell(day, p.service_area, p.channel.value), Measure.SURVEYS_REQUESTED)
            ]
        case SatisfactionResponded(payload=p):
            cell = Cell(day, p.service_area, p.channel.value)
            increments = [
                Increment(cell, Measure.SURVEYS_RESPONDED),
                Increment(cell, Measure.SURVEY_EASE_TOTAL, p.ease),
            ]
            if p.overall >= 4:
                increments.append(Increment(cell, Measure.SURVEYS_SATISFIED))
            return increments
        case SatisfactionExpired(payload=p):
            return [Increment(Cell(day, p.service_area, p.channel.value), Measure.SURVEYS_EXPIRED)]
        case SurgeDetected(payload=p):
            return [Increment(Cell(day, p.service_area, NO_CHANNEL), Measure.SURGES_DETECTED)]
    return []


def _complaint_count(
    day: date,
    facts: ComplaintFacts,
    channel: str,
    measure: ComplaintMeasure,
    stage: int | None = None,
    amount: float = 1.0,
) -> Increment:
    scope = complaint_scope(facts.procedure)
    return Increment(
        Cell(day, facts.service_area, channel), complaint_measure(scope, measure, stage), amount
    )


def complaint_increments(event: Event, channel: str) -> list[Increment]:
    """Counters of a complaint event, in the channel the complaint arrived on."""
    day = local_day(event.occurred_at)
    match event:
        case ComplaintOpened(payload=p):
            # The opening says its channel; later events do not (`channel` is looked up).
            opened_in = p.channel.value
            return [
                Increment(Cell(day, p.service_area, opened_in), Measure.COMPLAINTS_OPENED),
                _complaint_count(day, p, opened_in, ComplaintMeasure.RECEIVED, 1),
            ]
        case ComplaintEscalationRequested(payload=p):
            # The next stage is counted when the customer asks for it (DOMAIN.md), so
            # refused or unacknowledged escalations stay in the escalation rate.
            return [
                _complaint_count(day, p, channel, ComplaintMeasure.ESCALATIONS_REQUESTED),
                _complaint_count(day, p, channel, ComplaintMeasure.RECEIVED, p.from_stage + 1),
            ]
        case ComplaintEscalationRefused(payload=p):
            scope = complaint_scope(p.procedure)
            return [
                _complaint_count(day, p, channel, ComplaintMeasure.ESCALATIONS_REFUSED),
                Increment(
                    Cell(day, p.service_area, channel), refusal_measure(scope, p.reason.value)
                ),
            ]
        case ComplaintDeadlineExtended(payload=p):
            return [_complaint_count(day, p, channel, ComplaintMeasure.EXTENSIONS, p.stage)]
        case ComplaintOmbudsmanDecided(payload=p):
            scope = complaint_scope(p.procedure)
            return [
                Increment(
                    Cell(day, p.service_area, channel),
                    ombudsman_decision_measure(scope, p.decision),
                )
            ]
        case ComplaintDeadlineBreachCorrected(payload=p):
            # Dated at the breach it undoes: that day's breach becomes an on-time outcome.
            _, on_time = OUTCOME_MEASURES[p.deadline]
            return [
                _complaint_count(day, p, channel, on_time, p.stage),
                _complaint_count(day, p, channel, ComplaintMeasure.DEADLINE_BREACHES, amount=-1),
            ]
        case ComplaintLearningActionCompleted(payload=p):
            done = [_complaint_count(day, p, channel, ComplaintMeasure.LEARNING_ACTIONS_DONE)]
            if p.on_time:
                done.append(
                    _complaint_count(
                        day, p, channel, ComplaintMeasure.LEARNING_ACTIONS_DONE_ON_TIME
                    )
                )
            return done
        case ComplaintResponded(payload=p):
            return [
                _complaint_count(day, p, channel, ComplaintMeasure.RESPONDED),
                _complaint_count(day, p, channel, RESPONDED_WITH[p.outcome]),
                _complaint_count(day, p, channel, STAGE_OUTCOME[p.outcome], p.stage),
                _complaint_count(
                    day,
                    p,
                    channel,
                    ComplaintMeasure.LEARNING_ACTIONS,
                    amount=len(p.learning_actions),
                ),
            ]
        case ComplaintDeadlineBreached(payload=p):
            return [_complaint_count(day, p, channel, ComplaintMeasure.DEADLINE_BREACHES)]
        case ComplaintReferredToOmbudsman(payload=p):
            return [_complaint_count(day, p, channel, ComplaintMeasure.OMBUDSMAN_REFERRALS)]
        case ComplaintWithdrawn(payload=p):
            return [_complaint_count(day, p, channel, ComplaintMeasure.WITHDRAWN)]
    return []


# -- deadline outcomes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadlineOutcome:
    """How one deadline of one stage ended: met (acknowledged or responded) or breached."""

    stage: int
    deadline: DeadlineKind
    on_time: bool


def deadline_outcome(event: Event) -> DeadlineOutcome | None:
    """The outcome an event settles, if any. Only a deadline's first outcome counts
    (the handler asks the store): an acknowledgement after its breach stays late.
    """
    match event:
        case ComplaintAcknowledged(payload=p):
            return DeadlineOutcome(p.stage, DeadlineKind.ACKNOWLEDGE, on_time=True)
        case ComplaintResponded(payload=p):
            return DeadlineOutcome(p.stage, DeadlineKind.RESPOND, on_time=True)
        case ComplaintDeadlineBreached(payload=p):
            return DeadlineOutcome(p.stage, p.deadline, on_time=False)
    return None


DeadlineEvent = ComplaintAcknowledged | ComplaintResponded | ComplaintDeadlineBreached


def outcome_increments(
    event: DeadlineEvent, outcome: DeadlineOutcome, channel: str
) -> list[Increment]:
    """A deadline's first outcome: one more due, and one more on time if it was met."""
    day = local_day(event.occurred_at)
    due, on_time = OUTCOME_MEASURES[outcome.deadline]
    increments = [_complaint_count(day, event.payload, channel, due, outcome.stage)]
    if outcome.on_time:
        increments.append(_complaint_count(day, event.payload, channel, on_time, outcome.stage))
    return increments
