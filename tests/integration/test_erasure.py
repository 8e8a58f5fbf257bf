"""Complete erasure, end to end on the real broker and database (issue 12, item 7).

A resident answers a survey with a comment and has a complaint whose officer writes
reasons; `civicpulse erase <ref>` then erases them through the services' HTTP APIs.
Afterwards the comment and the reasons are nowhere: every topic is read from its
beginning with a plain consumer, and every text-like column of every table is
searched. Before erasure the same searches find them, so the test can fail.
"""

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from civicpulse import erase
from services.complaints.app import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.feedback.notifications import NotifyMessage
from shared.api_keys import hash_api_key
from shared.events import SatisfactionResponded, parse_event
from shared.events.complaints import ComplaintWithdrawn
from shared.kafka import kafka_client_options, topic_partitions
from shared.topics import (
    ALL_TOPICS,
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    CONTACTS,
    FEEDBACK,
    NOTIFICATIONS,
)
from tests.support.complaints import SOURCE as CASE_MANAGER
from tests.support.complaints import action_record, london_at
from tests.support.feedback import (
    CRM_KEY,
    DELAY,
    RunningService,
    contact_resolved,
    decisions,
    feedback_from_now,
    new_id,
    publish,
)
from tests.support.kafka import committed_up_to, end_offsets, new_group_at_end, read_topic
from tests.support.metrics import MANAGER, running_metrics
from tests.support.services import served

pytestmark = pytest.mark.integration

COMPLAINTS_KEY = "test-erasure-case-manager-key-0123"
TEXT_TYPES = ("text", "character varying", "jsonb", "json", "bytea")


def unique_words(label: str) -> str:
    """A phrase found nowhere else, and left alone by the redaction (letters only)."""
    letters = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    return f"{label} {letters}"


@dataclass
class Stack:
    feedback: RunningService
    feedback_url: str
    complaints: httpx.AsyncClient
    complaints_url: str
    metrics: httpx.AsyncClient
    metrics_group: str


@pytest.fixture
async def stack(kafka_bootstrap: str, database_url: str, topics: None) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        feedback = await exits.enter_async_context(
            feedback_from_now(kafka_bootstrap, database_url, "test-erasure-feedback")
        )
        feedback_url = await exits.enter_async_context(served(feedback.app))
        complaints_app = create_complaints(
            ComplaintsSettings(
                kafka_bootstrap=kafka_bootstrap,
                database_url=database_url,
                complaints_group_id=await new_group_at_end(
                    kafka_bootstrap, [CONTACTS.name, COMPLAINT_ACTIONS.name], "test-erasure"
                ),
                complaints_api_keys={CASE_MANAGER: hash_api_key(COMPLAINTS_KEY)},
            )
        )
        await exits.enter_async_context(complaints_app.router.lifespan_context(complaints_app))
        complaints_url = await exits.enter_async_context(served(complaints_app))
        complaints = await exits.enter_async_context(
            httpx.AsyncClient(base_url=complaints_url, headers={"X-API-Key": COMPLAINTS_KEY})
        )
        metrics = await exits.enter_async_context(
            running_metrics(
                kafka_bootstrap,
                database_url,
                datetime.now(UTC),
                metrics_feedback_url=feedback_url,
                metrics_feedback_api_key=CRM_KEY,
            )
        )
        yield Stack(
            feedback,
            feedback_url,
            complaints,
            complaints_url,
            metrics.client,
            metrics.settings.metrics_group_id,
        )


