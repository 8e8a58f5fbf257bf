"""Intake's rules: a raw contact record becomes a canonical event, or a reasoned rejection."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.domain import (
    _CUSTOMER_REF,
    _PLAIN_CUSTOMER_REF,
    PERSONAL_DATA_FIELDS,
    Accepted,
    FieldError,
    Rejected,
    RejectionReason,
    TimestampBounds,
    Vocabulary,
    decode_json,
    fold,
    looks_personal,
    read_raw_record,
    read_record,
    strip_personal_data,
)
from services.intake.identity import (
    EVENT_ID_NAMESPACE,
    classify,
    event_id_for,
    fingerprint,
    fingerprint_of_json,
    name_uuid,
    name_uuid_text,
)
from services.intake.settings import IntakeSettings
from shared.events.catalogue import parse_event
from shared.events.contacts import (
    CallAbandoned,
    CallAbandonedPayload,
    ContactReceived,
    ContactReceivedPayload,
    ContactResolved,
    ContactResolvedPayload,
    ContactTransferred,
    ContactTransferredPayload,
    MysteryShopAssessed,
    MysteryShopAssessedPayload,
)
from shared.events.envelope import Event
from shared.events.vocabulary import Channel, ContactKind

SERVICE_AREAS = frozenset(
    {
        "planning",
        "enforcement",
        "waste",
        "council_tax",
        "benefits",
        "housing",
        "homelessness",
        "land_charges",
        "licensing",
        "highways",
        "environmental_health",
        "adult_social_care",
        "childrens_social_care",
        "corporate",
        "other",
    }
)
VOCABULARY = Vocabulary(SERVICE_AREAS)
RECORDED_AT = datetime(2026, 1, 12, 9, 31, tzinfo=UTC)
LATER = RECORDED_AT + timedelta(hours=3)
SUMMER = datetime(2026, 6, 2, tzinfo=UTC)  # recorded after the British Summer Time examples

EVENT_TYPES = {
    "contact_received": ContactReceived,
    "contact_transferred": ContactTransferred,
    "contact_resolved": ContactResolved,
    "call_abandoned": CallAbandoned,
    "mystery_shop_assessed": MysteryShopAssessed,
}


def record(record_type: str = "contact_received", **changes: Any) -> dict[str, Any]:
    """A valid raw record of the given type, as a publisher would send it."""
    common: dict[str, Any] = {
        "record_type": record_type,
        "idempotency_key": "crm-rec-0001",
        "source": "crm",
        "contact_id": "contact-0042",
        "occurred_at": "2026-01-12T09:30:00+00:00",
    }
    specific: dict[str, dict[str, Any]] = {
        "contact_received": {
            "channel": "phone",
            "service_area": "planning",
            "kind": "enquiry",
            "customer_ref": "CUST-000123",
            "answered_by_team": "reception",
            "transfers": 1,
            "resolved_at_first_contact": True,
            "wait_seconds": 42.5,
        },
        "contact_transferred": {
            "from_team": "reception",
            "to_team": "planning",
            "service_area": "planning",
        },
        "contact_resolved": {
            "channel": "web",
            "service_area": "waste",
            "kind": "service_request",
            "customer_ref": "CUST-000123",
            "resolved_by_team": "waste",
        },
        "call_abandoned": {"service_area": "council_tax", "wait_seconds": 312},
        "mystery_shop_assessed": {
            "channel": "email",
            "service_area": "benefits",
            "scores": {"greeting": 80, "accuracy": 100},
        },
    }
    document = {**common, **specific[record_type]}
    document.update(changes)
    return document


def read(
    document: dict[str, Any],
    *,
    authenticated_source: str | None = None,
    recorded_at: datetime = RECORDED_AT,
) -> Accepted | Rejected:
    return read_record(
        document, VOCABULARY, authenticated_source=authenticated_source, recorded_at=recorded_at
    )


def accept(document: dict[str, Any], **options: Any) -> Accepted:
    outcome = read(document, **options)
    assert isinstance(outcome, Accepted), outcome
    return outcome


def refuse(document: dict[str, Any], **options: Any) -> Rejected:
    outcome = read(document, **options)
    assert isinstance(outcome, Rejected), outcome
    return outcome


def fields_of(rejected: Rejected) -> list[str]:
    return [error.field for error in rejected.errors]


# -- each record type becomes its event ---------------------------------------------------


@pytest.mark.parametrize(("record_type", "event_class"), EVENT_TYPES.items())
def test_each_record_type_becomes_its_canonical_event(
    record_type: str, event_class: type[Event]
) -> None:
    accepted = accept(record(record_type))

    assert type(accepted.event) is event_class
    assert accepted.event.contact_id == "contact-0042"
    assert accepted.event.source == "crm"
    assert accepted.event.occurred_at == datetime(2026, 1, 12, 9, 30, tzinfo=UTC)
    assert accepted.event.recorded_at == RECORDED_AT
    assert accepted.event.event_id == event_id_for("crm", "crm-rec-0001")
    assert accepted.source == "crm"
    assert accepted.idempotency_key == "crm-rec-0001"
    assert accepted.stripped_fields == ()


def test_a_contact_received_record_carries_every_field_into_the_payload() -> None:
    event = accept(record("contact_received")).event

    assert isinstance(event, ContactReceived)
    assert event.payload == ContactReceivedPayload(
        channel=Channel.PHONE,
        service_area="planning",
        kind=ContactKind.ENQUIRY,
        customer_ref="CUST-000123",
        answered_by_team="reception",
        transfers=1,
        resolved_at_first_contact=True,
        wait_seconds=42.5,
    )


def test_a_contact_received_record_gets_the_payload_defaults() -> None:
    minimal = record("contact_received")
    for optional in (
        "customer_ref",
        "answered_by_team",
        "transfers",
        "resolved_at_first_contact",
        "wait_seconds",
    ):
        del minimal[optional]

    event = accept(minimal).event

    assert isinstance(event, ContactReceived)
    assert event.payload == ContactReceivedPayload(
        channel=Channel.PHONE, service_area="planning", kind=ContactKind.ENQUIRY
    )


def test_a_contact_transferred_record_carries_both_teams() -> None:
    event = accept(record("contact_transferred")).event

    assert isinstance(event, ContactTransferred)
    assert event.payload == ContactTransferredPayload(
        from_team="reception", to_team="planning", service_area="planning"
    )


def test_a_contact_resolved_record_carries_the_case_facts() -> None:
    event = accept(record("contact_resolved")).event

    assert isinstance(event, ContactResolved)
    assert event.payload == ContactResolvedPayload(
        channel=Channel.WEB,
        service_area="waste",
        kind=ContactKind.SERVICE_REQUEST,
        customer_ref="CUST-000123",
        resolved_by_team="waste",
    )


def test_a_call_abandoned_record_carries_the_wait() -> None:
    event = accept(record("call_abandoned")).event

    assert isinstance(event, CallAbandoned)
    assert event.payload == CallAbandonedPayload(service_area="council_tax", wait_seconds=312.0)


def test_a_mystery_shop_record_carries_its_scores() -> None:
    event = accept(record("mystery_shop_assessed")).event

    assert isinstance(event, MysteryShopAssessed)
    assert event.payload == MysteryShopAssessedPayload(
        channel=Channel.EMAIL, service_area="benefits", scores={"greeting": 80, "accuracy": 100}
    )


def test_an_occurred_at_with_an_offset_becomes_utc() -> None:
    event = accept(record(occurred_at="2026-06-01T10:30:00+01:00"), recorded_at=SUMMER).event

    assert event.occurred_at == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_records_about_one_contact_share_a_correlation_id() -> None:
    received = accept(record("contact_received", idempotency_key="a")).event
    resolved = accept(record("contact_resolved", idempotency_key="b")).event
    other = accept(record("contact_received", idempotency_key="c", contact_id="contact-9")).event

    assert received.correlation_id is not None
    assert received.correlation_id == resolved.correlation_id
    assert other.correlation_id != received.correlation_id


def test_a_publisher_correlation_id_groups_records_across_contacts() -> None:
    first = accept(record(idempotency_key="a", contact_id="c-1", correlation_id="case-7")).event
    second = accept(record(idempotency_key="b", contact_id="c-2", correlation_id="case-7")).event

    assert first.correlation_id == second.correlation_id


# -- vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Face-to-face", "face_to_face"),
        (" Planning ", "planning"),
        ("SERVICE REQUEST", "service_request"),
        ("council - tax", "council_tax"),
        ("land_charges", "land_charges"),
    ],
)
def test_fold_tolerates_case_spaces_and_hyphens(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_vocabulary_values_are_folded_before_they_are_checked() -> None:
    event = accept(
        record(
            "contact_resolved",
            channel="Face-to-face",
            service_area=" Planning ",
            kind="Service Request",
        )
    ).event

    assert isinstance(event, ContactResolved)
    assert event.payload.channel is Channel.FACE_TO_FACE
    assert event.payload.service_area == "planning"
    assert event.payload.kind is ContactKind.SERVICE_REQUEST


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel", "carrier_pigeon"),
        ("service_area", "parking"),
        ("kind", "rant"),
    ],
)
def test_an_unknown_vocabulary_value_is_rejected_naming_the_field(field: str, value: str) -> None:
    rejected = refuse(record("contact_received", **{field: value}))

    assert rejected.reason is RejectionReason.UNKNOWN_VOCABULARY
    assert fields_of(rejected) == [field]
    assert value in rejected.errors[0].message


def test_a_service_area_outside_the_council_vocabulary_is_rejected() -> None:
    narrow = Vocabulary(frozenset({"waste"}))

    outcome = read_record(
        record("contact_received"), narrow, authenticated_source=None, recorded_at=RECORDED_AT
    )

    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectionReason.UNKNOWN_VOCABULARY
    assert fields_of(outcome) == ["service_area"]
    assert "waste" in outcome.errors[0].message


def test_every_unknown_vocabulary_value_is_named_at_once() -> None:
    rejected = refuse(record("contact_received", channel="fax", kind="rant"))

    assert rejected.reason is RejectionReason.UNKNOWN_VOCABULARY
    assert fields_of(rejected) == ["channel", "kind"]


def test_an_unknown_service_area_on_a_transfer_is_rejected() -> None:
    rejected = refuse(record("contact_transferred", service_area="parking"))

    assert rejected.reason is RejectionReason.UNKNOWN_VOCABULARY
    assert fields_of(rejected) == ["service_area"]


# -- shape of the record ------------------------------------------------------------------


def test_a_naive_occurred_at_is_rejected_naming_occurred_at() -> None:
    rejected = refuse(record(occurred_at="2026-01-12T09:30:00"))

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["occurred_at"]


def test_an_unknown_extra_field_is_rejected_naming_it() -> None:
    rejected = refuse(record(favourite_colour="blue"))

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["favourite_colour"]


@pytest.mark.parametrize("record_type", ["contact_exploded", "ContactReceived", 7, None, ["x"]])
def test_an_unknown_record_type_names_the_record_type_field(record_type: object) -> None:
    rejected = refuse({**record(), "record_type": record_type})

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["record_type"]


def test_a_missing_record_type_names_the_record_type_field() -> None:
    document = record()
    del document["record_type"]

    rejected = refuse(document)

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["record_type"]


def test_missing_fields_are_each_named() -> None:
    document = record("contact_transferred")
    del document["contact_id"]
    del document["to_team"]

    rejected = refuse(document)

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert sorted(fields_of(rejected)) == ["contact_id", "to_team"]


def test_a_nested_field_error_is_named_by_its_dotted_path() -> None:
    rejected = refuse(record("mystery_shop_assessed", scores={"greeting": 101}))

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["scores.greeting"]


def test_a_rejection_describes_its_reason_and_fields() -> None:
    rejected = refuse(record(channel="fax"))

    assert rejected.describe().startswith("unknown_vocabulary: channel: unknown value 'fax'")


def test_a_wait_on_a_contact_that_is_not_a_call_is_rejected() -> None:
    rejected = refuse(record("contact_received", channel="web", wait_seconds=10))

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["wait_seconds"]


def test_a_wait_of_zero_on_a_web_contact_is_still_rejected() -> None:
    rejected = refuse(record("contact_received", channel="web", wait_seconds=0))

    assert fields_of(rejected) == ["wait_seconds"]


def test_a_web_contact_without_a_wait_is_accepted() -> None:
    event = accept(record("contact_received", channel="web", wait_seconds=None)).event

    assert isinstance(event, ContactReceived)
    assert event.payload.wait_seconds is None


# -- personal data ------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(PERSONAL_DATA_FIELDS))
def test_a_personal_data_field_is_stripped_and_listed(field: str) -> None:
    secret = "Jane Smith 07700 900123 jane@example.org"

    accepted = accept(record(**{field: secret}))

    assert accepted.stripped_fields == (field,)
    assert field not in json.loads(accepted.event.to_bytes())
    assert b"Jane" not in accepted.event.to_bytes()


def test_several_personal_data_fields_are_all_stripped_and_listed_in_order() -> None:
    personal = {
        "postcode": "SW1A 1AA",
        "email": "jane@example.org",
        "name": "Jane Smith",
        "phone": "07700 900123",
        "address": "1 High Street",
    }

    accepted = accept(record("contact_resolved", **personal))

    assert accepted.stripped_fields == ("address", "email", "name", "phone", "postcode")
    wire = accepted.event.to_bytes().decode()
    for value in personal.values():
        assert value not in wire


def test_personal_data_does_not_change_the_fingerprint() -> None:
    plain = accept(record())
    with_email = accept(record(email="jane@example.org"))

    assert with_email.fingerprint == plain.fingerprint
    assert with_email.event == plain.event


def test_strip_personal_data_leaves_the_other_fields_alone() -> None:
    kept, stripped = strip_personal_data({"email": "x@y.z", "contact_id": "c-1", "mobile": "1"})

    assert kept == {"contact_id": "c-1"}
    assert stripped == ("email", "mobile")


@pytest.mark.parametrize("customer_ref", ["07700900123", "07700-900-123", "02079460000"])
def test_a_customer_ref_that_is_a_uk_phone_number_is_rejected_as_personal_data(
    customer_ref: str,
) -> None:
    rejected = refuse(record(customer_ref=customer_ref))

    assert rejected.reason is RejectionReason.PERSONAL_DATA
    assert fields_of(rejected) == ["customer_ref"]
    assert "phone number" in rejected.errors[0].message


@pytest.mark.parametrize(
    "customer_ref", ["jane.smith@example.org", "+447700900123", "07700 900123", "(020) 7946 0000"]
)
def test_a_customer_ref_that_is_contact_details_is_rejected_as_personal_data(
    customer_ref: str,
) -> None:
    rejected = refuse(record(customer_ref=customer_ref))

    assert rejected.reason is RejectionReason.PERSONAL_DATA
    assert fields_of(rejected) == ["customer_ref"]


def test_a_customer_ref_that_is_an_email_address_is_never_accepted() -> None:
    rejected = refuse(record(customer_ref="jane.smith@example.org"))

    assert fields_of(rejected) == ["customer_ref"]


@pytest.mark.parametrize("customer_ref", ["CUST-000123", "crm:12345", "A1234567"])
def test_a_pseudonymous_customer_ref_is_accepted(customer_ref: str) -> None:
    event = accept(record(customer_ref=customer_ref)).event

    assert isinstance(event, ContactReceived)
    assert event.payload.customer_ref == customer_ref


@settings(max_examples=2000)
@given(
    customer_ref=st.text(alphabet="aZ09_.:-@+() \n", max_size=70)
    | st.from_regex(r"[0-9][0-9.-]{8,14}[A-Za-z_:]?", fullmatch=True)
    | st.text(max_size=70)
)
def test_a_customer_ref_taken_in_one_test_passes_all_three(customer_ref: str) -> None:
    """`_check` takes a reference its one pattern matches without testing it for an email
    address, a phone number and the reference's form: the three must all pass it."""
    if _PLAIN_CUSTOMER_REF.fullmatch(customer_ref):
        assert looks_personal(customer_ref) is None
        assert _CUSTOMER_REF.fullmatch(customer_ref)


