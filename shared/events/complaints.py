"""Complaint events: the two-stage Complaint Handling Code and the statutory procedures."""

from datetime import date
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
    stage: Stage
    deadline: DeadlineKind
    new_due_date: date
    reason: Reason


class ComplaintDeadlineExtended(ComplaintEvent):
    event_type: Literal["ComplaintDeadlineExtended"] = "ComplaintDeadlineExtended"
    schema_version: Literal[1] = 1
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


class ComplaintReferredToOmbudsman(ComplaintEvent):
    event_type: Literal["ComplaintReferredToOmbudsman"] = "ComplaintReferredToOmbudsman"
    schema_version: Literal[1] = 1
    payload: ComplaintReferredToOmbudsmanPayload


class ComplaintWithdrawnPayload(ComplaintFacts):
    stage: Stage
    reason: Reason | None = None


class ComplaintWithdrawn(ComplaintEvent):
    event_type: Literal["ComplaintWithdrawn"] = "ComplaintWithdrawn"
    schema_version: Literal[1] = 1
    payload: ComplaintWithdrawnPayload


class ComplaintClosedPayload(ComplaintFacts):
    final_stage: Stage
    reason: Reason | None = None


class ComplaintClosed(ComplaintEvent):
    event_type: Literal["ComplaintClosed"] = "ComplaintClosed"
    schema_version: Literal[1] = 1
    payload: ComplaintClosedPayload


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
)
