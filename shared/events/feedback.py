"""Satisfaction events: one request per resolved case, the same questions everywhere."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from shared.events.envelope import Event, FrozenModel, UtcDatetime
from shared.events.vocabulary import (
    CaseType,
    Channel,
    CustomerRef,
    Identifier,
    Resolved,
    ServiceArea,
)


class SatisfactionEvent(Event):
    key_field: ClassVar[str] = "request_id"
    request_id: Identifier = Field(description="The satisfaction request.")


class SurveyCase(FrozenModel):
    """The case a satisfaction request is about."""

    case_type: CaseType
    case_id: Identifier
    service_area: ServiceArea
    channel: Channel


class SatisfactionRequestedPayload(SurveyCase):
    customer_ref: CustomerRef
    expires_at: UtcDatetime


class SatisfactionRequested(SatisfactionEvent):
    event_type: Literal["SatisfactionRequested"] = "SatisfactionRequested"
    schema_version: Literal[1] = 1
    payload: SatisfactionRequestedPayload


class SatisfactionScores(SurveyCase):
    overall: int = Field(ge=1, le=5, description="Overall satisfaction, 1 (very poor) to 5.")
    ease: int = Field(ge=1, le=7, description="Customer effort, 1 very hard to 7 very easy.")
    resolved: Resolved


class SatisfactionRespondedV1Payload(SatisfactionScores):
    comment: Annotated[str, Field(max_length=1000)] | None = None


class SatisfactionRespondedV1(SatisfactionEvent):
    """Version 1 carried the comment's text on a topic kept for ever; it could not be erased."""

    event_type: Literal["SatisfactionResponded"] = "SatisfactionResponded"
    schema_version: Literal[1] = 1
    payload: SatisfactionRespondedV1Payload


class SatisfactionRespondedPayload(SatisfactionScores):
    comment_ref: Identifier | None = Field(
        default=None,
        description="The comment, if the resident left one: its text stays in the feedback "
        "service (`GET /v1/comments/{comment_ref}`), redacted, and is deleted when the "
        "customer is erased. The request id; null for no comment.",
    )


class SatisfactionResponded(SatisfactionEvent):
    event_type: Literal["SatisfactionResponded"] = "SatisfactionResponded"
    schema_version: Literal[2] = 2
    payload: SatisfactionRespondedPayload


def upcast_responded_v1_v2(event: SatisfactionRespondedV1) -> SatisfactionResponded:
    """Version 1's text is dropped, not carried on: only whether there was a comment."""
    payload = event.payload
    return SatisfactionResponded.model_validate(
        {
            **event.model_dump(exclude={"event_type", "schema_version", "payload"}),
            "payload": {
                **payload.model_dump(exclude={"comment"}),
                "comment_ref": event.request_id if payload.comment else None,
            },
        }
    )


class SatisfactionExpired(SatisfactionEvent):
    event_type: Literal["SatisfactionExpired"] = "SatisfactionExpired"
    schema_version: Literal[1] = 1
    payload: SurveyCase


class CustomerOptedOutPayload(FrozenModel):
    scope: Literal["surveys"] = "surveys"


class CustomerOptedOut(Event):
    key_field: ClassVar[str] = "customer_ref"
    event_type: Literal["CustomerOptedOut"] = "CustomerOptedOut"
    schema_version: Literal[1] = 1
    customer_ref: CustomerRef
    payload: CustomerOptedOutPayload = CustomerOptedOutPayload()


FEEDBACK_EVENTS: tuple[type[Event], ...] = (
    SatisfactionRequested,
    SatisfactionRespondedV1,
    SatisfactionResponded,
    SatisfactionExpired,
    CustomerOptedOut,
)