@pytest.mark.parametrize("customer_ref", ["CUST-000123", "crm:12345", "A1234567", "x_1"])
def test_the_usual_customer_refs_are_taken_in_one_test(customer_ref: str) -> None:
    assert _PLAIN_CUSTOMER_REF.fullmatch(customer_ref)


@pytest.mark.parametrize("customer_ref", ["07700900123", "0.7-7", "CUST 1", "a@b.co", ""])
def test_refs_that_need_the_three_tests_are_not_taken_in_one(customer_ref: str) -> None:
    assert not _PLAIN_CUSTOMER_REF.fullmatch(customer_ref)


# -- source -------------------------------------------------------------------------------


def test_a_record_without_a_source_is_rejected_when_nobody_is_authenticated() -> None:
    document = record()
    del document["source"]

    rejected = refuse(document)

    assert rejected.reason is RejectionReason.SOURCE_MISSING
    assert fields_of(rejected) == ["source"]


def test_a_record_whose_source_differs_from_the_authenticated_one_is_rejected() -> None:
    rejected = refuse(record(source="crm"), authenticated_source="telephony")

    assert rejected.reason is RejectionReason.SOURCE_MISMATCH
    assert fields_of(rejected) == ["source"]


def test_the_source_is_taken_from_authentication_when_the_record_has_none() -> None:
    document = record()
    del document["source"]

    accepted = accept(document, authenticated_source="telephony")

    assert accepted.source == "telephony"
    assert accepted.event.source == "telephony"
    assert accepted.event.event_id == event_id_for("telephony", "crm-rec-0001")


