"""Which contact records complaints can pass over without decoding them in full.

Complaints reads every canonical contact event but acts on one kind only: a
`ContactReceived` of kind `complaint` opens a complaint (`open_action_for`).
Full validation of the rest was most of the service's CPU per contact, so
records are told apart first by their `event_type` (the header set by every
canonical publisher, `shared.kafka.event_record`, agreeing with the body) and,
for `ContactReceived`, by the kind in their JSON. Whatever this cannot tell (no
header, a header the body contradicts, JSON that does not read as an event, a
kind that is not a string) goes to the full decoder, so a bad record that could
be a complaint is still dead-lettered with its reason.
"""

from shared.consumer import InboundRecord, peek_event
from shared.events.contacts import ContactReceived
from shared.events.vocabulary import ContactKind

RECEIVED = ContactReceived.type_name()


def ignored_contact(record: InboundRecord) -> bool:
    """True when the record is surely not a complaint contact."""
    peeked = peek_event(record)
    if peeked is None:
        return False
    event_type, payload = peeked
    if event_type != RECEIVED:
        return True  # transfers, resolutions, abandoned calls: nothing for complaints
    kind = payload.get("kind")
    return isinstance(kind, str) and kind != ContactKind.COMPLAINT.value
