"""Intake's idempotency: deterministic event ids, fingerprints, and new versus duplicate.

Pure code, like `services.intake.domain`, whose accepted records these sort.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


class Identified(Protocol):
    """An accepted record, as far as idempotency goes (`domain.Accepted`)."""

    @property
    def source(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...


@dataclass
class Classified:
    """Positions in a list of accepted records, sorted by what becomes of each."""

    new: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)


def identity_of(item: Identified) -> Identity:
    return (item.source, item.idempotency_key)


def classify(accepted: Sequence[Identified], stored: Mapping[Identity, str]) -> Classified:
    """Sort records into new, duplicate (same key, same content) and conflicting.

    A key is bound to the content it was first accepted with: stored earlier,
    or else its first sighting in this batch.
    """
    bound: dict[Identity, str] = dict(stored)
    classified = Classified()
    for position, item in enumerate(accepted):
        identity = identity_of(item)
        if identity not in bound:
            bound[identity] = item.fingerprint
            classified.new.append(position)
        elif bound[identity] == item.fingerprint:
            classified.duplicates.append(position)
        else:
            classified.conflicts.append(position)
    return classified