def test_a_record_naming_the_authenticated_source_is_accepted() -> None:
    accepted = accept(record(source="telephony"), authenticated_source="telephony")

    assert accepted.source == "telephony"


# -- identity: event ids and fingerprints -------------------------------------------------


def test_the_same_record_read_twice_gives_the_same_event_id_and_fingerprint() -> None:
    first = accept(record(), recorded_at=RECORDED_AT)
    again = accept(record(), recorded_at=LATER)

    assert again.event.event_id == first.event.event_id
    assert again.fingerprint == first.fingerprint
    assert again.event.recorded_at != first.event.recorded_at


def test_the_same_instant_written_with_another_offset_has_the_same_fingerprint() -> None:
    utc = accept(record(occurred_at="2026-06-01T09:30:00+00:00"), recorded_at=SUMMER)
    bst = accept(record(occurred_at="2026-06-01T10:30:00+01:00"), recorded_at=SUMMER)

    assert bst.fingerprint == utc.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"transfers": 2},
        {"kind": "service_request"},
        {"occurred_at": "2026-01-12T09:31:00+00:00"},
        {"contact_id": "contact-0043"},
        {"customer_ref": None},
    ],
    ids=lambda change: next(iter(change)),
)
def test_different_content_under_one_key_gives_a_different_fingerprint(
    change: dict[str, Any],
) -> None:
    original = accept(record())
    changed = accept(record(**change))

    assert changed.fingerprint != original.fingerprint
    assert changed.event.event_id == original.event.event_id


