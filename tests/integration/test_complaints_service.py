"""The complaints service in-process on the real broker and database.

Time is injected: the service's clock is a `FakeClock` the tests move, and
deadlines are fired with `TimerScheduler.fire_due(now)`, never slept for.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.complaints.app import Running, create_app
from services.complaints.domain import complaint_id_for_contact
from services.complaints.settings import ComplaintsSettings
from shared.api_keys import hash_api_key
from shared.dead_letters import DeadLetter
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS, CONTACTS, dead_letter_twin
from tests.support.complaints import (
    SOURCE,
    action_bytes,
    action_record,
    complaint_contact,
    london_at,
    produce,
)
from tests.support.kafka import Record, new_group_at_end, read_to_end, read_topic
from tests.support.outbox import outbox_drained

pytestmark = pytest.mark.integration
START = datetime(2026, 1, 1, 9, tzinfo=UTC)
API_KEY = "test-case-manager-key-0123456789"
OTHER_KEY = "test-other-system-key-0123456789"
JUNE_1 = date(2026, 6, 1)  # a Monday, long after START: no deadline of it falls due


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RunningComplaints:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FakeClock
    registry: CollectorRegistry

    @property
    def running(self) -> Running:
        running: Running = self.app.state.complaints
        return running

    async def act(self, kind: str, complaint_id: str, day: date, **fields: Any) -> httpx.Response:
        record = action_record(
            kind, complaint_id, f"{kind}-{uuid.uuid4().hex[:8]}", london_at(day), **fields
        )
        return await self.client.post(f"/v1/complaints/{complaint_id}/actions", json=record)

    async def state(self, complaint_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/complaints/{complaint_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def running_service(
    settings: ComplaintsSettings, clock: FakeClock
) -> AsyncIterator[RunningComplaints]:
    registry = CollectorRegistry()
    app = create_app(settings, clock=clock, registry=registry)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://complaints", headers={"X-API-Key": API_KEY}
        ) as client:
            yield RunningComplaints(app, client, clock, registry)


@pytest.fixture(scope="module")
async def settings(kafka_bootstrap: str, database_url: str, topics: None) -> ComplaintsSettings:
    return ComplaintsSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        complaints_group_id=await new_group_at_end(
            kafka_bootstrap, [CONTACTS.name, COMPLAINT_ACTIONS.name], "test-complaints"
        ),
        complaints_api_keys={
            SOURCE: hash_api_key(API_KEY),
            "other-system": hash_api_key(OTHER_KEY),
        },
        complaints_timer_poll_seconds=0.2,
        complaints_metrics_refresh_seconds=0.2,
    )


@pytest.fixture(scope="module")
async def service(settings: ComplaintsSettings) -> AsyncIterator[RunningComplaints]:
    async with running_service(settings, FakeClock(START)) as running:
        yield running


async def wait_until(check: Callable[[], Any], *, within_seconds: float = 20.0) -> None:
    """Poll an async check until it returns true; fails with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + within_seconds
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            assert value, "condition not met in time"
            return
        await asyncio.sleep(0.1)


def events_for(records: list[Record], complaint_id: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records if r.key == complaint_id.encode()]


async def published(
    bootstrap: str, complaint_id: str, until: Callable[[list[str]], bool], within: float = 30.0
) -> list[dict[str, Any]]:
    records = await read_topic(
        bootstrap,
        COMPLAINTS.name,
        until=lambda rs: until([e["event_type"] for e in events_for(rs, complaint_id)]),
        within_seconds=within,
    )
    return events_for(records, complaint_id)


