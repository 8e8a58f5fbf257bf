"""Earlier versions of complaint events, still read from civicpulse.complaints (kept for
ever), and the upcasts that turn each into the next version, so that handlers only see the
current one. Version 1 of several events carried officers' free text (reasons, details),
which could not be erased from a topic kept for ever; the current versions say only
whether there was one, and the complaints service keeps the text with the case.
"""

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from shared.events.complaints import (
    CloseReason,
    ComplaintClosed,
    ComplaintDeadlineExtended,
    ComplaintDeadlineExtendedPayload,
    ComplaintEscalationRefused,
    ComplaintEvent,
    ComplaintFacts,
    ComplaintWithdrawn,
    EscalationRefusalReason,
    Reason,
    Stage,
)
from shared.events.envelope import Event


class ComplaintDeadlineExtendedV1Payload(ComplaintDeadlineExtendedPayload):
    reason: Reason


class ComplaintDeadlineExtendedV1(ComplaintEvent):
    """Version 1 carried the reason's text on a topic kept for ever; it could not be erased."""

    event_type: Literal["ComplaintDeadlineExtended"] = "ComplaintDeadlineExtended"
    schema_version: Literal[1] = 1
    payload: ComplaintDeadlineExtendedV1Payload


class ComplaintWithdrawnV1Payload(ComplaintFacts):
    stage: Stage
    reason: Reason | None = None


class ComplaintWithdrawnV1(ComplaintEvent):
    """Version 1 carried the reason's text on a topic kept for ever."""

    event_type: Literal["ComplaintWithdrawn"] = "ComplaintWithdrawn"
    schema_version: Literal[1] = 1
    payload: ComplaintWithdrawnV1Payload


class ComplaintClosedV1Payload(ComplaintFacts):
    final_stage: Stage
    reason: Reason | None = None


class ComplaintClosedV1(ComplaintEvent):
    """Version 1: a free-text `reason` that, before a response, meant a refusal."""

    event_type: Literal["ComplaintClosed"] = "ComplaintClosed"
    schema_version: Literal[1] = 1
    payload: ComplaintClosedV1Payload


class ComplaintClosedV2Payload(ComplaintFacts):
    final_stage: Stage
    closed_because: CloseReason = Field(
        default=CloseReason.RESOLVED,
        description="`escalation_window_lapsed`: the window to ask for the next stage ended "
        "with no request (the service closed it); `escalation_refused` and `refused`: the "
        "council said no, with a reason; `resolved`: closed after a response; "
        "`officer_closed`: closed by hand before the window ended (the customer may still "
        "escalate inside it).",
    )
    reason: Reason | None = None


class ComplaintClosedV2(ComplaintEvent):
    """Version 2 gave the cause, but still carried the reason's text."""

    event_type: Literal["ComplaintClosed"] = "ComplaintClosed"
    schema_version: Literal[2] = 2
    payload: ComplaintClosedV2Payload


def upcast_closed_v1_v2(event: ComplaintClosedV1) -> ComplaintClosedV2:
    """Version 1 had no cause; a reason then meant the officer closed it with one."""
    payload = event.payload
    because = CloseReason.RESOLVED if payload.reason is None else CloseReason.OFFICER_CLOSED
    return ComplaintClosedV2.model_validate(
        {
            **event.model_dump(exclude={"event_type", "schema_version", "payload"}),
            "payload": {**payload.model_dump(), "closed_because": because},
        }
    )


class ComplaintEscalationRefusedV1Payload(ComplaintFacts):
    stage: Stage = Field(description="The stage whose escalation was refused.")
    reason: EscalationRefusalReason
    detail: Reason | None = Field(default=None, description="Required when reason is other.")

    @model_validator(mode="after")
    def _other_needs_detail(self) -> "ComplaintEscalationRefusedV1Payload":
        if self.reason is EscalationRefusalReason.OTHER and not self.detail:
            raise ValueError("a refusal for another reason needs its detail")
        return self


class ComplaintEscalationRefusedV1(ComplaintEvent):
    """Version 1 carried the detail's text on a topic kept for ever."""

    event_type: Literal["ComplaintEscalationRefused"] = "ComplaintEscalationRefused"
    schema_version: Literal[1] = 1
    payload: ComplaintEscalationRefusedV1Payload


def _without_text(
    event: ComplaintEvent, target: type[ComplaintEvent], text: str, flag: str | None
) -> Any:
    """`event` as `target`: its free text `text` dropped, and `flag` saying it was there."""
    payload = event.payload.model_dump(exclude={text})  # type: ignore[attr-defined]
    if flag is not None:
        payload[flag] = getattr(event.payload, text) is not None  # type: ignore[attr-defined]
    return target.model_validate(
        {
            **event.model_dump(exclude={"event_type", "schema_version", "payload"}),
            "payload": payload,
        }
    )


def upcast_extended_v1_v2(event: ComplaintDeadlineExtendedV1) -> ComplaintDeadlineExtended:
    """The reason's text is dropped: the complaints service has it."""
    extended: ComplaintDeadlineExtended = _without_text(
        event, ComplaintDeadlineExtended, "reason", None
    )
    return extended


def upcast_withdrawn_v1_v2(event: ComplaintWithdrawnV1) -> ComplaintWithdrawn:
    withdrawn: ComplaintWithdrawn = _without_text(
        event, ComplaintWithdrawn, "reason", "reason_recorded"
    )
    return withdrawn


def upcast_closed_v2_v3(event: ComplaintClosedV2) -> ComplaintClosed:
    closed: ComplaintClosed = _without_text(event, ComplaintClosed, "reason", "reason_recorded")
    return closed


def upcast_refused_v1_v2(event: ComplaintEscalationRefusedV1) -> ComplaintEscalationRefused:
    refused: ComplaintEscalationRefused = _without_text(
        event, ComplaintEscalationRefused, "detail", "detail_recorded"
    )
    return refused


# Old versions read from the topic, and the upcast that makes each the next version.


COMPLAINT_UPCASTS: dict[type[Event], Callable[[Any], Event]] = {
    ComplaintClosedV1: upcast_closed_v1_v2,
    ComplaintClosedV2: upcast_closed_v2_v3,
    ComplaintDeadlineExtendedV1: upcast_extended_v1_v2,
    ComplaintWithdrawnV1: upcast_withdrawn_v1_v2,
    ComplaintEscalationRefusedV1: upcast_refused_v1_v2,
}


OLD_COMPLAINT_EVENTS: tuple[type[ComplaintEvent], ...] = (
    ComplaintDeadlineExtendedV1,
    ComplaintWithdrawnV1,
    ComplaintClosedV1,
    ComplaintClosedV2,
    ComplaintEscalationRefusedV1,
)