def test_one_key_from_two_sources_gives_two_event_ids() -> None:
    from_crm = accept(record(source="crm"))
    from_telephony = accept(record(source="telephony"))

    assert from_crm.event.event_id != from_telephony.event.event_id


def test_the_fingerprint_ignores_recorded_at_only() -> None:
    accepted = accept(record())
    moved = accepted.event.model_copy(update={"recorded_at": LATER})
    changed = accepted.event.model_copy(update={"source": "other"})

    assert fingerprint(moved) == accepted.fingerprint
    assert fingerprint(changed) != accepted.fingerprint


def test_classify_sorts_a_batch_into_new_duplicate_and_conflicting_records() -> None:
    a = accept(record(idempotency_key="a"))
    b = accept(record(idempotency_key="b"))
    a_again = accept(record(idempotency_key="a"), recorded_at=LATER)
    a_from_elsewhere = accept(record(idempotency_key="a", source="telephony"))
    b_changed = accept(record(idempotency_key="b", transfers=3))

    classified = classify([a, b, a_again, a_from_elsewhere, b_changed], stored={})

    assert classified.new == [0, 1, 3]
    assert classified.duplicates == [2]
    assert classified.conflicts == [4]


def test_classify_binds_a_key_to_the_content_stored_before_the_batch() -> None:
    stored_first = accept(record(idempotency_key="a"))
    changed = accept(record(idempotency_key="a", transfers=3))
    same = accept(record(idempotency_key="a"), recorded_at=LATER)

    classified = classify(
        [changed, same], stored={(stored_first.source, "a"): stored_first.fingerprint}
    )

    assert classified.new == []
    assert classified.duplicates == [1]
    assert classified.conflicts == [0]


