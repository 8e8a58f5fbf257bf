"""Intake writes each event's JSON without validating the event again (`event_json`):
the bytes must be exactly those of the event built the long way, through its model."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.domain import Checked, Vocabulary, accept, check_record
from services.intake.event_json import EVENT_OF_RECORD
from services.intake.identity import event_id_for, fingerprint, name_uuid
from shared.events.contacts import ContactEvent
from tests.unit.test_intake_domain import (
    LATER,
    RECORDED_AT,
    SERVICE_AREAS,
    SUMMER,
    VOCABULARY,
    record,
    valid_records,
)

_NOT_PAYLOAD = frozenset(
    {"idempotency_key", "source", "contact_id", "occurred_at", "correlation_id", "record_type"}
)


def event_the_long_way(checked: Checked) -> ContactEvent:
    """The event as intake built it before `event_json` (main at be9d805): every field
    through the event model's validator."""
    raw, source = checked.record, checked.source
    fields = {name: value for name, value in vars(raw).items() if name not in _NOT_PAYLOAD}
    fields.update(checked.vocabulary_values)
    return EVENT_OF_RECORD[type(raw)].model_validate(
        {
            "event_id": event_id_for(source, raw.idempotency_key),
            "occurred_at": raw.occurred_at,
            "recorded_at": checked.recorded_at,
            "source": source,
            "correlation_id": name_uuid(f"{source}\n{raw.correlation_id or raw.contact_id}"),
            "contact_id": raw.contact_id,
            "payload": fields,
        }
    )


def checked(document: dict[str, Any], recorded_at: datetime = RECORDED_AT) -> Checked:
    outcome = check_record(document, VOCABULARY, authenticated_source=None, recorded_at=recorded_at)
    assert isinstance(outcome, Checked), outcome
    return outcome


BRITISH_SUMMER_TIME = timezone(timedelta(hours=1))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=valid_records(),
    recorded_at=st.sampled_from(
        [RECORDED_AT, LATER, SUMMER, SUMMER.astimezone(BRITISH_SUMMER_TIME)]
    ),
    whole_wait=st.booleans(),
)
def test_the_published_bytes_are_those_of_the_event_built_through_its_model(
    document: dict[str, Any], recorded_at: datetime, whole_wait: bool
) -> None:
    """Same bytes, so the same event, event_id, correlation_id and fingerprint: existing
    keys, ids and consumers' deduplication cannot tell the two ways apart."""
    if whole_wait and document.get("wait_seconds") is not None:
        document["wait_seconds"] = int(document["wait_seconds"])  # JSON's 42, not 42.0
    item = checked(document, recorded_at)
    event = event_the_long_way(item)

    accepted = accept(item)

    assert accepted.value == event.to_bytes()
    assert accepted.fingerprint == fingerprint(event)
    assert accepted.event_id == str(event.event_id)
    assert accepted.contact_id == event.key
    assert accepted.event_class is type(event)
    assert accepted.event == event


@pytest.mark.parametrize("record_type", ["contact_received", "call_abandoned"])
def test_a_whole_number_wait_is_written_as_the_float_the_event_holds(record_type: str) -> None:
    accepted = accept(checked(record(record_type, wait_seconds=42)))

    assert b'"wait_seconds":42.0' in accepted.value
    assert (
        accepted.value
        == event_the_long_way(checked(record(record_type, wait_seconds=42))).to_bytes()
    )


def test_a_naive_clock_reading_is_refused_not_written() -> None:
    naive = checked(record())._replace(recorded_at=datetime(2026, 1, 12, 9, 31))

    with pytest.raises(ValueError, match="timezone-aware"):
        accept(naive)


def test_a_vocabulary_events_could_not_carry_is_refused_when_it_is_loaded() -> None:
    """Events are written unvalidated, so what the vocabulary admits must be what an
    event's `service_area` admits (a slug)."""
    with pytest.raises(ValueError, match="Council Tax"):
        Vocabulary(SERVICE_AREAS | {"Council Tax"})
    with pytest.raises(ValueError, match="channels and kinds"):
        Vocabulary(SERVICE_AREAS, channels=frozenset({"phone", "pigeon"}))


def test_the_event_read_back_is_the_published_one() -> None:
    accepted = accept(checked(record("mystery_shop_assessed")))

    assert accepted.event.to_bytes() == accepted.value
    assert accepted.event.recorded_at == RECORDED_AT.astimezone(UTC)


@pytest.mark.parametrize(
    ("record_type", "loose"),
    [
        ("contact_received", {"transfers": "3", "resolved_at_first_contact": 1}),
        ("contact_received", {"transfers": 2.0, "resolved_at_first_contact": "true"}),
        ("contact_received", {"wait_seconds": "42"}),
        ("contact_received", {"wait_seconds": True}),
        ("call_abandoned", {"wait_seconds": "17.25"}),
        ("mystery_shop_assessed", {"scores": {"greeting": "80", "accuracy": 100.0}}),
        ("contact_received", {"channel": " Face-to-face ", "kind": "SERVICE REQUEST"}),
    ],
)
def test_values_the_schema_coerces_are_written_as_the_event_holds_them(
    record_type: str, loose: dict[str, Any]
) -> None:
    """pydantic's lax mode turns "3", 2.0 and 1 into the field's own type before intake
    sees them, as the event's model would: the bytes agree whatever the publisher sent."""
    document = record(record_type, **loose)
    if "Face-to-face" in str(loose.get("channel")):
        document.pop("wait_seconds", None)  # only calls have a queue wait

    item = checked(document)

    assert accept(item).value == event_the_long_way(item).to_bytes()
