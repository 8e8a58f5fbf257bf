"""Which contact records feedback can pass over without decoding them in full.

Feedback surveys a contact when it is resolved: a `ContactResolved`, or a
`ContactReceived` resolved at first contact. Other contact events (transfers,
abandoned calls, mystery shops) and contacts received unresolved change
nothing here, so they are told apart by their `event_type` (the header set by
every canonical publisher, `shared.kafka.event_record`, agreeing with the body)
and, for `ContactReceived`, by `resolved_at_first_contact` in their JSON, before
full validation and without a processed-event row. Whatever this cannot tell (no
header, a header the body contradicts, JSON that does not read as an event, a
flag that is not `false`) goes to the full decoder, so a bad record that could be
surveyed is still dead-lettered with its reason.
"""

from shared.consumer import InboundRecord, peek_event
from shared.events.contacts import CONTACT_EVENTS, ContactReceived, ContactResolved

RECEIVED = ContactReceived.type_name()
SURVEYED_TYPES = frozenset({RECEIVED, ContactResolved.type_name()})
IGNORED_TYPES = frozenset(
    cls.type_name() for cls in CONTACT_EVENTS if cls.type_name() not in SURVEYED_TYPES
)


def ignored_contact(record: InboundRecord) -> bool:
    """True when the record is surely a contact event feedback does nothing with."""
    peeked = peek_event(record)
    if peeked is None:
        return False
    event_type, payload = peeked
    if event_type in IGNORED_TYPES:
        return True
    return event_type == RECEIVED and payload.get("resolved_at_first_contact") is False