async def answer_a_survey(stack: Stack, kafka_bootstrap: str, customer: str, comment: str) -> str:
    feedback = stack.feedback
    route = await feedback.client.put(
        f"/v1/customers/{customer}/contact-route", json={"email": f"{customer}@example.org"}
    )
    assert route.status_code == 204
    contact = new_id("C")
    await publish(kafka_bootstrap, contact_resolved(contact, customer, feedback.clock()))
    request_id: str = (await decisions(feedback, "contact", contact))["request"]["request_id"]
    feedback.clock.advance(DELAY + timedelta(minutes=1))
    await feedback.fire_timers()
    await feedback.publish_outbox()
    sent = await read_topic(
        kafka_bootstrap,
        NOTIFICATIONS.name,
        until=lambda rs: any(r.key == request_id.encode() for r in rs),
    )
    [message] = [
        NotifyMessage.model_validate_json(r.value) for r in sent if r.key == request_id.encode()
    ]
    token = urlsplit(message.personalisation.survey_link).path.rsplit("/", 1)[1]
    answered = await feedback.client.post(
        f"/v1/surveys/{token}",
        json={"overall": 2, "ease": 3, "resolved": "no", "comment": comment},
    )
    assert answered.status_code == 201, answered.text
    await feedback.publish_outbox()
    return request_id


async def complain(stack: Stack, customer: str, reason: str) -> str:
    complaint = new_id("CMP")
    steps: list[tuple[str, date, dict[str, Any]]] = [
        ("open", date(2026, 11, 23), {"customer_ref": customer, "service_area": "waste"}),
        ("acknowledge", date(2026, 11, 24), {}),
        ("extend", date(2026, 11, 25), {"days": 5, "reason": f"extended: {reason}"}),
        ("withdraw", date(2026, 11, 26), {"reason": f"withdrawn: {reason}"}),
    ]
    for kind, day, fields in steps:
        body = action_record(kind, complaint, f"{complaint}-{kind}", london_at(day), **fields)
        response = await stack.complaints.post(f"/v1/complaints/{complaint}/actions", json=body)
        assert response.status_code == 200, response.text
    return complaint


async def topics_holding(kafka_bootstrap: str, needles: list[bytes]) -> dict[bytes, set[str]]:
    """Every record of every topic, read from the beginning to its end offsets now."""
    names = [topic.name for topic in ALL_TOPICS]
    ends = await end_offsets(kafka_bootstrap, names)
    found: dict[bytes, set[str]] = {needle: set() for needle in needles}
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka_bootstrap),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, names)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends.get(tp, 0) for tp in partitions])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in batch:
                    raw = b" ".join(
                        [record.key or b"", record.value or b""]
                        + [value for _, value in record.headers]
                    )
                    for needle in needles:
                        if needle in raw:
                            found[needle].add(record.topic)
    finally:
        await consumer.stop()
    return found


async def tables_holding(database_url: str, needles: list[str]) -> dict[str, set[str]]:
    """Every text-like column of every table in the database, searched for each needle."""
    found: dict[str, set[str]] = {needle: set() for needle in needles}
    connection = await asyncpg.connect(database_url)
    try:
        columns = await connection.fetch(
            """
            SELECT c.table_schema, c.table_name, c.column_name, c.data_type
            FROM information_schema.columns c JOIN information_schema.tables t
              USING (table_schema, table_name)
            WHERE t.table_type = 'BASE TABLE' AND c.data_type = ANY($1::text[])
              AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
            """,
            list(TEXT_TYPES),
        )
        assert {c["table_name"] for c in columns} >= {
            "feedback_comments",
            "complaints",
            "outbox",
            "metrics_complaint_notes",
        }
        for column in columns:
            name = f'"{column["table_schema"]}"."{column["table_name"]}"'
            field = f'"{column["column_name"]}"'
            for needle in needles:
                if column["data_type"] == "bytea":
                    query = f"SELECT count(*) FROM {name} WHERE position($1::bytea in {field}) > 0"
                    argument: str | bytes = needle.encode()
                else:
                    query = f"SELECT count(*) FROM {name} WHERE {field}::text LIKE '%' || $1 || '%'"
                    argument = needle
                if await connection.fetchval(query, argument):
                    found[needle].add(f"{column['table_name']}.{column['column_name']}")
    finally:
        await connection.close()
    return found


