"""Contact records a service passes over before the full decode, and those it must not.

Quality bar: "every record ends published, duplicate, or dead-lettered with a
reason". Complaints opens a complaint only for a `ContactReceived` of kind
`complaint` (DOMAIN.md: "Contact kind: `enquiry`, `service_request`,
`complaint`, `compliment`, `feedback`"). Feedback surveys what is resolved
(DOMAIN.md: "Every resolved service request, enquiry and complaint gets one
satisfaction request"): a contact resolved at first contact, or a
`ContactResolved`; an unresolved `ContactReceived` changes nothing. Records
either service ignores are skipped by their `event_type` header and a peek at one field; a
malformed record it would have handled still reaches the full decoder and is
dead-lettered with its reason.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from services.complaints.contact_records import ignored_contact as complaints_ignore
from services.feedback.contact_records import ignored_contact as feedback_ignore
from shared.consumer import ConsumerSettings, Fault, InboundRecord, Outcomes, RecordConsumer
from shared.consumer import decode_event as full_decode
from shared.dead_letters import SourcePosition
from shared.events.contacts import (
    ContactReceived,
    ContactReceivedPayload,
    ContactTransferred,
    ContactTransferredPayload,
)
from shared.events.envelope import Event
from shared.events.vocabulary import Channel, ContactKind
from shared.kafka import event_record
from shared.topics import CONTACTS

AT = datetime(2026, 3, 2, 10, tzinfo=UTC)


def received(kind: ContactKind, *, resolved: bool = False, n: int = 1) -> ContactReceived:
    return ContactReceived(
        contact_id=f"C-{n}",
        occurred_at=AT,
        source="crm",
        payload=ContactReceivedPayload(
            channel=Channel.PHONE,
            service_area="waste",
            kind=kind,
            customer_ref="CUST-1",
            resolved_at_first_contact=resolved,
        ),
    )


def inbound(event: Event, offset: int = 0) -> InboundRecord:
    record = event_record(event, CONTACTS)
    return InboundRecord(
        record.value,
        record.key,
        SourcePosition(CONTACTS.name, 0, offset),
        headers=tuple((k, v.encode()) for k, v in record.headers.items()),
    )


def tampered(event: Event, offset: int = 0, **payload: Any) -> InboundRecord:
    """The event's record with payload fields replaced, headers kept."""
    record = inbound(event, offset)
    body = json.loads(record.value)
    body["payload"].update(payload)
    return InboundRecord(json.dumps(body).encode(), record.key, record.position, record.headers)


def transfer() -> ContactTransferred:
    return ContactTransferred(
        contact_id="C-9",
        occurred_at=AT,
        source="telephony",
        payload=ContactTransferredPayload(
            from_team="waste", to_team="planning", service_area="waste"
        ),
    )


def test_complaints_skip_contacts_of_other_kinds_and_other_types() -> None:
    assert complaints_ignore(inbound(received(ContactKind.ENQUIRY)))
    assert complaints_ignore(inbound(transfer()))
    assert not complaints_ignore(inbound(received(ContactKind.COMPLAINT)))


@pytest.mark.parametrize(
    "record",
    [
        InboundRecord(b"{}", None, SourcePosition(CONTACTS.name, 0, 0)),  # no headers
        InboundRecord(
            b"\xff not json",
            None,
            SourcePosition(CONTACTS.name, 0, 0),
            (("event_type", b"ContactReceived"),),
        ),
        tampered(received(ContactKind.ENQUIRY), kind=7),
        tampered(received(ContactKind.COMPLAINT), channel="pigeon"),
    ],
    ids=["no-header", "not-json", "kind-not-a-string", "bad-complaint"],
)
def test_what_complaints_cannot_tell_goes_to_the_full_decoder(record: InboundRecord) -> None:
    assert not complaints_ignore(record)


def test_feedback_skips_unresolved_contacts_and_types_it_never_surveys() -> None:
    assert feedback_ignore(inbound(received(ContactKind.ENQUIRY, resolved=False)))
    assert feedback_ignore(inbound(transfer()))
    assert not feedback_ignore(inbound(received(ContactKind.ENQUIRY, resolved=True)))
    assert not feedback_ignore(
        tampered(received(ContactKind.ENQUIRY), resolved_at_first_contact="no")
    )


def relabelled(event: Event, event_type: str) -> InboundRecord:
    """The event's record under another `event_type` header, its body unchanged."""
    record = inbound(event)
    headers = tuple((k, event_type.encode() if k == "event_type" else v) for k, v in record.headers)
    return InboundRecord(record.value, record.key, record.position, headers)


def test_a_header_its_body_contradicts_is_never_trusted() -> None:
    """Metrics reads the body: a complaint or a resolved contact under a transfer's header
    is still a complaint or a resolved contact, so neither service may pass it over."""
    transferred = transfer().event_type
    assert not complaints_ignore(relabelled(received(ContactKind.COMPLAINT), transferred))
    assert not feedback_ignore(
        relabelled(received(ContactKind.ENQUIRY, resolved=True), transferred)
    )
    assert not feedback_ignore(relabelled(transfer(), received(ContactKind.ENQUIRY).event_type))


class Recorder:
    def __init__(self) -> None:
        self.handled: list[Event] = []
        self.letters: list[tuple[InboundRecord, Fault]] = []

    async def handle(self, events: Sequence[Event]) -> Outcomes:
        self.handled.extend(events)
        return None

    async def dead_letter(self, record: InboundRecord, fault: Fault, attempts: int) -> str:
        self.letters.append((record, fault))
        return fault.error_type


async def test_the_consumer_skips_ignored_records_and_still_dead_letters_a_bad_complaint() -> None:
    service = Recorder()
    consumer = RecordConsumer(
        full_decode,
        service.handle,
        service.dead_letter,
        settings=ConsumerSettings(),
        ignore=complaints_ignore,
    )
    complaint = received(ContactKind.COMPLAINT, n=2)
    bad = tampered(received(ContactKind.COMPLAINT, n=3), 3, channel="pigeon")

    await consumer.consume(
        [
            inbound(received(ContactKind.ENQUIRY), 0),
            inbound(transfer(), 1),
            inbound(complaint, 2),
            bad,
        ]
    )

    assert [e.event_id for e in service.handled] == [complaint.event_id]
    [(letter, fault)] = service.letters
    assert letter is bad
    assert fault.error_type == "invalid_event"
    assert "channel" in fault.describe()
