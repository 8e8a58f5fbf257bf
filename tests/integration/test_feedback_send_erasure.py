"""The Notify sender against erasure and a refused key, on the real Kafka and PostgreSQL.

Notify is a loopback stand-in (`tests.support.fake_notify`) reached through the
real notifications-python-client; what it accepted is the ledger every
assertion is checked against. Each test waits for the sender's consumer group
to commit the topic's end offsets, never for a quiet spell.
"""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.feedback.notifications import ContactRoute, NotifyMessage, notify_message
from services.feedback.sender import create_sender_app, official_client
from services.feedback.settings import FeedbackSettings
from shared.events.envelope import utc_now
from shared.kafka import kafka_client_options
from shared.topics import NOTIFICATIONS, dead_letter_twin
from tests.support.fake_notify import API_KEY, FakeNotify, serving_fake_notify
from tests.support.feedback import (
    RunningService,
    feedback_from_now,
    feedback_settings,
)
from tests.support.kafka import committed_up_to, end_offsets, eventually, new_group_at_end

pytestmark = pytest.mark.integration
DEAD_LETTERS = dead_letter_twin(NOTIFICATIONS).name


@pytest.fixture
async def feedback(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningService]:
    """The feedback service: the CRM's PUT of routes and DELETE of customers."""
    async with feedback_from_now(kafka_bootstrap, database_url, "test-erasure-feedback") as service:
        yield service


@pytest.fixture
def notify() -> Any:
    with serving_fake_notify() as served:
        yield served


async def sender_settings(kafka_bootstrap: str, database_url: str) -> FeedbackSettings:
    group = await new_group_at_end(kafka_bootstrap, [NOTIFICATIONS.name], "test-erasure-sender")
    return feedback_settings(kafka_bootstrap, database_url, "unused").model_copy(
        update={
            "feedback_sender_group_id": group,
            # Short outage waits, so a stopped sender's held batch cycles in the test.
            "outage_backoff_max_seconds": 1.0,
        }
    )


@asynccontextmanager
async def running_sender(settings: FeedbackSettings, base_url: str) -> AsyncIterator[FastAPI]:
    app = create_sender_app(
        settings, client=official_client(API_KEY, base_url), registry=CollectorRegistry()
    )
    async with app.router.lifespan_context(app):
        yield app


def survey_message(customer_ref: str, email: str) -> NotifyMessage:
    return notify_message(
        ContactRoute(email=email),
        request_id=f"req-{uuid.uuid4().hex[:12]}",
        customer_ref=customer_ref,
        survey_link="https://feedback.example.gov.uk/surveys/t",
        service_area="waste",
        expires_at=utc_now(),
        email_template_id="11111111-2222-3333-4444-555555555555",
        sms_template_id="66666666-7777-8888-9999-000000000000",
    )


async def produce(kafka_bootstrap: str, *messages: NotifyMessage) -> dict[str, tuple[int, int]]:
    """Put messages on the topic as the outbox relay would; returns where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        landed = {}
        for message in messages:
            metadata = await producer.send_and_wait(
                NOTIFICATIONS.name, message.to_bytes(), key=message.reference.encode()
            )
            landed[message.reference] = (metadata.partition, metadata.offset)
        return landed
    finally:
        await producer.stop()


async def put_route(feedback: RunningService, customer_ref: str, email: str) -> None:
    response = await feedback.client.put(
        f"/v1/customers/{customer_ref}/contact-route", json={"email": email}
    )
    assert response.status_code == 204, response.text


async def all_consumed(kafka_bootstrap: str, group_id: str) -> None:
    ends = await end_offsets(kafka_bootstrap, [NOTIFICATIONS.name])
    assert await committed_up_to(kafka_bootstrap, group_id, ends, within_seconds=60)


async def suppressed_reasons(pool: asyncpg.Pool, references: list[str]) -> dict[str, str | None]:
    rows = await pool.fetch(
        "SELECT reference, suppressed_reason FROM feedback_sent_notifications"
        " WHERE reference = ANY($1)",
        references,
    )
    return {row["reference"]: row["suppressed_reason"] for row in rows}


async def until(check: Callable[[], Awaitable[bool]], *, within_seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


def customer(label: str) -> str:
    return f"CUST-{label}-{uuid.uuid4().hex[:8]}"


async def test_an_erased_customer_gets_nothing_even_from_a_message_already_on_the_topic(
    feedback: RunningService,
    pool: asyncpg.Pool,
    notify: tuple[FakeNotify, str],
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    """Issue 12, "What it must show": "after erasure no message for that customer is
    delivered, even one already on the topic". Others' messages go exactly once."""
    fake, base_url = notify
    erased, kept, other = customer("erased"), customer("kept"), customer("other")
    opted = customer("opted")
    addresses = {
        erased: "erased@example.org",
        kept: "kept@example.org",
        other: "o@example.org",
        opted: "opted@example.org",
    }
    for ref, email in addresses.items():
        await put_route(feedback, ref, email)
    messages = [
        survey_message(erased, addresses[erased]),
        survey_message(kept, addresses[kept]),
        survey_message(erased, addresses[erased]),
        survey_message(other, addresses[other]),
        survey_message(opted, addresses[opted]),
    ]
    settings = await sender_settings(kafka_bootstrap, database_url)
    # Queued while the customer was still known: the redelivered one twice.
    await produce(kafka_bootstrap, *messages, messages[1])

    response = await feedback.client.delete(f"/v1/customers/{erased}")
    assert response.status_code == 200, response.text
    opting_out = await feedback.client.post(f"/v1/customers/{opted}/opt-out")
    assert opting_out.status_code == 200, opting_out.text
    async with running_sender(settings, base_url):
        await all_consumed(kafka_bootstrap, settings.feedback_sender_group_id)

    expected = Counter(m.reference for m in messages if m.customer_ref in (kept, other))
    assert Counter(r["reference"] for r in fake.accepted) == expected
    called = {r["email_address"] for r in fake.requests}
    assert called.isdisjoint({addresses[erased], addresses[opted]})
    erased_references = [m.reference for m in messages if m.customer_ref == erased]
    [opted_reference] = [m.reference for m in messages if m.customer_ref == opted]
    assert await suppressed_reasons(pool, [*erased_references, opted_reference]) == {
        **dict.fromkeys(erased_references, "erased"),
        opted_reference: "opted_out",
    }


