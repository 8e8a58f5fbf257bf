"""The whole event catalogue as one discriminated union, and how to parse it.

The union dispatches on `event_type` together with `schema_version`, so two
versions of one event can be read side by side during a deprecation period.
"""

from collections.abc import Callable
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter

from shared.events.complaint_versions import COMPLAINT_UPCASTS, OLD_COMPLAINT_EVENTS
from shared.events.complaints import COMPLAINT_EVENTS
from shared.events.contacts import CONTACT_EVENTS
from shared.events.envelope import Event
from shared.events.feedback import (
    FEEDBACK_EVENTS,
    SatisfactionRespondedV1,
    upcast_responded_v1_v2,
)
from shared.events.metrics import METRICS_EVENTS
from shared.topics import COMPLAINTS, CONTACTS, FEEDBACK, METRICS, TopicSpec

ALL_EVENTS: tuple[type[Event], ...] = (
    *CONTACT_EVENTS,
    *COMPLAINT_EVENTS,
    *OLD_COMPLAINT_EVENTS,
    *FEEDBACK_EVENTS,
    *METRICS_EVENTS,
)
# Which canonical topic carries each family of events.
EVENTS_BY_TOPIC: dict[TopicSpec, tuple[type[Event], ...]] = {
    CONTACTS: CONTACT_EVENTS,
    COMPLAINTS: (*COMPLAINT_EVENTS, *OLD_COMPLAINT_EVENTS),
    FEEDBACK: FEEDBACK_EVENTS,
    METRICS: METRICS_EVENTS,
}
_TOPIC_OF: dict[type[Event], TopicSpec] = {
    cls: topic for topic, family in EVENTS_BY_TOPIC.items() for cls in family
}


def topic_for(event_class: type[Event]) -> TopicSpec:
    """The canonical topic an event is published on."""
    return _TOPIC_OF[event_class]


def _tag_of(value: Any) -> str | None:
    if isinstance(value, Event):
        return value.type_tag()
    if isinstance(value, dict):
        return f"{value.get('event_type')}:{value.get('schema_version')}"
    return None


_TAGGED_EVENTS = tuple(Annotated[cls, Tag(cls.type_tag())] for cls in ALL_EVENTS)
# Built from ALL_EVENTS, so mypy cannot see its members; typed as Any for it.
AnyEvent: Any = Annotated[
    Union[_TAGGED_EVENTS],  # noqa: UP007 - a Union of a runtime tuple
    Discriminator(
        _tag_of,
        custom_error_type="unknown_event",
        custom_error_message="unknown event_type/schema_version",
    ),
]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)


# Old versions read from retained topics, turned into the current one, so that
# handlers only ever see the current version of an event.
UPCASTS: dict[type[Event], Callable[[Any], Event]] = {
    **COMPLAINT_UPCASTS,
    SatisfactionRespondedV1: upcast_responded_v1_v2,
}


def upcast(event: Event) -> Event:
    cast_up = UPCASTS.get(type(event))
    return event if cast_up is None else upcast(cast_up(event))


def parse_event(data: bytes | str) -> Event:
    """Parse one event from JSON, upcast to its current version.

    Raises `pydantic.ValidationError` if it is not one.
    """
    return upcast(_ADAPTER.validate_json(data))
