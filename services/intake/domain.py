"""Intake's rules: read a raw contact record, normalise it, turn it into an event.

Pure code: no Kafka, no database. Every outcome is either `Accepted` (with the
canonical event) or `Rejected` (with a reason code and the failing fields).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from services.intake import event_json
from services.intake.identity import fingerprint_of_json
from services.intake.records import RawContactRecord, RawRecord
from shared.events.contacts import ContactEvent
from shared.events.vocabulary import CUSTOMER_REF_PATTERN, Channel, ContactKind, ServiceArea

# Fields that carry a person's identity. They never reach an event topic:
# intake drops them (and counts that it did) rather than losing the contact.
PERSONAL_DATA_FIELDS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "customer_name",
        "email",
        "email_address",
        "phone",
        "phone_number",
        "telephone",
        "mobile",
        "address",
        "postcode",
        "date_of_birth",
    }
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"[\d+() .-]+")
_DIGIT = re.compile(r"\d")
_SEPARATORS = re.compile(r"[\s\-]+")
_CUSTOMER_REF = re.compile(CUSTOMER_REF_PATTERN)
# A reference `_check` takes without its three tests: it has the pattern's form, so no
# `@` (not an email address), and a letter, `_` or `:`, none of which is in a phone
# number's characters (`_PHONE`). The usual reference, tested once.
_PLAIN_CUSTOMER_REF = re.compile(r"(?=[0-9.-]*[A-Za-z_:])" + CUSTOMER_REF_PATTERN.lstrip("^"))

_RECORD_ADAPTER: TypeAdapter[RawRecord] = TypeAdapter(RawContactRecord)
_RECORD_VALIDATOR = _RECORD_ADAPTER.validator  # called straight, on the hot path


class RejectionReason(StrEnum):
    """Bounded reason codes: they label metrics and dead letters."""

    INVALID_JSON = "invalid_json"
    INVALID_RECORD = "invalid_record"
    UNKNOWN_VOCABULARY = "unknown_vocabulary"
    PERSONAL_DATA = "personal_data"
    OCCURRED_IN_FUTURE = "occurred_in_future"
    OCCURRED_TOO_EARLY = "occurred_too_early"
    SOURCE_MISSING = "source_missing"
    SOURCE_MISMATCH = "source_mismatch"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    PROCESSING_FAILED = "processing_failed"
    # Given by the shared consumer (shared.dead_letters), not by these rules.
    UNDECODABLE = "undecodable"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectionReason
    errors: tuple[FieldError, ...]

    def describe(self) -> str:
        details = "; ".join(
            f"{e.field}: {e.message}" if e.field else e.message for e in self.errors
        )
        return f"{self.reason.value}: {details}"

    @property
    def error_type(self) -> str:
        return self.reason.value


# Accepted and Checked are named tuples: immutable like a frozen dataclass, but built
# in a third of the time (each is built once a record, on the hot path).
class Accepted(NamedTuple):
    """A record's canonical event, as the JSON that is published (`event_json`)."""

    event_class: type[ContactEvent]
    event_id: str  # as the JSON has it
    contact_id: str  # the event's key
    source: str
    idempotency_key: str
    fingerprint: str
    stripped_fields: tuple[str, ...]
    # The event's canonical JSON, serialised once: published as it is.
    value: bytes

    @property
    def event(self) -> ContactEvent:
        """The event, read back from its JSON (not on the hot path: for tests and callers
        that want the model)."""
        event: ContactEvent = self.event_class.__pydantic_validator__.validate_json(self.value)
        return event


class Checked(NamedTuple):
    """A record that passed intake's rules, before it becomes its event (`accept`):
    building that is most of the work, and refuses nothing, so the handler does it."""

    record: RawRecord
    source: str
    stripped_fields: tuple[str, ...]
    # The vocabulary fields' canonical values.
    vocabulary_values: Mapping[str, str]
    recorded_at: datetime

    @property
    def idempotency_key(self) -> str:
        return self.record.idempotency_key


