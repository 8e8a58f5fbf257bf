"""Contact events: what happened when a customer got in touch."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from shared.events.envelope import Event, FrozenMapping, FrozenModel
from shared.events.vocabulary import (
    Channel,
    ContactKind,
    CustomerRef,
    Identifier,
    ServiceArea,
    Slug,
)

WaitSeconds = Annotated[
    float, Field(ge=0, le=86_400, description="Seconds the caller waited in the queue.")
]
Team = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Team identifier, e.g. `reception` or a service area.",
        examples=["planning", "reception"],
    ),
]


class ContactEvent(Event):
    key_field: ClassVar[str] = "contact_id"
    contact_id: Identifier = Field(description="The contact (call, visit, web form, email).")


class ContactReceivedPayload(FrozenModel):
    channel: Channel
    service_area: ServiceArea
    kind: ContactKind
    customer_ref: CustomerRef | None = Field(
        default=None, description="Absent for anonymous contacts."
    )
    answered_by_team: Team | None = Field(
        default=None, description="Team that first answered; for calls, who picked up."
    )
    transfers: int = Field(
        default=0, ge=0, le=50, description="Times the contact was passed on before it was handled."
    )
    resolved_at_first_contact: bool = Field(
        default=False, description="Resolved within this contact, with no follow-up needed."
    )
    wait_seconds: WaitSeconds | None = Field(
        default=None, description="For calls: time in the queue before answer."
    )


class ContactReceived(ContactEvent):
    event_type: Literal["ContactReceived"] = "ContactReceived"
    schema_version: Literal[1] = 1
    payload: ContactReceivedPayload


class ContactTransferredPayload(FrozenModel):
    from_team: Team
    to_team: Team
    service_area: ServiceArea


class ContactTransferred(ContactEvent):
    event_type: Literal["ContactTransferred"] = "ContactTransferred"
    schema_version: Literal[1] = 1
    payload: ContactTransferredPayload


class ContactResolvedPayload(FrozenModel):
    # Carried again so that consumers (feedback, metrics) need no lookup.
    channel: Channel
    service_area: ServiceArea
    kind: ContactKind
    customer_ref: CustomerRef | None = None
    resolved_by_team: Team | None = None


class ContactResolved(ContactEvent):
    event_type: Literal["ContactResolved"] = "ContactResolved"
    schema_version: Literal[1] = 1
    payload: ContactResolvedPayload


class CallAbandonedPayload(FrozenModel):
    service_area: ServiceArea = Field(description="The queue the caller chose.")
    wait_seconds: WaitSeconds
    customer_ref: CustomerRef | None = None


class CallAbandoned(ContactEvent):
    """A caller hung up before anyone answered."""

    event_type: Literal["CallAbandoned"] = "CallAbandoned"
    schema_version: Literal[1] = 1
    payload: CallAbandonedPayload


class MysteryShopAssessedPayload(FrozenModel):
    channel: Channel
    service_area: ServiceArea
    scores: FrozenMapping[Slug, Annotated[int, Field(ge=0, le=100)]] = Field(
        min_length=1,
        max_length=50,
        description="Score out of 100 per customer care standard.",
        examples=[{"greeting": 80, "accuracy": 100}],
    )


class MysteryShopAssessed(ContactEvent):
    event_type: Literal["MysteryShopAssessed"] = "MysteryShopAssessed"
    schema_version: Literal[1] = 1
    payload: MysteryShopAssessedPayload


CONTACT_EVENTS: tuple[type[ContactEvent], ...] = (
    ContactReceived,
    ContactTransferred,
    ContactResolved,
    CallAbandoned,
    MysteryShopAssessed,
)
