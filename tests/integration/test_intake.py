"""Intake on the real broker and database: raw topic, HTTP, dead letters, auth."""

import json
import uuid
from typing import Any

import pytest

from shared.dead_letters import DeadLetter
from shared.events import ContactReceived, parse_event
from shared.topics import CONTACTS, CONTACTS_RAW, CONTACTS_RAW_DEAD_LETTER
from tests.integration.conftest import CRM_API_KEY, RunningIntake
from tests.support.kafka import Record, eventually, kcat_produce, read_topic

pytestmark = pytest.mark.integration


def contact_record(contact_id: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_type": "contact_received",
        "idempotency_key": f"key-{contact_id}",
        "source": "telephony",
        "contact_id": contact_id,
        "occurred_at": "2026-01-12T09:30:00+00:00",
        "channel": "Phone",
        "service_area": "planning",
        "kind": "enquiry",
        "customer_ref": "CUST-1",
        "answered_by_team": "planning",
        "wait_seconds": 42,
    }
    record.update(overrides)
    return record


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def events_for(records: list[Record], contact_id: str) -> list[Record]:
    return [r for r in records if r.key == contact_id.encode()]


async def test_a_record_published_with_kcat_comes_out_as_one_canonical_event(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    contact_id = new_id("kcat")
    kcat_produce(
        kafka_bootstrap,
        CONTACTS_RAW.name,
        json.dumps(contact_record(contact_id, email="resident@example.org")).encode(),
        key=contact_id,
    )

    records = await read_topic(
        kafka_bootstrap, CONTACTS.name, until=lambda rs: bool(events_for(rs, contact_id))
    )

    [record] = events_for(records, contact_id)
    event = parse_event(record.value)
    assert isinstance(event, ContactReceived)
    assert event.payload.channel == "phone"
    assert event.source == "telephony"
    assert event.payload.wait_seconds == 42
    assert b"resident@example.org" not in record.value
    assert record.headers["event_type"] == b"ContactReceived"


async def test_the_same_record_twice_gives_one_event(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    contact_id = new_id("twice")
    sentinel_id = new_id("sentinel")
    payload = json.dumps(contact_record(contact_id)).encode()
    duplicates_before = duplicates_seen(intake)
    # One key, so all three land on one partition and are handled in order:
    # once this intake has seen the duplicate and the sentinel is out, both
    # copies have been handled.
    for value in (payload, payload):
        kcat_produce(kafka_bootstrap, CONTACTS_RAW.name, value, key="same-partition")
    kcat_produce(
        kafka_bootstrap,
        CONTACTS_RAW.name,
        json.dumps(contact_record(sentinel_id)).encode(),
        key="same-partition",
    )

    assert await eventually(lambda: duplicates_seen(intake) == duplicates_before + 1)
    records = await read_topic(
        kafka_bootstrap, CONTACTS.name, until=lambda rs: bool(events_for(rs, sentinel_id))
    )
    assert len(events_for(records, contact_id)) == 1


def duplicates_seen(intake: RunningIntake) -> float:
    value = intake.registry.get_sample_value("intake_records_duplicate_total", {"via": "kafka"})
    return value or 0.0


async def test_a_malformed_record_lands_in_the_dead_letter_topic_with_its_reason(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    marker = new_id("malformed")
    bad_json = b'{"record_type": "contact_received", "contact_id": "' + marker.encode() + b'"'
    unknown_area = json.dumps(contact_record(new_id("area"), service_area="parks", note=marker))
    kcat_produce(kafka_bootstrap, CONTACTS_RAW.name, bad_json, key=marker)
    kcat_produce(kafka_bootstrap, CONTACTS_RAW.name, unknown_area.encode(), key=marker)

    records = await read_topic(
        kafka_bootstrap,
        CONTACTS_RAW_DEAD_LETTER.name,
        until=lambda rs: len([r for r in rs if marker.encode() in r.value]) >= 2,
    )

    letters = [
        DeadLetter.from_record(r.value, r.key, r.headers)
        for r in records
        if marker.encode() in r.value
    ]
    assert [letter.original for letter in letters] == [bad_json, unknown_area.encode()]
    assert letters[0].error_type == "invalid_json"
    assert letters[1].error_type == "invalid_record"  # `note` is not a field
    assert "note" in letters[1].reason
    for letter in letters:
        assert letter.source.topic == CONTACTS_RAW.name
        assert letter.source.offset >= 0
        assert letter.key == marker.encode()


async def test_an_unknown_service_area_is_dead_lettered_naming_the_field(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    contact_id = new_id("parks")
    kcat_produce(
        kafka_bootstrap,
        CONTACTS_RAW.name,
        json.dumps(contact_record(contact_id, service_area="parks")).encode(),
        key=contact_id,
    )

    records = await read_topic(
        kafka_bootstrap,
        CONTACTS_RAW_DEAD_LETTER.name,
        until=lambda rs: bool(events_for(rs, contact_id)),
    )

    [record] = events_for(records, contact_id)
    letter = DeadLetter.from_record(record.value, record.key, record.headers)
    assert letter.error_type == "unknown_vocabulary"
    assert "service_area: unknown value 'parks'" in letter.reason


async def test_an_http_batch_with_one_bad_record_is_refused_whole_naming_record_and_field(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    good_id, bad_id = new_id("good"), new_id("bad")
    batch = [
        _without_source(contact_record(good_id)),
        _without_source(contact_record(bad_id, channel="carrier pigeon")),
    ]

    response = await intake.client.post(
        "/v1/contacts", json=batch, headers={"X-API-Key": CRM_API_KEY}
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["record"] == 1
    assert error["field"] == "channel"
    assert error["reason"] == "unknown_vocabulary"
    # Nothing of the batch was published: a later record on the HTTP path is
    # out, and the good record of the refused batch is not.
    follow_up = new_id("after")
    accepted = await intake.client.post(
        "/v1/contacts",
        json=_without_source(contact_record(follow_up)),
        headers={"X-API-Key": CRM_API_KEY},
    )
    assert accepted.status_code == 202
    records = await read_topic(
        kafka_bootstrap, CONTACTS.name, until=lambda rs: bool(events_for(rs, follow_up))
    )
    assert events_for(records, follow_up)
    assert not events_for(records, good_id)


def _without_source(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "source"}


async def test_an_http_batch_is_published_and_a_resend_reports_duplicates(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    ids = [new_id("batch") for _ in range(3)]
    batch = [_without_source(contact_record(i)) for i in ids]
    headers = {"X-API-Key": CRM_API_KEY}

    first = await intake.client.post("/v1/contacts", json=batch, headers=headers)
    again = await intake.client.post("/v1/contacts", json=batch, headers=headers)

    assert first.status_code == 202
    assert first.json()["accepted"] == 3
    assert again.status_code == 202
    assert again.json()["duplicates"] == 3
    assert [r["event_id"] for r in again.json()["results"]] == [
        r["event_id"] for r in first.json()["results"]
    ]
    records = await read_topic(
        kafka_bootstrap, CONTACTS.name, until=lambda rs: all(events_for(rs, i) for i in ids)
    )
    for contact_id in ids:
        [record] = events_for(records, contact_id)
        assert parse_event(record.value).source == "crm"


async def test_a_reused_idempotency_key_with_new_content_is_a_conflict(
    intake: RunningIntake,
) -> None:
    contact_id = new_id("conflict")
    headers = {"X-API-Key": CRM_API_KEY}
    original = _without_source(contact_record(contact_id))
    changed = {**original, "kind": "complaint"}

    first = await intake.client.post("/v1/contacts", json=original, headers=headers)
    second = await intake.client.post("/v1/contacts", json=changed, headers=headers)

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["detail"][0]["reason"] == "idempotency_conflict"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key"}])
async def test_a_missing_or_wrong_api_key_gets_401(
    intake: RunningIntake, headers: dict[str, str]
) -> None:
    response = await intake.client.post(
        "/v1/contacts", json=_without_source(contact_record(new_id("auth"))), headers=headers
    )

    assert response.status_code == 401


async def test_a_body_that_is_not_json_gets_422_naming_the_body(intake: RunningIntake) -> None:
    response = await intake.client.post(
        "/v1/contacts", content=b"{oops", headers={"X-API-Key": CRM_API_KEY}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"


async def test_health_and_metrics_report_a_working_service(intake: RunningIntake) -> None:
    health = await intake.client.get("/healthz")
    metrics = await intake.client.get("/metrics")

    assert health.status_code == 200
    assert health.json() == {"status": "ok", "kafka": True, "postgres": True}
    assert "intake_records_accepted_total" in metrics.text
    assert "faststream_received_messages_total" in metrics.text


async def test_openapi_documents_the_record_schema_and_all_or_nothing_rule(
    intake: RunningIntake,
) -> None:
    document = (await intake.client.get("/openapi.json")).json()

    operation = document["paths"]["/v1/contacts"]["post"]
    assert "All or nothing" in operation["description"]
    assert "RawContactReceived" in document["components"]["schemas"]
