"""Plausible timestamps on the real stack: refused over HTTP and dead-lettered on the raw topic.

Issue 9, item 3: `occurred_at` more than CIVICPULSE_MAX_CLOCK_SKEW_SECONDS in the
future is refused with reason `occurred_in_future`; before
CIVICPULSE_EARLIEST_OCCURRED_AT with `occurred_too_early`; both over HTTP (422
naming the field) and on topics (dead letter). Backfills stay possible.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.dead_letters import DeadLetter
from shared.topics import CONTACTS, CONTACTS_RAW, CONTACTS_RAW_DEAD_LETTER
from tests.integration.conftest import CRM_API_KEY, RunningIntake
from tests.integration.test_intake import contact_record, events_for, new_id
from tests.support.kafka import kcat_produce, read_topic

pytestmark = pytest.mark.integration

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).isoformat()
CASES = [
    (TOMORROW, "occurred_in_future"),
    ("2099-01-12T09:30:00+00:00", "occurred_in_future"),
    ("1999-12-31T23:59:59+00:00", "occurred_too_early"),
    ("9999-12-31T23:59:59-01:00", "invalid_record"),  # past the UTC range
]


@pytest.mark.parametrize(("occurred_at", "reason"), CASES)
async def test_an_implausible_occurred_at_over_http_gets_422_naming_the_field(
    intake: RunningIntake, occurred_at: str, reason: str
) -> None:
    record = contact_record(new_id("http-time"), occurred_at=occurred_at)
    del record["source"]

    response = await intake.client.post(
        "/v1/contacts", json=record, headers={"X-API-Key": CRM_API_KEY}
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["field"], error["reason"]) == ("occurred_at", reason)


async def test_an_implausible_occurred_at_on_the_raw_topic_is_dead_lettered_with_its_reason(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    ids = [new_id("raw-time") for _ in CASES]
    for contact_id, (occurred_at, _) in zip(ids, CASES, strict=True):
        value = json.dumps(contact_record(contact_id, occurred_at=occurred_at)).encode()
        kcat_produce(kafka_bootstrap, CONTACTS_RAW.name, value, key=contact_id)

    records = await read_topic(
        kafka_bootstrap,
        CONTACTS_RAW_DEAD_LETTER.name,
        until=lambda rs: all(events_for(rs, contact_id) for contact_id in ids),
    )

    for contact_id, (_, reason) in zip(ids, CASES, strict=True):
        [record] = events_for(records, contact_id)
        letter = DeadLetter.from_record(record.value, record.key, record.headers)
        assert letter.error_type == reason
        assert "occurred_at" in letter.reason


async def test_a_backfill_of_real_history_is_published(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    contact_id = new_id("backfill")
    record = contact_record(contact_id, occurred_at="2003-04-01T09:00:00+01:00")
    del record["source"]

    response = await intake.client.post(
        "/v1/contacts", json=record, headers={"X-API-Key": CRM_API_KEY}
    )

    assert response.status_code == 202, response.text
    records = await read_topic(
        kafka_bootstrap, CONTACTS.name, until=lambda rs: bool(events_for(rs, contact_id))
    )
    assert len(events_for(records, contact_id)) == 1
