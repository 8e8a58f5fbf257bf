"""Case actions: what case-management systems ask the complaints service to do.

Actions arrive as JSON records on `civicpulse.complaints.actions` (keyed by
complaint_id) or through `POST /v1/complaints/{id}/actions`. They are commands,
not facts: the service checks each against the complaint's lifecycle and
either applies it (publishing the resulting events on `civicpulse.complaints`)
or refuses it with a reason. `action_id` is the idempotency key: an action
sent again with the same id (from the same source) is applied once.
"""

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from shared.events.complaints import (
    EscalationRefusalReason,
    LearningAction,
    OmbudsmanDecision,
    Reason,
    StaffRef,
)
from shared.events.envelope import UtcDatetime
from shared.events.vocabulary import (
    Channel,
    ComplaintOutcome,
    CustomerRef,
    DeadlineKind,
    Identifier,
    ServiceArea,
)
from shared.redaction import redact

SourceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="The case-management system sending the action.",
        examples=["case-manager"],
    ),
]


# Officers' free text is kept with the case (and shown on the worklist and in reports),
# never on the events: cleaned of residents' personal details as it is read, never longer.
KeptReason = Annotated[Reason, AfterValidator(redact)]


class ActionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    action_id: Identifier = Field(
        description="Unique id of this action at its source (per complaint): an action sent "
        "again with the same id is applied once.",
        examples=["cm-000123-ack"],
    )
    complaint_id: Identifier = Field(examples=["CMP-2026-000123"])
    source: SourceName
    occurred_at: UtcDatetime = Field(
        description="When the action happened, with a UTC offset; deadlines are judged on its "
        "date in Europe/London."
    )


class OpenComplaint(ActionRecord):
    """Log a complaint that did not arrive as a contact (letter to the chief executive...)."""

    action: Literal["open"]
    service_area: ServiceArea
    channel: Channel
    customer_ref: CustomerRef | None = None
    contact_id: Identifier | None = None
    matter_date: date | None = Field(
        default=None, description="When the matter complained about happened."
    )


class AcknowledgeComplaint(ActionRecord):
    """Acknowledge (and log) the complaint at its current stage, or accept an escalation."""

    action: Literal["acknowledge"]


class RespondToComplaint(ActionRecord):
    action: Literal["respond"]
    outcome: ComplaintOutcome
    responder: StaffRef
    learning_actions: tuple[LearningAction, ...] = Field(default=(), max_length=20)

    @field_validator("learning_actions")
    @classmethod
    def _redact_descriptions(
        cls, actions: tuple[LearningAction, ...]
    ) -> tuple[LearningAction, ...]:
        """They travel on civicpulse.complaints and into the annual report: what the council
        will improve, never about whom, so a resident's details typed in are removed."""
        return tuple(a.model_copy(update={"description": redact(a.description)}) for a in actions)


class RequestEscalation(ActionRecord):
    """The customer asks for the next stage; no reason is needed."""

    action: Literal["request_escalation"]


class ExtendDeadline(ActionRecord):
    """Extend a response deadline, with the reason given to the customer: once per stage
    under the Code and the 2006 regulations; as often as agreed under the 2009 ones."""

    action: Literal["extend"]
    deadline: DeadlineKind = DeadlineKind.RESPOND
    new_due_date: date | None = Field(
        default=None, description="The new due date (a working day); or give `days`."
    )
    days: int | None = Field(default=None, ge=1, le=130, description="Working days to add.")
    reason: KeptReason

    @model_validator(mode="after")
    def _date_or_days(self) -> "ExtendDeadline":
        if (self.new_due_date is None) == (self.days is None):
            raise ValueError("give exactly one of new_due_date and days")
        return self


class ReferToOmbudsman(ActionRecord):
    action: Literal["refer_to_ombudsman"]
    ombudsman: Literal["local_government", "housing"] = "local_government"
    ombudsman_reference: Identifier | None = None


class RecordOmbudsmanDecision(ActionRecord):
    """The Ombudsman decided a complaint referred to it."""

    action: Literal["record_ombudsman_decision"]
    decision: OmbudsmanDecision
    ombudsman_reference: Identifier | None = None


class RefuseEscalation(ActionRecord):
    """Refuse to take the complaint to its next stage, with one of the documented reasons."""

    action: Literal["refuse_escalation"]
    reason: EscalationRefusalReason
    detail: KeptReason | None = None

    @model_validator(mode="after")
    def _other_needs_detail(self) -> "RefuseEscalation":
        if self.reason is EscalationRefusalReason.OTHER and not self.detail:
            raise ValueError("reason other needs its detail")
        return self


class CompleteLearningAction(ActionRecord):
    """A learning action from a response is done (the seeds' SMART actions)."""

    action: Literal["complete_learning_action"]
    learning_action_id: Identifier


class RecordPanelMeeting(ActionRecord):
    """Children's social care stage 3: the review panel met (2006 regulations, reg. 19)."""

    action: Literal["record_panel_meeting"]


class RecordPanelReport(ActionRecord):
    """Children's social care stage 3: the panel reported (2006 regulations, reg. 20)."""

    action: Literal["record_panel_report"]


class WithdrawComplaint(ActionRecord):
    action: Literal["withdraw"]
    reason: KeptReason | None = None


class CloseComplaint(ActionRecord):
    """Close the case. Before a response it needs a reason: that is how a complaint or an
    escalation is refused (for example a matter more than 12 months old)."""

    action: Literal["close"]
    reason: KeptReason | None = None


Action = Annotated[
    OpenComplaint
    | AcknowledgeComplaint
    | RespondToComplaint
    | RequestEscalation
    | ExtendDeadline
    | ReferToOmbudsman
    | WithdrawComplaint
    | CloseComplaint
    | RefuseEscalation
    | RecordOmbudsmanDecision
    | CompleteLearningAction
    | RecordPanelMeeting
    | RecordPanelReport,
    Field(discriminator="action"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)
