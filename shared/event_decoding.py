"""Canonical events from Kafka records, checked as fully as the catalogue's union checks them.

`event_from` is what the live consumers (`shared.consumer.decode_event`) and the metrics
rebuild decode records with.
"""

from collections.abc import Sequence

from shared.events.catalogue import ALL_EVENTS, parse_event, upcast
from shared.events.envelope import Event

# (event_type, schema_version) headers → the class they name, and that version's digits.
_CLASS_OF_HEADERS: dict[tuple[bytes, bytes], tuple[type[Event], bytes]] = {
    (cls.type_name().encode(), str(cls.version()).encode()): (cls, str(cls.version()).encode())
    for cls in ALL_EVENTS
}
_VERSION_KEY = b'"schema_version":'


def event_from(value: bytes, headers: Sequence[tuple[str, bytes]]) -> Event:
    """The event in a record's bytes, upcast; raises as `parse_event` does.

    When the headers name a class and the body states that version plainly, the body is
    validated as that class alone, straight from JSON: half the cost of the union, which
    builds the whole document in Python to find its tag first. Anything else, and any
    body the class refuses (headers that lie), goes to the union, whose outcome is the
    one returned: what is accepted, and how anything else fails, is the union's.
    """
    named = dict(headers)  # one pass (a repeated header: its last, only a hint)
    found = _CLASS_OF_HEADERS.get((named.get("event_type", b""), named.get("schema_version", b"")))
    if found is not None and _states_version(value, found[1]):
        try:
            return upcast(found[0].__pydantic_validator__.validate_json(value))
        except Exception:  # noqa: BLE001, S110 - the union decides, and says why
            pass
    return parse_event(value)


def _states_version(value: bytes, digits: bytes) -> bool:
    """Whether the body's one `schema_version` is exactly these digits, as serialised.

    The union dispatches on the version as written (`1.0` is no version it knows), while
    the class's `Literal[1]` would take `1.0` as 1: only a body whose version reads as the
    class's own takes the short way. A key inside a JSON string has escaped quotes, so it
    cannot match; a repeated key (the last one counts) is left to the union.
    """
    at = value.find(_VERSION_KEY)
    if at < 0 or value.find(_VERSION_KEY, at + 1) >= 0:
        return False
    start = at + len(_VERSION_KEY)
    end = start + len(digits)
    return value[start:end] == digits and value[end : end + 1] in (b",", b"}")
