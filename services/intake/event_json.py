"""A checked record's canonical event as JSON, without building the event model.

The raw record was validated against intake's schema and rules
(`domain.check_raw_record`), which hold each field to the event's own constraints
or stricter: the same `Identifier`, `Team`, `WaitSeconds` and score types, the
customer reference's pattern, vocabulary values folded into the event's enums and
the service-area pattern (`domain.Vocabulary`), sources as slugs. Validating the
event again checked the same values twice and cost more than the rest of accepting
a record (issue 15: no re-validation of already-validated fields).

So the event's JSON is written from the record's values: the event's fields in the
model's order, each of the type the model holds (a float where it has a float, the
enums' values), serialised by pydantic-core, which writes each type as the model's
serialiser does. The bytes are the model's own: a property test builds the event the
long way, through its validator, and compares them, for every record type. Should
the events' fields change, this module refuses to import until it is brought in step.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic_core import to_json

from services.intake.identity import name_uuid_text
from services.intake.records import (
    RawCallAbandoned,
    RawContactReceived,
    RawContactResolved,
    RawContactTransferred,
    RawMysteryShopAssessed,
    RawRecord,
)
from shared.events.contacts import (
    CallAbandoned,
    ContactEvent,
    ContactReceived,
    ContactResolved,
    ContactTransferred,
    MysteryShopAssessed,
)

# The canonical event each kind of raw record becomes.
EVENT_OF_RECORD: Mapping[type[RawRecord], type[ContactEvent]] = {
    RawContactReceived: ContactReceived,
    RawContactTransferred: ContactTransferred,
    RawContactResolved: ContactResolved,
    RawCallAbandoned: CallAbandoned,
    RawMysteryShopAssessed: MysteryShopAssessed,
}

# `Event`'s fields as `write` writes them, in the model's order.
ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "source",
    "correlation_id",
    "causation_id",
    "contact_id",
    "payload",
)


class EventShape(NamedTuple):
    event_class: type[ContactEvent]
    event_type: str
    schema_version: int
    # The payload's fields, in its model's order; each is a field of the raw record.
    payload_fields: tuple[str, ...]
    # What `write` leaves out of the raw record's fields to make the payload (as
    # `to_json`'s `exclude`): the raw record holds the payload's fields in the payload's
    # order, so its fields, as they are, less these, are the payload.
    exclude: Mapping[str, set[str]]


def _shape(record_class: type[RawRecord], event_class: type[ContactEvent]) -> EventShape:
    if tuple(event_class.model_fields) != ENVELOPE_FIELDS:
        raise RuntimeError(f"{event_class.__name__}'s fields changed: update {__name__}")
    payload_class = event_class.model_fields["payload"].annotation
    payload_fields = tuple(getattr(payload_class, "model_fields", ()))
    record_fields = tuple(record_class.model_fields)
    if not payload_fields or not set(payload_fields) <= set(record_fields):
        raise RuntimeError(f"{event_class.__name__}'s payload is not {record_class.__name__}'s")
    if tuple(name for name in record_fields if name in payload_fields) != payload_fields:
        raise RuntimeError(f"{record_class.__name__}'s fields are not in its payload's order")
    return EventShape(
        event_class,
        event_class.type_name(),
        event_class.version(),
        payload_fields,
        {"payload": set(record_fields) - set(payload_fields)},
    )


SHAPES: Mapping[type[RawRecord], EventShape] = {
    record_class: _shape(record_class, event_class)
    for record_class, event_class in EVENT_OF_RECORD.items()
}


def shape_of(record: RawRecord) -> EventShape:
    shape = SHAPES.get(type(record))
    if shape is None:
        raise TypeError(f"no event for {type(record).__name__}")
    return shape


def event_id_text(source: str, idempotency_key: str) -> str:
    """`identity.event_id_for`, as the event's JSON writes it."""
    return name_uuid_text(f"{source}\n{idempotency_key}")


def write(
    record: RawRecord,
    shape: EventShape,
    *,
    event_id: str,
    source: str,
    recorded_at: datetime,
    vocabulary_values: Mapping[str, str],
) -> bytes:
    """The event's canonical JSON, as `Event.to_bytes` of the validated model writes it."""
    if recorded_at.tzinfo is not UTC:  # the model normalises to UTC (`_as_utc`)
        if recorded_at.tzinfo is None:
            raise ValueError("recorded_at must be timezone-aware")
        recorded_at = recorded_at.astimezone(UTC)
    # A copy of the record's fields (each a field of the model: `extra="forbid"`),
    # vocabulary values in their places; `exclude` leaves the envelope's fields out.
    payload = dict(vars(record))
    payload.update(vocabulary_values)
    document: dict[str, Any] = {
        "event_id": event_id,
        "event_type": shape.event_type,
        "schema_version": shape.schema_version,
        "occurred_at": record.occurred_at,  # UTC already (`UtcDatetime`)
        "recorded_at": recorded_at,
        "source": source,
        # One id for everything about a contact, unless the publisher chose its own.
        "correlation_id": name_uuid_text(f"{source}\n{record.correlation_id or record.contact_id}"),
        "causation_id": None,
        "contact_id": record.contact_id,
        "payload": payload,
    }
    return to_json(document, exclude=shape.exclude)