async def test_an_erasure_racing_a_send_waits_for_it_and_no_delivery_commits_after_it(
    feedback: RunningService,
    pool: asyncpg.Pool,
    notify: tuple[FakeNotify, str],
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    """Issue 12, item 7: "erasure and sending take the same customer lock". A send in
    flight when the erasure starts is committed before the erasure answers; a message
    after it finds no route."""
    fake, base_url = notify
    racing, bystander = customer("racing"), customer("bystander")
    await put_route(feedback, racing, "racing@example.org")
    await put_route(feedback, bystander, "bystander@example.org")
    in_flight = survey_message(racing, "racing@example.org")
    fake.hold(in_flight.reference)  # Notify is slow to answer this one
    settings = await sender_settings(kafka_bootstrap, database_url)

    async with running_sender(settings, base_url):
        await produce(kafka_bootstrap, in_flight)
        assert await eventually(fake.entered[in_flight.reference].is_set, within_seconds=30)
        erasure = asyncio.create_task(feedback.client.delete(f"/v1/customers/{racing}"))

        async def erasure_waits_for_the_lock() -> bool:
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                " AND datname = current_database()"
            )
            return bool(waiting)

        assert await until(erasure_waits_for_the_lock), "erasure did not wait for the send"
        assert not erasure.done()
        fake.release(in_flight.reference)
        response = await erasure
        assert response.status_code == 200, response.text
        # The send committed before the erasure did: its record is there already.
        sent = await pool.fetchrow(
            "SELECT notification_id, suppressed_reason FROM feedback_sent_notifications"
            " WHERE reference = $1",
            in_flight.reference,
        )
        assert sent is not None
        assert (sent["notification_id"] is not None, sent["suppressed_reason"]) == (True, None)

        after = survey_message(racing, "racing@example.org")
        unrelated = survey_message(bystander, "bystander@example.org")
        await produce(kafka_bootstrap, after, unrelated)
        await all_consumed(kafka_bootstrap, settings.feedback_sender_group_id)

    assert [r["reference"] for r in fake.accepted] == [in_flight.reference, unrelated.reference]
    assert await suppressed_reasons(pool, [after.reference]) == {after.reference: "erased"}


