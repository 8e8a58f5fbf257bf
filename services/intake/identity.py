"""Intake's idempotency: deterministic event ids, fingerprints, and new versus duplicate.

Pure code, like `services.intake.domain`, whose accepted records these sort.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from shared.events.contacts import ContactEvent

# Deterministic ids: the same record always becomes the same event_id, so even
# a record published twice across a crash is one event to every consumer.
EVENT_ID_NAMESPACE = UUID("6f1d4e52-8f53-4a8e-9d0c-6b1f3c2f7a10")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def name_uuid(name: str) -> UUID:
    """`uuid.uuid5(EVENT_ID_NAMESPACE, name)`, without the import and the namespace's
    encoding `uuid5` repeats on every call: two a record, 9 % of intake's time before
    (tests/unit/test_intake_domain.py compares the two)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return UUID(bytes=digest[:16], version=5)


# SHA-1 already fed the namespace: each id copies it and adds only its name.
_NAMESPACE_SHA1 = hashlib.sha1(_NAMESPACE_BYTES, usedforsecurity=False)
# uuid5's variant bits (10xx) over the first hex digit of the fourth group.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def name_uuid_text(name: str) -> str:
    """`str(name_uuid(name))` without building the `UUID` (about a microsecond of
    Python each), from the digest's hex: the id as the event's JSON carries it."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name.encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def event_id_for(source: str, idempotency_key: str) -> UUID:
    return name_uuid(f"{source}\n{idempotency_key}")


def fingerprint(event: ContactEvent) -> str:
    """What makes two records 'the same': everything but when intake saw them."""
    content = event.model_dump_json(exclude={"recorded_at"})
    return hashlib.sha256(content.encode()).hexdigest()


_RECORDED_AT = b',"recorded_at":"'


def fingerprint_of_json(value: bytes) -> str:
    """`fingerprint` of an event from its canonical JSON, without serialising it again.

    The envelope's fields come first, in a fixed order, and none before
    `recorded_at` (a UUID, the type name, the version, an instant) can hold a
    quote: the first `,"recorded_at":"` is that field, and its value, an ISO
    instant, ends at the next quote. Cutting it out leaves exactly the JSON that
    `fingerprint` hashes (a property test compares the two).
    """
    start = value.index(_RECORDED_AT)
    end = value.index(b'"', start + len(_RECORDED_AT)) + 1
    digest = hashlib.sha256(value[:start])
    digest.update(value[end:])
    return digest.hexdigest()


Identity = tuple[str, str]  # (source, idempotency_key)


class Keyed(Protocol):
    """A record, as far as its identity goes (`domain.Checked`, `domain.Accepted`)."""

    @property
    def source(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...


class Identified(Keyed, Protocol):
    """An accepted record, as far as idempotency goes (`domain.Accepted`)."""

    @property
    def fingerprint(self) -> str: ...


@dataclass
class Classified:
    """Positions in a list of accepted records, sorted by what becomes of each."""

    new: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)


def identity_of(item: Keyed) -> Identity:
    return (item.source, item.idempotency_key)


class Binding(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class Bindings:
    """Each key bound to the content it was first accepted with: stored earlier, or
    else its first sighting since (records are sorted in the order they arrived)."""

    def __init__(self, stored: Mapping[Identity, str]) -> None:
        self._bound = dict(stored)

    def sort(self, item: Identified) -> Binding:
        identity = (item.source, item.idempotency_key)
        bound = self._bound.get(identity)
        if bound is None:
            self._bound[identity] = item.fingerprint
            return Binding.NEW
        return Binding.DUPLICATE if bound == item.fingerprint else Binding.CONFLICT


def classify(accepted: Sequence[Identified], stored: Mapping[Identity, str]) -> Classified:
    """Sort records into new, duplicate (same key, same content) and conflicting."""
    bindings = Bindings(stored)
    classified = Classified()
    positions = {
        Binding.NEW: classified.new,
        Binding.DUPLICATE: classified.duplicates,
        Binding.CONFLICT: classified.conflicts,
    }
    for position, item in enumerate(accepted):
        positions[bindings.sort(item)].append(position)
    return classified