_SERVICE_AREA: TypeAdapter[str] = TypeAdapter(ServiceArea)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The values each vocabulary field may take, canonical: as events carry them
    (events are written without validating them again, `event_json`)."""

    service_areas: frozenset[str]
    channels: frozenset[str] = frozenset(Channel)
    kinds: frozenset[str] = frozenset(ContactKind)

    def __post_init__(self) -> None:
        for area in self.service_areas:
            try:
                _SERVICE_AREA.validate_python(area, strict=True)
            except ValidationError as error:
                raise ValueError(f"service area {area!r} is not one events can carry") from error
        if not self.channels <= set(Channel) or not self.kinds <= set(ContactKind):
            raise ValueError("channels and kinds must be the events' own values")


@dataclass(frozen=True, slots=True)
class TimestampBounds:
    """When a contact can plausibly have happened, relative to when intake reads it.

    A little future is allowed for publishers' clock skew; any past back to
    `earliest` is allowed, so backfills of real history still go through.
    """

    max_clock_skew: timedelta = timedelta(seconds=900)
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)


def fold(value: str) -> str:
    """`Face-to-face ` -> `face_to_face`: tolerant of case and separators only."""
    return _SEPARATORS.sub("_", value.strip().lower())


def reject(reason: RejectionReason, field: str, message: str) -> Rejected:
    return Rejected(reason, (FieldError(field, message),))


def decode_json(raw: bytes) -> dict[str, Any] | Rejected:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        # ValueError covers undecodable bytes, bad syntax and integers past
        # Python's digit limit; RecursionError, arrays nested thousands deep.
        return reject(RejectionReason.INVALID_JSON, "", f"not valid JSON: {type(error).__name__}")
    if not isinstance(document, dict):
        return reject(RejectionReason.INVALID_JSON, "", "a record must be a JSON object")
    return document


def strip_personal_data(document: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    if PERSONAL_DATA_FIELDS.isdisjoint(document):  # the usual case, on the hot path
        return dict(document), ()
    stripped = tuple(sorted(key for key in document if key in PERSONAL_DATA_FIELDS))
    kept = {key: value for key, value in document.items() if key not in PERSONAL_DATA_FIELDS}
    return kept, stripped


def looks_personal(customer_ref: str) -> str | None:
    """Why a customer_ref looks like contact details rather than a pseudonym, if it does."""
    if _EMAIL.fullmatch(customer_ref):
        return "looks like an email address; send the CRM's pseudonymous reference"
    if _PHONE.fullmatch(customer_ref) and len(_DIGIT.findall(customer_ref)) >= 10:
        return "looks like a phone number; send the CRM's pseudonymous reference"
    return None


def _field_errors(error: ValidationError, record_type: object) -> tuple[FieldError, ...]:
    errors = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        if location and location[0] == record_type:
            location = location[1:]  # the union's tag, not a field
        if not location and item["type"].startswith("union_tag"):
            location = ["record_type"]
        errors.append(FieldError(".".join(location), item["msg"]))
    return tuple(errors)


def read_raw_record(
    raw: bytes,
    vocabulary: Vocabulary,
    *,
    recorded_at: datetime,
    timestamps: TimestampBounds = TimestampBounds(),
) -> Accepted | Rejected:
    checked = check_raw_record(raw, vocabulary, recorded_at=recorded_at, timestamps=timestamps)
    return checked if isinstance(checked, Rejected) else accept(checked)


def read_record(
    document: Mapping[str, Any],
    vocabulary: Vocabulary,
    *,
    authenticated_source: str | None,
    recorded_at: datetime,
    timestamps: TimestampBounds = TimestampBounds(),
) -> Accepted | Rejected:
    """Validate one decoded record and build its canonical event."""
    checked = check_record(
        document,
        vocabulary,
        authenticated_source=authenticated_source,
        recorded_at=recorded_at,
        timestamps=timestamps,
    )
    return checked if isinstance(checked, Rejected) else accept(checked)


def check_raw_record(
    raw: bytes,
    vocabulary: Vocabulary,
    *,
    recorded_at: datetime,
    timestamps: TimestampBounds = TimestampBounds(),
) -> Checked | Rejected:
    """`check_record` of a raw-topic record's bytes, validated straight from the JSON.

    pydantic's JSON parser is stricter than `json.loads` (no lone surrogates, no
    UTF-16, no byte order mark), and extra fields are refused, so a record it
    takes in one pass would have been read alike the long way. Whatever it refuses
    (personal data to strip, a bad record) goes the long way, which gives every
    refusal its reason and fields.
    """
    try:
        record = _RECORD_VALIDATOR.validate_json(raw)
    except ValidationError:
        document = decode_json(raw)
        if isinstance(document, Rejected):
            return document
        return check_record(
            document,
            vocabulary,
            authenticated_source=None,
            recorded_at=recorded_at,
            timestamps=timestamps,
        )
    return _check(record, (), vocabulary, None, recorded_at, timestamps)


def check_record(
    document: Mapping[str, Any],
    vocabulary: Vocabulary,
    *,
    authenticated_source: str | None,
    recorded_at: datetime,
    timestamps: TimestampBounds = TimestampBounds(),
) -> Checked | Rejected:
    """Validate one decoded record against the schema and intake's rules."""
    kept, stripped = strip_personal_data(document)
    try:
        record = _RECORD_ADAPTER.validate_python(kept)
    except ValidationError as error:
        return Rejected(
            RejectionReason.INVALID_RECORD, _field_errors(error, kept.get("record_type"))
        )
    return _check(record, stripped, vocabulary, authenticated_source, recorded_at, timestamps)