def test_classify_of_nothing_is_nothing() -> None:
    classified = classify([], stored={})

    assert (classified.new, classified.duplicates, classified.conflicts) == ([], [], [])


# -- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'"a string"',
        b"42",
        b"null",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"transfers": ' + b"9" * 5_000 + b"}",
        b'{"a": "\x00"}',
    ],
    ids=lambda raw: repr(raw[:20]),
)
def test_decode_json_rejects_what_is_not_a_json_object(raw: bytes) -> None:
    outcome = decode_json(raw)

    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectionReason.INVALID_JSON
    assert fields_of(outcome) == [""]


# -- Plausible timestamps ---------------------------------------------------------------


def test_a_contact_more_than_the_clock_skew_in_the_future_is_refused() -> None:
    """Issue 9, item 3: occurred_at more than CIVICPULSE_MAX_CLOCK_SKEW_SECONDS (900)
    in the future is refused with reason occurred_in_future (a contact dated 2099
    was accepted and counted)."""
    just_past_the_skew = (RECORDED_AT + timedelta(seconds=901)).isoformat()
    for occurred_at in ["2099-01-12T09:30:00+00:00", just_past_the_skew]:
        rejected = refuse(record(occurred_at=occurred_at))

        assert rejected.reason is RejectionReason.OCCURRED_IN_FUTURE
        assert fields_of(rejected) == ["occurred_at"]


