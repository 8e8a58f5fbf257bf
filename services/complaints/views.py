"""What the HTTP API returns: a complaint's state, its deadlines and history; the worklist."""

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from services.complaints.domain import (
    Complaint,
    Deadline,
    HistoryEntry,
    OmbudsmanCase,
    RefusalReason,
    Status,
    TrackedLearningAction,
)
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day
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
    breach_corrected: bool = Field(
        default=False,
        description="A breach was recorded before the on-time action arrived, then undone.",
    )
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
        description="Last day the customer may ask for the next stage, while they still may."
    )
    refused: str | None = Field(
        default=None, description="Why the council refused the complaint or its escalation."
    )
    deadlines: list[DeadlineView]
    learning_actions: list[TrackedLearningAction] = Field(default_factory=list)
    ombudsman: OmbudsmanCase | None = Field(
        default=None, description="The referral, its reference and the Ombudsman's decision."
    )
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
        met_in_time=deadline.met_in_time,
        breach_corrected=deadline.breach_corrected,
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
        refused=complaint.refused,
        deadlines=[deadline_view(d) for d in complaint.deadlines],
        learning_actions=list(complaint.learning_actions),
        ombudsman=complaint.ombudsman,
        history=list(complaint.history),
    )


class WorklistRow(BaseModel):
    complaint_id: str
    procedure: ComplaintProcedure
    statutory: bool
    service_area: str
    channel: Channel
    stage: int
    status: Status
    received_at: datetime
    next_due_date: date | None = Field(
        description="The next deadline, or the escalation window's end if sooner."
    )
    next_due: str | None = Field(
        description="What is due then: a deadline kind (`acknowledge`, `respond`, "
        "`panel_meeting`, `panel_report`) or `escalation_window`."
    )
    working_days_left: int | None = Field(
        description="Working days from today to next_due_date (the procedure's own working "
        "days): 0 when due today, negative when overdue."
    )
    overdue: bool = Field(description="A deadline passed without its action.")


class Worklist(BaseModel):
    complaints: list[WorklistRow]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


def working_days_left(calendar: WorkingDayCalendar, today: date, due: date) -> int:
    if due >= today:
        return calendar.working_days_between(today, due)
    return -calendar.working_days_between(due, today)


def worklist_row(complaint: Complaint, calendar: WorkingDayCalendar, today: date) -> WorklistRow:
    due = complaint.next_due_date()
    what = None
    if due is not None:
        deadline = next((d for d in complaint.awaited_deadlines() if d.due_date == due), None)
        what = deadline.kind.value if deadline is not None else "escalation_window"
    days = calendar.statutory() if complaint.rules.statutory_days else calendar
    next_deadline = complaint.next_deadline()
    return WorklistRow(
        complaint_id=complaint.complaint_id,
        procedure=complaint.procedure,
        statutory=complaint.statutory,
        service_area=complaint.service_area,
        channel=complaint.channel,
        stage=complaint.stage,
        status=complaint.status,
        received_at=complaint.received_at,
        next_due_date=due,
        next_due=what,
        working_days_left=None if due is None else working_days_left(days, today, due),
        overdue=next_deadline is not None and next_deadline < today,
    )