def _check(
    record: RawRecord,
    stripped: tuple[str, ...],
    vocabulary: Vocabulary,
    authenticated_source: str | None,
    recorded_at: datetime,
    timestamps: TimestampBounds,
) -> Checked | Rejected:
    """Intake's rules on a validated record."""
    if implausible := _implausible_time(record.occurred_at, recorded_at, timestamps):
        return implausible
    source = _source_of(record, authenticated_source)
    if isinstance(source, Rejected):
        return source
    customer_ref = getattr(record, "customer_ref", None)
    if customer_ref is not None and not _PLAIN_CUSTOMER_REF.fullmatch(customer_ref):
        if why := looks_personal(customer_ref):
            return reject(RejectionReason.PERSONAL_DATA, "customer_ref", why)
        if not _CUSTOMER_REF.fullmatch(customer_ref):
            return reject(
                RejectionReason.INVALID_RECORD,
                "customer_ref",
                "use letters, digits and _.:- only, at most 64 characters",
            )
    normalised = _normalise_vocabulary(record, vocabulary)
    if isinstance(normalised, Rejected):
        return normalised
    if (
        getattr(record, "wait_seconds", None) is not None
        and normalised.get("channel", "phone") != "phone"
    ):
        return reject(
            RejectionReason.INVALID_RECORD,
            "wait_seconds",
            "only calls (channel phone) have a queue wait",
        )
    return Checked(record, source, stripped, normalised, recorded_at)


def accept(checked: Checked) -> Accepted:
    """A checked record's canonical event, serialised once and fingerprinted from those bytes."""
    record, source = checked.record, checked.source
    shape = event_json.shape_of(record)
    event_id = event_json.event_id_text(source, record.idempotency_key)
    value = event_json.write(
        record,
        shape,
        event_id=event_id,
        source=source,
        recorded_at=checked.recorded_at,
        vocabulary_values=checked.vocabulary_values,
    )
    return Accepted(
        shape.event_class,
        event_id,
        record.contact_id,
        source,
        record.idempotency_key,
        fingerprint_of_json(value),
        checked.stripped_fields,
        value,
    )


def _implausible_time(
    occurred_at: datetime, recorded_at: datetime, bounds: TimestampBounds
) -> Rejected | None:
    latest = recorded_at + bounds.max_clock_skew
    if occurred_at > latest:
        return reject(
            RejectionReason.OCCURRED_IN_FUTURE,
            "occurred_at",
            f"{occurred_at.isoformat()} is after {latest.isoformat()} "
            f"(now plus {bounds.max_clock_skew.total_seconds():.0f} s of clock skew)",
        )
    if occurred_at < bounds.earliest:
        return reject(
            RejectionReason.OCCURRED_TOO_EARLY,
            "occurred_at",
            f"{occurred_at.isoformat()} is before {bounds.earliest.isoformat()}, "
            "the earliest date accepted",
        )
    return None


def _source_of(record: RawRecord, authenticated_source: str | None) -> str | Rejected:
    if authenticated_source is None:
        if record.source is None:
            return reject(RejectionReason.SOURCE_MISSING, "source", "required on the raw topic")
        return record.source
    if record.source not in (None, authenticated_source):
        return reject(
            RejectionReason.SOURCE_MISMATCH,
            "source",
            f"{record.source!r} does not match the API key's system {authenticated_source!r}",
        )
    return authenticated_source


# Spellings already folded, and to what: a publisher sends the same few again and again
# (`Phone`, `Face-to-face`). Only spellings of known values are kept, and at most
# `_FOLDED_MAX` of them, so unknown values cannot grow it.
_FOLDED: dict[str, str] = {}
_FOLDED_MAX = 4096


def _normalise_vocabulary(record: RawRecord, vocabulary: Vocabulary) -> dict[str, str] | Rejected:
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, allowed in (
        ("channel", vocabulary.channels),
        ("service_area", vocabulary.service_areas),
        ("kind", vocabulary.kinds),
    ):
        raw = getattr(record, name, None)
        if raw is None:
            continue
        if raw in allowed:  # most values arrive canonical
            values[name] = raw
            continue
        folded = _FOLDED.get(raw) or fold(raw)
        if folded in allowed:
            values[name] = folded
            if len(_FOLDED) < _FOLDED_MAX:
                _FOLDED[raw] = folded
        else:
            choices = ", ".join(sorted(allowed))
            errors.append(FieldError(name, f"unknown value {raw!r}; expected one of: {choices}"))
    if errors:
        return Rejected(RejectionReason.UNKNOWN_VOCABULARY, tuple(errors))
    return values
