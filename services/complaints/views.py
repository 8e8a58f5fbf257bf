"""What the HTTP API returns: a complaint's state, stage, every deadline and its history."""

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from services.complaints.domain import Complaint, Deadline, HistoryEntry, RefusalReason, Status
from services.complaints.working_days import end_of_local_day
from shared.events.vocabulary import Channel, ComplaintOutcome, ComplaintProcedure, DeadlineKind


class DeadlineState(StrEnum):
    RUNNING = "running"
    MET = "met"
    BREACHED = "breached"
    CANCELLED = "cancelled"


class DeadlineView(BaseModel):
    stage: int
    kind: DeadlineKind
    due_date: date = Field(description="Last day (Europe/London) the action is due.")
    breached_after: datetime = Field(
        description="The instant (UTC) the deadline is breached if not met: the end of due_date."
    )
    state: DeadlineState
    met_on: date | None = None
    met_in_time: bool | None = None
    extended_by_working_days: int = 0
    extension_reason: str | None = None


class ComplaintView(BaseModel):
    complaint_id: str
    procedure: ComplaintProcedure
    statutory: bool = Field(description="Statutory social care: never counted with the Code.")
    service_area: str
    channel: Channel
    customer_ref: str | None
    contact_id: str | None
    received_at: datetime
    stage: int
    status: Status
    outcome: ComplaintOutcome | None
    escalation_window_ends: date | None = Field(
        description="Last day the customer may ask for the next stage."
    )
    deadlines: list[DeadlineView]
    history: list[HistoryEntry]


class ActionResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


class ActionAccepted(BaseModel):
    result: ActionResult = Field(
        description="`duplicate`: this action_id was applied before and nothing changed."
    )
    events: list[str] = Field(description="Types of the events the action published.")
    complaint: ComplaintView | None


class ActionRefused(BaseModel):
    reason: RefusalReason
    message: str


def _state(deadline: Deadline) -> DeadlineState:
    if deadline.met_on is not None:
        return DeadlineState.MET
    if deadline.breached:
        return DeadlineState.BREACHED
    if deadline.cancelled:
        return DeadlineState.CANCELLED
    return DeadlineState.RUNNING


def deadline_view(deadline: Deadline) -> DeadlineView:
    return DeadlineView(
        stage=deadline.stage,
        kind=deadline.kind,
        due_date=deadline.due_date,
        breached_after=end_of_local_day(deadline.due_date),
        state=_state(deadline),
        met_on=deadline.met_on,
        met_in_time=None if deadline.met_on is None else deadline.met_on <= deadline.due_date,
        extended_by_working_days=deadline.extension_days,
        extension_reason=deadline.extension_reason,
    )


def complaint_view(complaint: Complaint) -> ComplaintView:
    return ComplaintView(
        complaint_id=complaint.complaint_id,
        procedure=complaint.procedure,
        statutory=complaint.statutory,
        service_area=complaint.service_area,
        channel=complaint.channel,
        customer_ref=complaint.customer_ref,
        contact_id=complaint.contact_id,
        received_at=complaint.received_at,
        stage=complaint.stage,
        status=complaint.status,
        outcome=complaint.outcome,
        escalation_window_ends=complaint.escalation_window_ends,
        deadlines=[deadline_view(d) for d in complaint.deadlines],
        history=list(complaint.history),
    )