async def test_erasures_running_while_the_sender_works_commit_no_delivery_after_them(
    feedback: RunningService,
    pool: asyncpg.Pool,
    notify: tuple[FakeNotify, str],
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    """Issue 12, item 7, as a race: customers are erased at several points while their
    messages are being sent. What was delivered for an erased customer when the erasure
    answered is all that ever is: no later commit, no later call to Notify."""
    fake, base_url = notify
    customers = [customer(f"race{n}") for n in range(6)]
    doomed = customers[:3]
    for ref in customers:
        await put_route(feedback, ref, f"{ref.lower()}@example.org")
    # Calls for the erased customers are slow, so each erasure lands while one of
    # their messages is with Notify: the window a missing lock would let through.
    fake.slow_for = {f"{ref.lower()}@example.org": 0.3 for ref in doomed}
    messages = [
        survey_message(ref, f"{ref.lower()}@example.org") for _ in range(4) for ref in customers
    ]
    settings = await sender_settings(kafka_bootstrap, database_url)

    async def delivered_for(ref: str) -> set[str]:
        rows = await pool.fetch(
            "SELECT reference FROM feedback_sent_notifications"
            " WHERE customer_ref = $1 AND suppressed_reason IS NULL",
            ref,
        )
        return {row["reference"] for row in rows}

    async def erase_after(ref: str, accepted: int) -> set[str]:
        mine = {m.reference for m in messages if m.customer_ref == ref}
        assert await eventually(lambda: len(fake.accepted) >= accepted, within_seconds=60)
        # Not a timed wait: polls until one of this customer's messages is with Notify.
        assert await eventually(
            lambda: bool(fake.in_flight & mine), within_seconds=60, interval=0.005
        )
        response = await feedback.client.delete(f"/v1/customers/{ref}")
        assert response.status_code == 200, response.text
        return await delivered_for(ref)  # what had committed when the erasure answered

    async with running_sender(settings, base_url):
        await produce(kafka_bootstrap, *messages)
        at_erasure = await asyncio.gather(
            *(erase_after(ref, accepted) for ref, accepted in zip(doomed, (0, 3, 6), strict=True))
        )
        await all_consumed(kafka_bootstrap, settings.feedback_sender_group_id)

    sent_to = Counter(r["reference"] for r in fake.accepted)
    for ref, snapshot in zip(doomed, at_erasure, strict=True):
        mine = {m.reference for m in messages if m.customer_ref == ref}
        assert await delivered_for(ref) == snapshot  # nothing committed after the erasure
        assert {r for r in sent_to if r in mine} == snapshot  # Notify got nothing more
        assert await suppressed_reasons(pool, sorted(mine - snapshot)) == dict.fromkeys(
            mine - snapshot, "erased"
        )
    kept = [m.reference for m in messages if m.customer_ref not in doomed]
    assert Counter({r: n for r, n in sent_to.items() if r in kept}) == Counter(kept)
    assert all(n == 1 for n in sent_to.values())


async def test_a_refused_key_stops_the_sender_and_a_good_key_resumes_each_message_once(
    feedback: RunningService,
    notify: tuple[FakeNotify, str],
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    """Issue 12, item 8: "A 401 or 403 stops the sender and raises an alert without
    dead-lettering messages". No offset is committed past a message not delivered;
    the restarted sender delivers the rest, each once."""
    fake, base_url = notify
    ref = customer("stopped")
    await put_route(feedback, ref, "stopped@example.org")
    messages = [survey_message(ref, "stopped@example.org") for _ in range(5)]
    fake.statuses = [201, 401]
    settings = await sender_settings(kafka_bootstrap, database_url)
    dead_letters_before = await end_offsets(kafka_bootstrap, [DEAD_LETTERS])

    async with running_sender(settings, base_url) as app:
        landed = await produce(kafka_bootstrap, *messages)
        registry: CollectorRegistry = app.state.prometheus_registry

        def stopped() -> bool:
            value = registry.get_sample_value(
                "feedback_notify_sender_stopped", {"reason": "unauthorized"}
            )
            return value == 1

        def held_and_redelivered() -> bool:
            held = registry.get_sample_value("feedback_notify_messages_held_total") or 0
            return held >= 2  # the held batch came back at least twice, untouched

        assert await eventually(stopped, within_seconds=30)
        calls_when_stopped = len(fake.requests)
        assert await eventually(held_and_redelivered, within_seconds=30)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sender"
        ) as client:
            health = await client.get("/healthz")
        delivered = {r["reference"] for r in fake.accepted}
        first_undelivered: dict[int, int] = {}
        for message in messages:
            partition, offset = landed[message.reference]
            if message.reference not in delivered:
                first_undelivered[partition] = min(offset, first_undelivered.get(partition, offset))

    assert health.status_code == 503
    assert "refused the API key" in health.json()["problem"]
    assert calls_when_stopped == 2
    assert len(fake.requests) == 2  # never called again once stopped
    committed = await committed_offsets(
        kafka_bootstrap, settings.feedback_sender_group_id, first_undelivered
    )
    for partition, offset in first_undelivered.items():
        assert committed[partition] <= offset, (partition, committed, first_undelivered)

    fake.status = 201
    async with running_sender(settings, base_url):
        await all_consumed(kafka_bootstrap, settings.feedback_sender_group_id)

    assert Counter(r["reference"] for r in fake.accepted) == Counter(m.reference for m in messages)
    dead_letters_after = await end_offsets(kafka_bootstrap, [DEAD_LETTERS])
    assert dead_letters_after == dead_letters_before


async def committed_offsets(
    kafka_bootstrap: str, group_id: str, partitions: dict[int, int]
) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka_bootstrap), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {
            partition: await consumer.committed(TopicPartition(NOTIFICATIONS.name, partition)) or 0
            for partition in partitions
        }
    finally:
        await consumer.stop()