def test_a_contact_within_the_clock_skew_is_accepted() -> None:
    at_limit = RECORDED_AT + timedelta(seconds=900)

    event = accept(record(occurred_at=at_limit.isoformat())).event

    assert event.occurred_at == at_limit


def test_a_contact_before_the_earliest_date_is_refused() -> None:
    """Issue 9, item 3: before CIVICPULSE_EARLIEST_OCCURRED_AT (2000-01-01) the
    reason is occurred_too_early."""
    for occurred_at in ["1999-12-31T23:59:59+00:00", "2000-01-01T00:30:00+01:00"]:
        rejected = refuse(record(occurred_at=occurred_at))

        assert rejected.reason is RejectionReason.OCCURRED_TOO_EARLY
        assert fields_of(rejected) == ["occurred_at"]


def test_a_backfill_of_real_history_is_accepted() -> None:
    """Issue 9, item 3: backfills of real history stay possible."""
    for occurred_at in ["2000-01-01T00:00:00+00:00", "2003-04-01T09:00:00+01:00"]:
        assert isinstance(read(record(occurred_at=occurred_at)), Accepted)


def test_the_bounds_are_configurable() -> None:
    bounds = TimestampBounds(max_clock_skew=timedelta(0), earliest=datetime(2020, 1, 1, tzinfo=UTC))
    one_second_ahead = (RECORDED_AT + timedelta(seconds=1)).isoformat()

    future = read_record(
        record(occurred_at=one_second_ahead),
        VOCABULARY,
        authenticated_source=None,
        recorded_at=RECORDED_AT,
        timestamps=bounds,
    )
    early = read_record(
        record(occurred_at="2019-12-31T12:00:00+00:00"),
        VOCABULARY,
        authenticated_source=None,
        recorded_at=RECORDED_AT,
        timestamps=bounds,
    )

    assert isinstance(future, Rejected)
    assert future.reason is RejectionReason.OCCURRED_IN_FUTURE
    assert isinstance(early, Rejected)
    assert early.reason is RejectionReason.OCCURRED_TOO_EARLY


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
@pytest.mark.parametrize("record_type", sorted(EVENT_TYPES))
def test_an_instant_outside_the_utc_range_is_refused_not_raised(
    occurred_at: str, record_type: str
) -> None:
    """Valid ISO 8601 instants whose conversion to UTC overflows are refused, naming
    the field, rather than raising OverflowError."""
    rejected = refuse(record(record_type, occurred_at=occurred_at))

    assert rejected.reason is RejectionReason.INVALID_RECORD
    assert fields_of(rejected) == ["occurred_at"]


def test_decode_json_returns_the_object() -> None:
    assert decode_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


def test_a_decoded_record_is_accepted() -> None:
    document = decode_json(json.dumps(record()).encode())

    assert isinstance(document, dict)
    assert isinstance(read(document), Accepted)


def test_a_field_error_without_a_field_describes_just_the_message() -> None:
    rejected = Rejected(RejectionReason.INVALID_JSON, (FieldError("", "not valid JSON"),))

    assert rejected.describe() == "invalid_json: not valid JSON"


# -- properties ---------------------------------------------------------------------------

