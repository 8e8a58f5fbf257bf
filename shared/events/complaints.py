"""Complaint events: the two-stage Complaint Handling Code and the statutory procedures."""

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from shared.events.envelope import Event, FrozenModel
from shared.events.vocabulary import (
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    CustomerRef,
    DeadlineKind,
    Identifier,
    ServiceArea,
)

Stage = Annotated[int, Field(ge=1, le=3, description="Stage of the procedure (Code: 1 or 2).")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
StaffRef = Annotated[
    str, Field(min_length=1, max_length=64, description="Pseudonymous staff reference.")
]


OmbudsmanDecision = Literal["upheld", "not_upheld", "withdrawn"]


class EscalationRefusalReason(StrEnum):
    """Why a council may refuse to take a complaint to its next stage (docs/complaints.md)."""

    OUTSIDE_WINDOW = "outside_window"
    MATTER_OVER_12_MONTHS_OLD = "matter_over_12_months_old"
    LEGAL_PROCEEDINGS = "legal_proceedings"
    ALREADY_CONSIDERED = "already_considered"
    OTHER = "other"


class CloseReason(StrEnum):
    """Why a complaint closed (ComplaintClosed version 2)."""

    RESOLVED = "resolved"
    ESCALATION_WINDOW_LAPSED = "escalation_window_lapsed"
    ESCALATION_REFUSED = "escalation_refused"
    REFUSED = "refused"
    OFFICER_CLOSED = "officer_closed"


class ComplaintEvent(Event):
    key_field: ClassVar[str] = "complaint_id"
    complaint_id: Identifier


class ComplaintFacts(FrozenModel):
    """Carried on every complaint event so consumers can count without a lookup."""

    service_area: ServiceArea
    procedure: ComplaintProcedure = ComplaintProcedure.CORPORATE


class ComplaintOpenedPayload(ComplaintFacts):
    statutory: bool = Field(
        default=False,
        description="True for statutory social care procedures, never counted with the Code.",
    )
    channel: Channel
    customer_ref: CustomerRef | None = None
    contact_id: Identifier | None = Field(
        default=None, description="The contact the complaint arrived on, if any."
    )
    matter_date: date | None = Field(
        default=None, description="When the matter complained about happened."
    )

    @model_validator(mode="after")
    def _statutory_matches_procedure(self) -> "ComplaintOpenedPayload":
        if self.statutory != (self.procedure is not ComplaintProcedure.CORPORATE):
            raise ValueError("statutory must be true exactly for social care procedures")
        return self


class ComplaintOpened(ComplaintEvent):
    event_type: Literal["ComplaintOpened"] = "ComplaintOpened"
    schema_version: Literal[1] = 1
    payload: ComplaintOpenedPayload


class ComplaintAcknowledgedPayload(ComplaintFacts):
    stage: Stage


class ComplaintAcknowledged(ComplaintEvent):
    event_type: Literal["ComplaintAcknowledged"] = "ComplaintAcknowledged"
    schema_version: Literal[1] = 1
    payload: ComplaintAcknowledgedPayload


class LearningAction(FrozenModel):
    learning_action_id: Identifier | None = Field(
        default=None,
        description="Id of the action within its complaint, for `complete_learning_action`; "
        "given by the complaints service as `<stage>.<n>` when the response has none.",
    )
    description: Annotated[str, Field(min_length=1, max_length=500)]
    owner_team: Annotated[str, Field(min_length=1, max_length=64)]
    due_date: date | None = None


class ComplaintRespondedPayload(ComplaintFacts):
    stage: Stage
    outcome: ComplaintOutcome
    responder: StaffRef
    learning_actions: tuple[LearningAction, ...] = Field(default=(), max_length=20)


class ComplaintResponded(ComplaintEvent):
    event_type: Literal["ComplaintResponded"] = "ComplaintResponded"
    schema_version: Literal[1] = 1
    payload: ComplaintRespondedPayload


class ComplaintEscalationRequestedPayload(ComplaintFacts):
    from_stage: Stage


class ComplaintEscalationRequested(ComplaintEvent):
    """The customer asked for the next stage; no reason is needed."""

    event_type: Literal["ComplaintEscalationRequested"] = "ComplaintEscalationRequested"
    schema_version: Literal[1] = 1
    payload: ComplaintEscalationRequestedPayload


class ComplaintEscalatedPayload(ComplaintFacts):
    to_stage: Stage


class ComplaintEscalated(ComplaintEvent):
    event_type: Literal["ComplaintEscalated"] = "ComplaintEscalated"
    schema_version: Literal[1] = 1
    payload: ComplaintEscalatedPayload


class ComplaintDeadlineExtendedPayload(ComplaintFacts):
    """Every extension has a reason (given to the customer); the complaints service keeps
    its text with the case, erasable, rather than on this topic, kept for ever."""

    stage: Stage
    deadline: DeadlineKind
    new_due_date: date


class ComplaintDeadlineExtended(ComplaintEvent):
    event_type: Literal["ComplaintDeadlineExtended"] = "ComplaintDeadlineExtended"
    schema_version: Literal[2] = 2
    payload: ComplaintDeadlineExtendedPayload


class ComplaintDeadlineBreachedPayload(ComplaintFacts):
    stage: Stage
    deadline: DeadlineKind
    due_date: date = Field(description="Last working day (Europe/London) the action was due.")


class ComplaintDeadlineBreached(ComplaintEvent):
    event_type: Literal["ComplaintDeadlineBreached"] = "ComplaintDeadlineBreached"
    schema_version: Literal[1] = 1
    payload: ComplaintDeadlineBreachedPayload


class ComplaintReferredToOmbudsmanPayload(ComplaintFacts):
    ombudsman: Literal["local_government", "housing"]
    ombudsman_reference: Identifier | None = None
    grounds: Literal["final_response", "refusal", "missed_deadline"] | None = Field(
        default=None,
        description="Why the customer could go to the Ombudsman: the council's final "
        "response, its refusal, or a deadline it missed.",
    )


class ComplaintReferredToOmbudsman(ComplaintEvent):
    event_type: Literal["ComplaintReferredToOmbudsman"] = "ComplaintReferredToOmbudsman"
    schema_version: Literal[1] = 1
    payload: ComplaintReferredToOmbudsmanPayload


class ComplaintWithdrawnPayload(ComplaintFacts):
    stage: Stage
    reason_recorded: bool = Field(
        default=False,
        description="An officer gave a reason. Its text is kept with the complaint by the "
        "complaints service (the case history, `GET /v1/complaints/{complaint_id}`), "
        "redacted, and erased with the customer; it does not travel on this topic, which is "
        "kept for ever.",
    )


class ComplaintWithdrawn(ComplaintEvent):
    event_type: Literal["ComplaintWithdrawn"] = "ComplaintWithdrawn"
    schema_version: Literal[2] = 2
    payload: ComplaintWithdrawnPayload


class ComplaintClosedPayload(ComplaintFacts):
    final_stage: Stage
    closed_because: CloseReason = Field(
        default=CloseReason.RESOLVED,
        description="`escalation_window_lapsed`: the window to ask for the next stage ended "
        "with no request (the service closed it); `escalation_refused` and `refused`: the "
        "council said no, with a reason; `resolved`: closed after a response; "
        "`officer_closed`: closed by hand before the window ended (the customer may still "
        "escalate inside it).",
    )
    reason_recorded: bool = Field(
        default=False,
        description="An officer gave a reason. Its text is kept with the complaint by the "
        "complaints service (the case history, `GET /v1/complaints/{complaint_id}`), "
        "redacted, and erased with the customer; it does not travel on this topic, which is "
        "kept for ever.",
    )


class ComplaintClosed(ComplaintEvent):
    event_type: Literal["ComplaintClosed"] = "ComplaintClosed"
    schema_version: Literal[3] = 3
    payload: ComplaintClosedPayload


class ComplaintEscalationRefusedPayload(ComplaintFacts):
    stage: Stage = Field(description="The stage whose escalation was refused.")
    reason: EscalationRefusalReason
    detail_recorded: bool = Field(
        default=False,
        description="The officer wrote the detail (always, for reason `other`). Its text is "
        "kept with the complaint by the complaints service, redacted and erasable.",
    )


class ComplaintEscalationRefused(ComplaintEvent):
    """The council refused to take the complaint to its next stage; the customer is told
    they may go to the Ombudsman."""

    event_type: Literal["ComplaintEscalationRefused"] = "ComplaintEscalationRefused"
    schema_version: Literal[2] = 2
    payload: ComplaintEscalationRefusedPayload


class ComplaintDeadlineBreachCorrectedPayload(ComplaintFacts):
    stage: Stage
    deadline: DeadlineKind
    due_date: date
    met_on: date = Field(description="The action's local date: on or before due_date.")


class ComplaintDeadlineBreachCorrected(ComplaintEvent):
    """A breach recorded before an on-time action arrived (a backfill, an outage) is undone.

    Dated at the breach it corrects, so that counts by day cancel out where they were made.
    """

    event_type: Literal["ComplaintDeadlineBreachCorrected"] = "ComplaintDeadlineBreachCorrected"
    schema_version: Literal[1] = 1
    payload: ComplaintDeadlineBreachCorrectedPayload


class ComplaintOmbudsmanDecidedPayload(ComplaintFacts):
    ombudsman_reference: Identifier | None = None
    decision: OmbudsmanDecision


class ComplaintOmbudsmanDecided(ComplaintEvent):
    event_type: Literal["ComplaintOmbudsmanDecided"] = "ComplaintOmbudsmanDecided"
    schema_version: Literal[1] = 1
    payload: ComplaintOmbudsmanDecidedPayload


class ComplaintPanelStepRecordedPayload(ComplaintFacts):
    stage: Stage
    step: Literal[DeadlineKind.PANEL_MEETING, DeadlineKind.PANEL_REPORT]


class ComplaintPanelStepRecorded(ComplaintEvent):
    """Children's social care stage 3: the review panel met, or reported (2006 regs. 19-20)."""

    event_type: Literal["ComplaintPanelStepRecorded"] = "ComplaintPanelStepRecorded"
    schema_version: Literal[1] = 1
    payload: ComplaintPanelStepRecordedPayload


class ComplaintLearningActionCompletedPayload(ComplaintFacts):
    learning_action_id: Identifier
    owner_team: Annotated[str, Field(min_length=1, max_length=64)]
    due_date: date | None = None
    completed_on: date
    on_time: bool | None = Field(description="Done on or before its due date; null if none.")


class ComplaintLearningActionCompleted(ComplaintEvent):
    event_type: Literal["ComplaintLearningActionCompleted"] = "ComplaintLearningActionCompleted"
    schema_version: Literal[1] = 1
    payload: ComplaintLearningActionCompletedPayload


COMPLAINT_EVENTS: tuple[type[ComplaintEvent], ...] = (
    ComplaintOpened,
    ComplaintAcknowledged,
    ComplaintResponded,
    ComplaintEscalationRequested,
    ComplaintEscalated,
    ComplaintDeadlineExtended,
    ComplaintDeadlineBreached,
    ComplaintReferredToOmbudsman,
    ComplaintWithdrawn,
    ComplaintClosed,
    ComplaintEscalationRefused,
    ComplaintDeadlineBreachCorrected,
    ComplaintOmbudsmanDecided,
    ComplaintLearningActionCompleted,
    ComplaintPanelStepRecorded,
)