async def test_a_complaint_contact_flows_through_both_stages_to_the_ombudsman_once_and_in_order(
    service: RunningComplaints, kafka_bootstrap: str
) -> None:
    contact_id = f"C-{uuid.uuid4().hex[:10]}"
    complaint_id = complaint_id_for_contact(contact_id)
    contact = complaint_contact(contact_id, london_at(JUNE_1, 9))
    # Delivered twice, as after a producer retry: one complaint.
    await produce(kafka_bootstrap, CONTACTS, [(contact_id, contact.to_bytes())] * 2)

    async def status_is(status: str, stage: int) -> bool:
        response = await service.client.get(f"/v1/complaints/{complaint_id}")
        return response.status_code == 200 and (
            response.json()["status"],
            response.json()["stage"],
        ) == (status, stage)

    async def over_kafka(kind: str, day: date, **fields: Any) -> None:
        value = action_bytes(kind, complaint_id, f"{kind}-{day}", london_at(day), **fields)
        await produce(kafka_bootstrap, COMPLAINT_ACTIONS, [(complaint_id, value)])

    await wait_until(lambda: status_is("received", 1))
    await over_kafka("acknowledge", date(2026, 6, 2))
    await wait_until(lambda: status_is("acknowledged", 1))
    assert (await service.act("respond", complaint_id, date(2026, 6, 10))).status_code == 200
    await over_kafka("request_escalation", date(2026, 6, 15))
    await wait_until(lambda: status_is("escalation_requested", 1))
    assert (await service.act("acknowledge", complaint_id, date(2026, 6, 16))).status_code == 200
    await over_kafka("respond", date(2026, 7, 1), responder="head-of-waste", outcome="not_upheld")
    await wait_until(lambda: status_is("responded", 2))
    referral = await service.act("refer_to_ombudsman", complaint_id, date(2026, 7, 20))

    events = await published(
        kafka_bootstrap, complaint_id, lambda types: "ComplaintReferredToOmbudsman" in types
    )
    assert referral.status_code == 200
    assert [e["event_type"] for e in events] == [
        "ComplaintOpened",
        "ComplaintAcknowledged",
        "ComplaintResponded",
        "ComplaintEscalationRequested",
        "ComplaintEscalated",
        "ComplaintAcknowledged",
        "ComplaintResponded",
        "ComplaintReferredToOmbudsman",
    ]
    assert len({e["event_id"] for e in events}) == len(events)
    assert events[0]["payload"]["contact_id"] == contact_id
    body = referral.json()["complaint"]
    assert (body["status"], body["stage"]) == ("referred_to_ombudsman", 2)
    assert [d["state"] for d in body["deadlines"]] == ["met"] * 4
    assert len(body["history"]) == 8


async def test_a_missed_acknowledgement_produces_exactly_one_breach_event(
    service: RunningComplaints, kafka_bootstrap: str
) -> None:
    complaint_id = f"CMP-late-{uuid.uuid4().hex[:8]}"
    opened = await service.act("open", complaint_id, date(2026, 1, 5))  # due Monday 12th
    assert opened.status_code == 200, opened.text
    scheduler = service.running.scheduler

    await scheduler.fire_due(datetime(2026, 1, 12, 23, 59, tzinfo=UTC))
    before = await service.state(complaint_id)
    service.clock.now = datetime(2026, 1, 13, 0, 1, tzinfo=UTC)
    await asyncio.gather(*(scheduler.fire_due(service.clock.now) for _ in range(3)))
    after = await service.state(complaint_id)
    acknowledged_late = await service.act("acknowledge", complaint_id, date(2026, 1, 14))

    events = await published(kafka_bootstrap, complaint_id, lambda types: len(types) >= 3, 10)
    types = [e["event_type"] for e in events]
    assert before["deadlines"][0]["state"] == "running"
    assert after["deadlines"][0]["state"] == "breached"
    assert types == ["ComplaintOpened", "ComplaintDeadlineBreached", "ComplaintAcknowledged"]
    assert events[1]["payload"]["due_date"] == "2026-01-12"
    assert acknowledged_late.json()["complaint"]["deadlines"][0]["met_in_time"] is False