async def test_after_erasure_no_comment_or_reason_text_of_the_customer_is_anywhere(
    stack: Stack, kafka_bootstrap: str, database_url: str
) -> None:
    """Issue 12, item 7: "no comment text of theirs is readable from any topic or table";
    the receipt lists what was deleted per table and the topic copies left, by retention.
    UK GDPR art. 17: erasure without undue delay; the KPIs (pseudonymous) stay the same."""
    customer = new_id("CUST")
    comment = unique_words("comment")
    reason = unique_words("reason")
    request_id = await answer_a_survey(stack, kafka_bootstrap, customer, comment)
    complaint = await complain(stack, customer, reason)
    responded = await read_topic(
        kafka_bootstrap,
        FEEDBACK.name,
        until=lambda rs: any(r.key == request_id.encode() for r in rs),
    )
    withdrawn = await read_topic(
        kafka_bootstrap,
        COMPLAINTS.name,
        until=lambda rs: any(
            r.key == complaint.encode() and isinstance(parse_event(r.value), ComplaintWithdrawn)
            for r in rs
        ),
    )
    assert any(
        isinstance(parse_event(r.value), SatisfactionResponded)
        for r in responded
        if r.key == request_id.encode()
    )
    assert any(r.key == complaint.encode() for r in withdrawn)
    # Metrics has consumed everything published so far (its tables are searched too).
    published = await end_offsets(kafka_bootstrap, [FEEDBACK.name, COMPLAINTS.name])
    assert await committed_up_to(kafka_bootstrap, stack.metrics_group, published, within_seconds=60)
    page = await stack.metrics.get("/dashboard/satisfaction", headers=MANAGER)
    assert comment in page.text  # the dashboard reads feedback's copy, keeps none
    before = await tables_holding(database_url, [comment, reason])
    assert before == {comment: {"feedback_comments.comment"}, reason: {"complaints.state"}}
    on_topics = await topics_holding(kafka_bootstrap, [comment.encode(), reason.encode()])
    assert on_topics == {comment.encode(): set(), reason.encode(): set()}  # never travelled

    args = argparse.Namespace(
        customer_ref=customer,
        feedback_url=stack.feedback_url,
        feedback_api_key=CRM_KEY,
        complaints_url=stack.complaints_url,
        complaints_api_key=COMPLAINTS_KEY,
    )
    async with httpx.AsyncClient() as client:
        receipt, failures = await erase.erase(args, client)

    assert failures == []
    deleted = {(d.service, d.table): d.rows for d in receipt.deleted}
    assert deleted == {
        ("feedback", "feedback_contact_routes"): 1,
        ("feedback", "feedback_comments"): 1,
        ("feedback", "outbox (unsent notifications)"): 0,  # relayed already
        ("complaints", "complaints (officers' free text removed)"): 1,
    }
    copies = {(c.service, c.topic): c for c in receipt.remaining}
    notifications = copies[("feedback", "civicpulse.notifications")]
    assert notifications.personal_data is True
    assert notifications.until is not None
    assert notifications.until > datetime.now(UTC)
    for topic in ("civicpulse.feedback", "civicpulse.complaints", "civicpulse.contacts"):
        [kept_for_ever] = [c for (_, name), c in copies.items() if name == topic]
        assert (kept_for_ever.until, kept_for_ever.personal_data) == (None, False), topic
    after_tables = await tables_holding(database_url, [comment, reason])
    after_topics = await topics_holding(kafka_bootstrap, [comment.encode(), reason.encode()])
    page = await stack.metrics.get("/dashboard/satisfaction", headers=MANAGER)

    assert after_tables == {comment: set(), reason: set()}
    assert after_topics == {comment.encode(): set(), reason.encode(): set()}
    assert comment not in page.text
    gone = await stack.feedback.client.get(f"/v1/comments/{request_id}")
    assert gone.status_code == 404
    case = await stack.complaints.get(f"/v1/complaints/{complaint}")
    assert case.json()["status"] == "withdrawn"  # the case itself reads the same


async def test_erasing_a_bad_reference_is_a_4xx_naming_the_field(stack: Stack) -> None:
    for client in (stack.feedback.client, stack.complaints):
        response = await client.delete("/v1/customers/not%20a%20ref")
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["path", "customer_ref"]