RECORD_FIELDS = sorted(
    {
        "record_type",
        "idempotency_key",
        "source",
        "contact_id",
        "occurred_at",
        "correlation_id",
        "channel",
        "service_area",
        "kind",
        "customer_ref",
        "answered_by_team",
        "transfers",
        "resolved_at_first_contact",
        "wait_seconds",
        "from_team",
        "to_team",
        "resolved_by_team",
        "scores",
        *PERSONAL_DATA_FIELDS,
    }
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from([*EVENT_TYPES, *SERVICE_AREAS, *Channel, "2026-01-12T09:30:00+00:00"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
field_names = st.sampled_from(RECORD_FIELDS) | st.text(max_size=15)
arbitrary_documents = st.dictionaries(field_names, json_values, max_size=12)


@st.composite
def damaged_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with some fields removed and others replaced by anything."""
    document = record(draw(st.sampled_from(sorted(EVENT_TYPES))))
    for name in draw(st.lists(st.sampled_from(sorted(document)), max_size=3)):
        document.pop(name, None)
    document.update(draw(st.dictionaries(field_names, json_values, max_size=3)))
    return document


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=arbitrary_documents | damaged_records(),
    authenticated_source=st.sampled_from([None, "crm", "telephony"]),
)
def test_read_record_never_raises_whatever_it_is_given(
    document: dict[str, Any], authenticated_source: str | None
) -> None:
    outcome = read(document, authenticated_source=authenticated_source)

    assert isinstance(outcome, Accepted | Rejected)
    if isinstance(outcome, Rejected):
        assert outcome.errors
        assert outcome.reason in RejectionReason
    else:
        wire = json.loads(outcome.event.to_bytes())
        assert not PERSONAL_DATA_FIELDS & (set(wire) | set(wire["payload"]))


def spelled(value: str) -> st.SearchStrategy[str]:
    """The ways a publisher might spell a vocabulary value that still fold to it."""
    words = value.split("_")
    return st.sampled_from(
        [
            value,
            value.upper(),
            " ".join(words).title(),
            "-".join(words).capitalize(),
            f"  {value}  ",
        ]
    )


identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,40}", fullmatch=True)
customer_refs = st.from_regex(r"CUST-[0-9]{1,8}", fullmatch=True)
teams = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
slugs = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
instants = st.datetimes(
    # Hypothesis takes naive bounds; these keep every offset inside the plausible
    # range: from the earliest accepted day to intake's clock (RECORDED_AT).
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2026, 1, 12),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5))]),
)
waits = st.floats(min_value=0, max_value=86_400, allow_nan=False)


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    record_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    area = draw(st.sampled_from(sorted(SERVICE_AREAS)).flatmap(spelled))
    document: dict[str, Any] = {
        "record_type": record_type,
        "idempotency_key": draw(identifiers),
        "source": draw(st.sampled_from(["crm", "telephony", "web-forms"])),
        "contact_id": draw(identifiers),
        "occurred_at": draw(instants).isoformat(),
        "service_area": area,
    }
    if draw(st.booleans()):
        document["correlation_id"] = draw(identifiers)
    if record_type in {"contact_received", "contact_resolved", "mystery_shop_assessed"}:
        channel = draw(st.sampled_from(sorted(Channel)))
        document["channel"] = draw(spelled(channel))
    if record_type in {"contact_received", "contact_resolved"}:
        document["kind"] = draw(st.sampled_from(sorted(ContactKind)).flatmap(spelled))
        document["customer_ref"] = draw(st.none() | customer_refs)
    if record_type == "contact_received":
        document["transfers"] = draw(st.integers(0, 50))
        document["resolved_at_first_contact"] = draw(st.booleans())
        document["answered_by_team"] = draw(st.none() | teams)
        if fold(document["channel"]) == "phone":
            document["wait_seconds"] = draw(st.none() | waits)
    if record_type == "contact_transferred":
        document["from_team"] = draw(teams)
        document["to_team"] = draw(teams)
    if record_type == "contact_resolved":
        document["resolved_by_team"] = draw(st.none() | teams)
    if record_type == "call_abandoned":
        document["wait_seconds"] = draw(waits)
        document["customer_ref"] = draw(st.none() | customer_refs)
    if record_type == "mystery_shop_assessed":
        document["scores"] = draw(
            st.dictionaries(slugs, st.integers(0, 100), min_size=1, max_size=8)
        )
    personal = draw(st.lists(st.sampled_from(sorted(PERSONAL_DATA_FIELDS)), unique=True))
    document.update(dict.fromkeys(personal, "Jane Smith"))
    return document


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(document=valid_records())
def test_a_valid_record_is_accepted_and_its_event_parses_back(document: dict[str, Any]) -> None:
    accepted = accept(document)

    parsed = parse_event(accepted.event.to_bytes())

    assert parsed == accepted.event
    assert type(parsed) is EVENT_TYPES[document["record_type"]]
    assert accepted.stripped_fields == tuple(sorted(PERSONAL_DATA_FIELDS.intersection(document)))
    assert b"Jane Smith" not in accepted.event.to_bytes()
    assert accepted.event.event_id == event_id_for(document["source"], accepted.idempotency_key)


def read_the_long_way(raw: bytes) -> Accepted | Rejected:
    """What intake did with a raw-topic record before the one-pass fast path."""
    document = decode_json(raw)
    return document if isinstance(document, Rejected) else read(document)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=valid_records() | arbitrary_documents | damaged_records(),
    spacing=st.sampled_from([None, 2]),
)
def test_raw_bytes_read_in_one_pass_as_the_long_way_reads_them(
    document: dict[str, Any], spacing: int | None
) -> None:
    """The fast path (pydantic's JSON parser, then the same rules) may change the
    cost of a record, never its outcome: the same event, fingerprint and bytes,
    or the same reason and fields."""
    raw = json.dumps(document, indent=spacing).encode()

    outcome = read_raw_record(raw, VOCABULARY, recorded_at=RECORDED_AT)

    assert outcome == read_the_long_way(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=200)
    | st.sampled_from(
        [
            json.dumps(record()).encode().replace(b'"contact-0042"', b'"\\ud800"'),
            json.dumps(record()).encode().replace(b'"contact-0042"', b'"\xed\xa0\x80"'),
            json.dumps(record()).encode().replace(b'"phone"', b'"phone\t"'),
            json.dumps(record()).encode().replace(b'"crm"', b'"\xff"'),
            json.dumps(record()).encode().replace(b"42.5", b"NaN"),
            json.dumps(record()).encode().replace(b"42.5", b"1e999"),
            json.dumps(record()).encode().replace(b"1,", b"1" + b"0" * 5000 + b","),
            json.dumps(record()).encode().replace(b"{", b'{"source": "other", ', 1),
            b"\xef\xbb\xbf" + json.dumps(record()).encode(),
            json.dumps(record()).encode("utf-16"),
            json.dumps(record()).encode(),
        ]
    )
)
def test_hostile_bytes_read_in_one_pass_as_the_long_way_reads_them(raw: bytes) -> None:
    """Bytes `json.loads` refuses or reads unlike pydantic's parser (lone
    surrogates, a byte order mark, UTF-16, control characters, NaN, 5,000 digits,
    duplicate keys) end as they always did."""
    outcome = read_raw_record(raw, VOCABULARY, recorded_at=RECORDED_AT)

    assert outcome == read_the_long_way(raw)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(document=valid_records(), recorded_at=st.sampled_from([RECORDED_AT, LATER, SUMMER]))
def test_the_event_is_serialised_once_and_fingerprinted_from_those_bytes(
    document: dict[str, Any], recorded_at: datetime
) -> None:
    """The published bytes are the event's own JSON, and the fingerprint cut from
    them is the one stored for records accepted before (all but recorded_at)."""
    accepted = accept(document, recorded_at=recorded_at)

    assert accepted.value == accepted.event.to_bytes()
    assert accepted.fingerprint == fingerprint(accepted.event)
    assert fingerprint_of_json(accepted.value) == fingerprint(accepted.event)


@given(name=st.text())
def test_name_uuids_are_the_standard_uuid5_in_intakes_namespace(name: str) -> None:
    """Event and correlation ids must never change: consumers deduplicate on them."""
    try:
        expected = uuid.uuid5(EVENT_ID_NAMESPACE, name)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            name_uuid(name)
        with pytest.raises(UnicodeEncodeError):
            name_uuid_text(name)
        return

    assert name_uuid(name) == expected
    assert name_uuid_text(name) == str(expected)


def test_event_ids_are_what_they_always_were() -> None:
    """The id intake gave this record before the fast uuid (main at 0ee2a9f)."""
    before = uuid.UUID("87fba9b1-67f1-55fd-8176-0ac2ecfe40b3")

    assert event_id_for("crm", "crm-rec-0001") == before


def test_the_timestamp_bounds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICPULSE_MAX_CLOCK_SKEW_SECONDS", "60")
    monkeypatch.setenv("CIVICPULSE_EARLIEST_OCCURRED_AT", "2010-04-01")

    bounds = IntakeSettings().timestamp_bounds()

    assert bounds == TimestampBounds(timedelta(seconds=60), datetime(2010, 4, 1, tzinfo=UTC))
    assert IntakeSettings.model_fields["max_clock_skew_seconds"].default == 900
    assert TimestampBounds() == IntakeSettings.model_construct().timestamp_bounds()