async def test_the_same_action_delivered_twice_applies_once(
    service: RunningComplaints, kafka_bootstrap: str
) -> None:
    complaint_id = f"CMP-dup-{uuid.uuid4().hex[:8]}"
    assert (await service.act("open", complaint_id, JUNE_1)).status_code == 200
    record = action_record("acknowledge", complaint_id, "ack-once", london_at(JUNE_1, 11))
    value = json.dumps(record).encode()

    await produce(kafka_bootstrap, COMPLAINT_ACTIONS, [(complaint_id, value)] * 2)
    await wait_until(lambda: _status_is(service, complaint_id, "acknowledged"))
    again = await service.client.post(f"/v1/complaints/{complaint_id}/actions", json=record)

    events = await published(kafka_bootstrap, complaint_id, lambda types: len(types) >= 3, 5)
    assert again.json()["result"] == "duplicate"
    assert [e["event_type"] for e in events] == ["ComplaintOpened", "ComplaintAcknowledged"]


async def _status_is(service: RunningComplaints, complaint_id: str, status: str) -> bool:
    current: str = (await service.state(complaint_id))["status"]
    return current == status


async def test_a_refused_action_is_a_409_over_http_and_a_dead_letter_on_the_topic(
    service: RunningComplaints, kafka_bootstrap: str
) -> None:
    complaint_id = f"CMP-refused-{uuid.uuid4().hex[:8]}"
    assert (await service.act("open", complaint_id, JUNE_1)).status_code == 200

    over_http = await service.act("respond", complaint_id, JUNE_1)
    value = action_bytes("respond", complaint_id, "respond-early", london_at(JUNE_1))
    await produce(kafka_bootstrap, COMPLAINT_ACTIONS, [(complaint_id, value)])
    dead_letter_topic = dead_letter_twin(COMPLAINT_ACTIONS).name
    records = await read_topic(
        kafka_bootstrap, dead_letter_topic, until=lambda rs: any(r.value == value for r in rs)
    )

    assert over_http.status_code == 409
    assert over_http.json()["reason"] == "wrong_state"
    [letter] = [
        DeadLetter.from_record(r.value, r.key, r.headers) for r in records if r.value == value
    ]
    assert letter.error_type == "refused"
    assert letter.reason.startswith("wrong_state: cannot respond")
    assert letter.source.topic == COMPLAINT_ACTIONS.name
    state = await service.state(complaint_id)
    assert (state["status"], len(state["history"])) == ("received", 1)


async def test_an_invalid_action_is_a_422_naming_the_field(service: RunningComplaints) -> None:
    response = await service.client.post(
        "/v1/complaints/CMP-x/actions",
        json={
            "action": "extend",
            "action_id": "e1",
            "occurred_at": "2026-06-01T10:00:00+01:00",
            "days": 99,
            "reason": "r",
            "new_due_date": "2026-07-01",
        },
    )
    unknown = await service.act("acknowledge", "CMP-never-opened", JUNE_1)

    assert response.status_code == 422
    assert "exactly one of new_due_date and days" in response.text
    assert unknown.status_code == 404
    assert unknown.json()["reason"] == "unknown_complaint"


async def test_two_instances_side_by_side_fire_each_deadline_once(
    service: RunningComplaints, settings: ComplaintsSettings, kafka_bootstrap: str
) -> None:
    prefix = f"CMP-pair-{uuid.uuid4().hex[:6]}"
    complaint_ids = [f"{prefix}-{n}" for n in range(40)]
    async with running_service(settings, FakeClock(service.clock.now)) as other:
        for n, complaint_id in enumerate(complaint_ids):
            # Received before Christmas 2025: every acknowledgement is already overdue.
            instance = (service, other)[n % 2]
            assert (await instance.act("open", complaint_id, date(2025, 12, 1))).status_code == 200
        await asyncio.gather(
            *(i.running.scheduler.fire_due(i.clock()) for i in (service, other, service, other))
        )

        records = await read_topic(
            kafka_bootstrap,
            COMPLAINTS.name,
            until=lambda rs: _breaches(rs, prefix) >= len(complaint_ids),
        )
        # Both relays have published all they committed: a double firing would be there.
        await outbox_drained(settings.database_url, "complaints")
        records = await read_to_end(kafka_bootstrap, COMPLAINTS.name)

    breached = [
        json.loads(r.value)["complaint_id"]
        for r in records
        if r.key and r.key.startswith(prefix.encode()) and b"ComplaintDeadlineBreached" in r.value
    ]
    assert sorted(breached) == sorted(complaint_ids)


