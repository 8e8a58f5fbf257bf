"""`decode_event`'s fast path (the class its headers name) decides exactly as the union does.

Headers are a hint, never trusted: whatever they say, a record decodes to what
`parse_event` makes of its body, or is refused with `parse_event`'s reason.
"""

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.consumer import InboundRecord, RecordRejectedError, decode_event
from shared.dead_letters import SourcePosition
from shared.event_decoding import event_from
from shared.events.catalogue import ALL_EVENTS, parse_event
from shared.events.complaint_versions import ComplaintClosedV1
from shared.events.contacts import ContactReceived
from shared.events.envelope import Event
from shared.kafka import event_record
from shared.topics import CONTACTS
from tests.unit.test_events import FACTORIES

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
HUGE_INTEGER = b'{"n": ' + b"9" * 5000 + b"}"


def inbound(value: bytes, event_type: str, schema_version: str) -> InboundRecord:
    headers = (("event_type", event_type.encode()), ("schema_version", schema_version.encode()))
    return InboundRecord(value, b"k", SourcePosition(CONTACTS.name, 0, 0), headers)


def as_published(event: Event) -> InboundRecord:
    record = event_record(event, CONTACTS)
    return inbound(record.value, record.headers["event_type"], record.headers["schema_version"])


@pytest.mark.parametrize("event_class", ALL_EVENTS, ids=lambda c: c.type_tag())
def test_every_event_as_published_decodes_as_the_union_reads_it(event_class: type[Event]) -> None:
    record = as_published(FACTORIES[event_class]())

    decoded = decode_event(record)

    assert decoded == parse_event(record.value)
    assert type(decoded) is type(parse_event(record.value))  # old versions upcast too


@pytest.mark.parametrize(
    ("event_type", "schema_version"),
    [("ContactTransferred", "1"), ("ContactReceived", "7"), ("Nonsense", "1"), ("", "")],
)
def test_headers_that_lie_do_not_change_what_the_body_decodes_to(
    event_type: str, schema_version: str
) -> None:
    event = FACTORIES[ContactReceived]()

    decoded = decode_event(inbound(event.to_bytes(), event_type, schema_version))

    assert type(decoded) is ContactReceived
    assert decoded == event


def test_an_old_version_under_the_current_version_s_headers_is_upcast() -> None:
    old = FACTORIES[ComplaintClosedV1]()

    decoded = decode_event(inbound(old.to_bytes(), "ComplaintClosed", "2"))

    assert decoded == parse_event(old.to_bytes())
    assert type(decoded) is not ComplaintClosedV1


def reason(value: bytes, *headers: str) -> str:
    with pytest.raises(RecordRejectedError) as refused:
        decode_event(inbound(value, *headers))
    return refused.value.fault.describe()


@pytest.mark.parametrize(
    "changes",
    [
        {"payload": {"channel": "carrier pigeon"}},
        {"occurred_at": "2026-01-01T00:00:00"},  # naive
        {"surprise": 1},
        {"event_type": "ContactTransferred"},  # the body is another event's
    ],
)
def test_a_bad_body_under_good_headers_is_refused_with_the_union_s_reason(
    changes: dict[str, Any],
) -> None:
    document = json.loads(FACTORIES[ContactReceived]().to_bytes())
    payload = changes.pop("payload", {})
    document.update(changes)
    document["payload"].update(payload)
    value = json.dumps(document).encode()

    with_headers = reason(value, "ContactReceived", "1")

    assert with_headers == reason(value, "", "")
    assert with_headers.startswith("not a CivicPulse event")


@pytest.mark.parametrize("value", [DEEP_JSON, HUGE_INTEGER, b"\xff\xfe", b"null"])
def test_hostile_bytes_under_good_headers_fail_as_the_union_fails(value: bytes) -> None:
    """Hostile input: whatever the class's validator raises, the union's outcome is the one
    seen (the consumer makes any decoder exception a dead letter; the rebuild skips the
    union's `ValidationError`s)."""
    by_union = failure(lambda: parse_event(value))
    by_headers = failure(
        lambda: event_from(value, (("event_type", b"ContactTransferred"), ("schema_version", b"1")))
    )

    assert type(by_headers) is type(by_union)
    assert str(by_headers) == str(by_union)


def failure(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - whichever it is, compared above
        return error
    pytest.fail("decoded hostile bytes")


@pytest.mark.parametrize(
    "version",
    [b"1.0", b"1e0", b" 1", b'"1"', b"true", b"01", b'1, "schema_version": 1.0'],
)
def test_a_version_written_otherwise_is_judged_by_the_union(version: bytes) -> None:
    """`1.0` is a version the union does not know; the class's `Literal[1]` alone takes it."""
    value = (
        FACTORIES[ContactReceived]()
        .to_bytes()
        .replace(b'"schema_version":1', b'"schema_version":' + version)
    )
    headers = (("event_type", b"ContactReceived"), ("schema_version", b"1"))

    by_union = outcome(lambda: parse_event(value))

    assert outcome(lambda: event_from(value, headers)) == by_union


def outcome(call: Callable[[], Event]) -> object:
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - whichever it is, compared
        return (type(error), str(error))
