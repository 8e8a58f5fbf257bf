"""The complaint's state: its status, deadlines, history, learning actions and referral.

Pure data and small queries on it. The lifecycle (`lifecycle.py`) changes it;
the deadline rules (`deadlines.py`) breach, lapse and recount it.
"""

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, model_validator

from services.complaints.actions import Action
from services.complaints.procedures import PROCEDURES, Policy, ProcedureRules
from services.complaints.working_days import (
    WorkingDayCalendar,
    add_months,
    period_commencing_on,
)
from shared.events.complaints import ComplaintEvent, OmbudsmanDecision
from shared.events.vocabulary import Channel, ComplaintOutcome, ComplaintProcedure, DeadlineKind

SOURCE = "civicpulse-complaints"
# Event ids are derived from what caused them, so a decision made twice (a
# retried transaction) produces the same events.
EVENT_ID_NAMESPACE = UUID("0c5b1e7a-5f0e-4f4b-9a57-9b1f3e8c2d41")


class Status(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    RESPONDED = "responded"
    ESCALATION_REQUESTED = "escalation_requested"
    REFERRED_TO_OMBUDSMAN = "referred_to_ombudsman"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


# Once here, no deadline runs any more.
SETTLED = frozenset({Status.REFERRED_TO_OMBUDSMAN, Status.WITHDRAWN, Status.CLOSED})


class RefusalReason(StrEnum):
    UNKNOWN_COMPLAINT = "unknown_complaint"
    ALREADY_OPEN = "already_open"
    WRONG_STATE = "wrong_state"
    FINAL_STAGE = "final_stage"
    ESCALATION_WINDOW_CLOSED = "escalation_window_closed"
    SAME_RESPONDER = "same_responder"
    NO_PENDING_DEADLINE = "no_pending_deadline"
    NOT_EXTENDABLE = "not_extendable"
    ALREADY_EXTENDED = "already_extended"
    EXTENSION_TOO_LONG = "extension_too_long"
    DEADLINE_PASSED = "deadline_passed"
    NOT_A_WORKING_DAY = "not_a_working_day"
    REASON_REQUIRED = "reason_required"
    NOT_YET_REFERABLE = "not_yet_referable"
    ALREADY_REFERRED = "already_referred"
    NOT_REFERRED = "not_referred"
    UNKNOWN_LEARNING_ACTION = "unknown_learning_action"
    ALREADY_DONE = "already_done"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deadline(Model):
    stage: int
    kind: DeadlineKind
    counted_from: date
    working_days: int = 0
    months: int = 0
    # Statutory procedures count their working days without council closure days.
    statutory_days: bool = False
    # An "ends the day before the monthly anniversary" period (adult social care).
    day_before_anniversary: bool = False
    extension_days: int = 0
    extension_reason: str | None = None
    # Agreed extensions to a given date (adult social care: as often as agreed).
    agreed_due_date: date | None = None
    due_date: date
    met_on: date | None = None
    breached: bool = False
    breach_corrected: bool = False
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        """Still awaiting its action with the timer running."""
        return self.met_on is None and not self.breached and not self.cancelled

    @property
    def timer_id(self) -> str:
        return f"{self.stage}:{self.kind.value}"

    @property
    def met_in_time(self) -> bool | None:
        return None if self.met_on is None else self.met_on <= self.due_date

    def due_on(self, calendar: WorkingDayCalendar) -> date:
        """The due date by the rule, under `calendar` (recalculated when it changes)."""
        days = calendar.statutory() if self.statutory_days else calendar
        if self.agreed_due_date is not None:
            return self.agreed_due_date
        if self.months:
            if self.day_before_anniversary:
                end = period_commencing_on(self.counted_from, self.months)
            else:
                end = add_months(self.counted_from, self.months)
            base = days.on_or_after(end)
        else:
            base = days.add_working_days(self.counted_from, self.working_days)
        return days.add_working_days(base, self.extension_days)


class EscalationWindow(Model):
    """The time after a stage's response in which the customer may ask for the next stage."""

    stage: int
    counted_from: date
    working_days: int = 0
    months: int = 0
    statutory_days: bool = False
    ends: date
    lapsed: bool = False
    used: bool = False

    @property
    def timer_id(self) -> str:
        return f"{self.stage}:escalation_window"

    @property
    def open(self) -> bool:
        return not self.lapsed and not self.used

    def ends_on(self, calendar: WorkingDayCalendar) -> date:
        days = calendar.statutory() if self.statutory_days else calendar
        if self.months:
            # "A calendar month": to the same date next month, or the next working day.
            return days.on_or_after(add_months(self.counted_from, self.months))
        return days.add_working_days(self.counted_from, self.working_days)


class TrackedLearningAction(Model):
    learning_action_id: str
    stage: int
    description: str
    owner_team: str
    due_date: date | None = None
    completed_on: date | None = None


class OmbudsmanCase(Model):
    ombudsman: str
    reference: str | None = None
    referred_on: date
    decision: OmbudsmanDecision | None = None
    decided_on: date | None = None


class HistoryEntry(Model):
    occurred_at: datetime
    event_type: str
    stage: int
    detail: str | None = None


class Complaint(Model):
    complaint_id: str
    procedure: ComplaintProcedure
    service_area: str
    channel: Channel
    customer_ref: str | None = None
    contact_id: str | None = None
    received_at: datetime
    stage: int = 1
    status: Status = Status.RECEIVED
    responders: tuple[str, ...] = ()
    outcome: ComplaintOutcome | None = None
    escalation_window: EscalationWindow | None = None
    # Why the council said no (a refused complaint or escalation), if it did.
    refused: str | None = None
    deadlines: tuple[Deadline, ...] = ()
    learning_actions: tuple[TrackedLearningAction, ...] = ()
    ombudsman: OmbudsmanCase | None = None
    history: tuple[HistoryEntry, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _upcast_stored_state(cls, data: Any) -> Any:
        """States saved before windows had their own record kept only the window's end."""
        if isinstance(data, dict) and "escalation_window_ends" in data:
            data = dict(data)
            ends = data.pop("escalation_window_ends")
            if ends is not None:
                data["escalation_window"] = {
                    "stage": data.get("stage", 1),
                    "counted_from": ends,
                    "ends": ends,
                    "used": data.get("status") != Status.RESPONDED.value,
                }
        return data

    @property
    def statutory(self) -> bool:
        return self.procedure is not ComplaintProcedure.CORPORATE

    @property
    def rules(self) -> ProcedureRules:
        return PROCEDURES[self.procedure]

    @property
    def escalation_window_ends(self) -> date | None:
        window = self.escalation_window
        return window.ends if window is not None and window.open else None

    @property
    def final_response_given(self) -> bool:
        return len(self.responders) >= self.rules.final_stage

    def pending_deadlines(self) -> tuple[Deadline, ...]:
        return tuple(d for d in self.deadlines if d.pending)

    def deadline(self, stage: int, kind: DeadlineKind) -> Deadline | None:
        return next((d for d in self.deadlines if d.stage == stage and d.kind is kind), None)

    def awaited_deadlines(self) -> tuple[Deadline, ...]:
        """Deadlines whose action has not happened yet, breached ones included (none once
        the case is settled: nothing more is owed on it)."""
        if self.status in SETTLED:
            return ()
        return tuple(d for d in self.deadlines if d.met_on is None and not d.cancelled)

    def next_deadline(self) -> date | None:
        """The earliest due date still awaiting its action: overdue once it is past."""
        return min((d.due_date for d in self.awaited_deadlines()), default=None)

    def next_due_date(self) -> date | None:
        """What an officer works to next: the next deadline, or the window's end if sooner."""
        dates = [d.due_date for d in self.awaited_deadlines()]
        if self.status not in SETTLED and self.escalation_window_ends is not None:
            dates.append(self.escalation_window_ends)
        return min(dates, default=None)


@dataclass(frozen=True, slots=True)
class Decision:
    complaint: Complaint
    events: tuple[ComplaintEvent, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    message: str

    def describe(self) -> str:
        return f"{self.reason.value}: {self.message}"


class Refused(Exception):  # noqa: N818 - read as "the action was refused"
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.refusal = Refusal(reason, message)


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision needs besides the state and the action."""

    calendar: WorkingDayCalendar
    policy: Policy
    recorded_at: datetime


def complaint_id_for_contact(contact_id: str) -> str:
    """One contact opens one complaint, however often its event is delivered."""
    return f"CMP-{uuid5(EVENT_ID_NAMESPACE, f'contact:{contact_id}')}"


def action_key(action: Action) -> UUID:
    """The id an action is deduplicated on: its source's action_id, for that complaint.

    Scoped by complaint too, so that a system reusing an action_id on another
    complaint does not see that action dropped as a duplicate.
    """
    return uuid5(
        EVENT_ID_NAMESPACE, f"action:{action.source}:{action.complaint_id}:{action.action_id}"
    )


def correlation_for(complaint_id: str) -> UUID:
    return uuid5(EVENT_ID_NAMESPACE, f"complaint:{complaint_id}")