def _breaches(records: list[Record], prefix: str) -> int:
    return sum(
        1
        for r in records
        if r.key and r.key.startswith(prefix.encode()) and b"ComplaintDeadlineBreached" in r.value
    )


async def test_health_and_metrics_show_open_complaints_backlog_and_lag(
    service: RunningComplaints,
) -> None:
    complaint_id = f"CMP-metrics-{uuid.uuid4().hex[:8]}"
    await service.act("open", complaint_id, JUNE_1)

    async def metrics_ready() -> str | None:
        text = (await service.client.get("/metrics")).text
        return (
            text
            if 'complaints_open{procedure="corporate",stage="1",status="received"}' in text
            else None
        )

    await wait_until(metrics_ready)
    health = await service.client.get("/healthz")
    text = (await service.client.get("/metrics")).text

    assert health.status_code == 200
    for name in (
        "complaints_deadlines_due_today",
        "complaints_deadlines_breached_total",
        "outbox_backlog_events",
        'complaints_consumer_lag_records{topic="civicpulse.complaints.actions"}',
        'complaints_consumer_lag_records{topic="civicpulse.contacts"}',
    ):
        assert name in text


async def test_the_api_wants_a_key_and_acts_only_for_the_key_s_own_system(
    service: RunningComplaints,
) -> None:
    complaint_id = f"CMP-auth-{uuid.uuid4().hex[:8]}"
    record = action_record("open", complaint_id, "open", london_at(JUNE_1))
    url = f"/v1/complaints/{complaint_id}/actions"

    no_key = await service.client.post(url, json=record, headers={"X-API-Key": ""})
    wrong_key = await service.client.get(url.removesuffix("/actions"), headers={"X-API-Key": "x"})
    other_system = await service.client.post(url, json=record, headers={"X-API-Key": OTHER_KEY})
    without_source = {k: v for k, v in record.items() if k not in ("source", "complaint_id")}
    own_system = await service.client.post(url, json=without_source)

    assert (no_key.status_code, wrong_key.status_code) == (401, 401)
    assert other_system.status_code == 403
    assert own_system.status_code == 200
    assert own_system.json()["complaint"]["history"][0]["event_type"] == "ComplaintOpened"


async def test_a_closure_day_added_to_the_calendar_moves_open_deadlines_at_start_up(
    service: RunningComplaints, settings: ComplaintsSettings
) -> None:
    # Runs last: the restarted calendar's fingerprint becomes the database's.
    complaint_id = f"CMP-closure-{uuid.uuid4().hex[:8]}"
    await service.act("open", complaint_id, date(2027, 2, 24))  # acknowledge by 3 March
    before = await service.state(complaint_id)
    closed = settings.model_copy(update={"complaints_closure_days": [date(2027, 3, 1)]})

    async with running_service(closed, FakeClock(service.clock.now)) as restarted:
        after = await restarted.state(complaint_id)
        [timer] = await restarted.running.pool.fetch(
            "SELECT due_at FROM timers WHERE service = 'complaints' AND subject = $1",
            complaint_id,
        )

    assert before["deadlines"][0]["due_date"] == "2027-03-03"
    assert after["deadlines"][0]["due_date"] == "2027-03-04"
    assert timer["due_at"] == datetime(2027, 3, 5, tzinfo=UTC)
