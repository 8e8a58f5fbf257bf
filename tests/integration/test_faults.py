"""Faults on the real stack: nothing accepted is lost, nothing takes effect twice.

The whole system runs as operators run it (every service a process, on its
own Kafka and PostgreSQL, which these tests stop and start) while the council
simulator publishes. After each fault: every contact is counted exactly once
in the KPIs, every complaint deadline has fired at most once, no satisfaction
request went out twice, and the bad records sent alongside are dead-lettered
with their reason. Each test prints how many records crossed its fault.
"""

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from civicpulse import infra
from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation, Outgoing, Route
from civicpulse.simulation.residents import FeedbackTarget, register_contact_routes
from civicpulse.simulation.send import SendReport, Target, send_plan
from civicpulse.stack import Credentials, RunningSystem, start_services
from services.complaints.domain import complaint_id_for_contact
from shared.dead_letters import DeadLetter
from shared.topics import COMPLAINTS, CONTACTS_RAW, CONTACTS_RAW_DEAD_LETTER, FEEDBACK
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration
HOUSEHOLDS = 20_000
RATE = 60.0  # records per second: the send lasts long enough for the fault to land in it
FAULT_AFTER_SECONDS = 3.0
Fault = Callable[[RunningSystem], Awaitable[None]]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    # Its own infrastructure, whatever the session uses: these tests stop it.
    scratch = tmp_path_factory.mktemp("faults")
    stack = infra.infra_up(scratch / "infra", quiet=True)
    running: RunningSystem | None = None
    try:
        running = start_services(stack, scratch / "logs", Credentials())
        yield running
    finally:
        if running is not None:
            running.stop()
        infra.infra_down(scratch / "infra", quiet=True)


def days_ago(days: int) -> date:
    # Recent days: older resolutions are past surveying, and surveys are checked too.
    return date.today() - timedelta(days=days)


OVERDUE_COMPLAINTS = 5


def simulated_plan(start: date, seed: int) -> list[Outgoing]:
    """Three recent days of a council, plus complaints nobody acknowledged in time."""
    simulation = CouncilSimulation(SCENARIOS["normal"], start, 3, households=HOUSEHOLDS, seed=seed)
    return overdue_complaints(seed) + simulation.plan()


def overdue_complaints(seed: int) -> list[Outgoing]:
    # Received three weeks ago and never acknowledged: each acknowledgement
    # deadline fires while the fault happens, and must fire once.
    received = datetime.now(UTC) - timedelta(days=21)
    return [
        Outgoing(
            received,
            Route.RAW_TOPIC,
            contact_id,
            {
                "record_type": "contact_received",
                "idempotency_key": f"{contact_id}:received",
                "source": "faults",
                "contact_id": contact_id,
                "occurred_at": received.isoformat(),
                "channel": "web",
                "service_area": "waste",
                "kind": "complaint",
                "customer_ref": f"CUST-OVERDUE-{n}",
            },
        )
        for n in range(OVERDUE_COMPLAINTS)
        for contact_id in [f"OVERDUE-{seed}-{n}"]
    ]


async def restart_kafka(system: RunningSystem) -> None:
    await asyncio.to_thread(infra.stop_component, "kafka", system.infra.run_dir, quiet=True)
    await asyncio.sleep(2)
    await asyncio.to_thread(infra.infra_up, system.infra.run_dir, quiet=True)


async def restart_postgres(system: RunningSystem) -> None:
    await asyncio.to_thread(infra.stop_component, "postgres", system.infra.run_dir, quiet=True)
    await asyncio.sleep(2)
    await asyncio.to_thread(infra.infra_up, system.infra.run_dir, quiet=True)


async def kill_every_service(system: RunningSystem) -> None:
    for name in system.services:
        await asyncio.to_thread(system.restart, name, kill=True)


async def run_with_fault(
    system: RunningSystem, plan: list[Outgoing], fault: Fault, bad_records: list[bytes]
) -> tuple[SendReport, float, float]:
    """Send the plan, inject bad records and the fault part-way through; return timings."""
    target = Target(
        system.infra.kafka_bootstrap, system.url("intake"), system.credentials.intake_key
    )
    feedback = FeedbackTarget(system.url("feedback"), system.credentials.crm_key)
    customers = {ref for item in plan if (ref := item.body.get("customer_ref"))}
    await register_contact_routes(feedback, customers, seed=1, share=1.0)
    sending = asyncio.create_task(send_plan(plan, target, rate=RATE, quiet=True))
    await asyncio.sleep(FAULT_AFTER_SECONDS)
    await produce_raw(system.infra.kafka_bootstrap, bad_records)
    fault_started = time.monotonic()
    await fault(system)
    fault_ended = time.monotonic()
    return await sending, fault_started, fault_ended


async def produce_raw(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(CONTACTS_RAW.name, value, key=b"bad")
    finally:
        await producer.stop()


async def contacts_counted(system: RunningSystem, first: date, last: date) -> float | None:
    async with httpx.AsyncClient(base_url=system.url("metrics"), timeout=10) as http:
        response = await http.get(
            "/v1/kpis",
            params={"from": first.isoformat(), "to": last.isoformat()},
            headers={"Authorization": f"Bearer {system.credentials.manager_token}"},
        )
    response.raise_for_status()
    rows = {row["kpi"]: row for row in response.json()["kpis"]}
    value: float | None = rows["contacts_received"]["numerator"]
    return value


async def settled_count(system: RunningSystem, first: date, last: date, expected: int) -> float:
    """The KPI once it reaches `expected` (or what it is after two minutes)."""
    deadline = time.monotonic() + 120
    counted: float | None = None
    while time.monotonic() < deadline:
        counted = await contacts_counted(system, first, last)
        if counted == expected:
            await asyncio.sleep(3)  # and it stays there: nothing counted twice late
            return await contacts_counted(system, first, last) or 0.0
        await asyncio.sleep(1)
    return counted or 0.0


def distinct_ids_per_key(
    events: list[dict[str, object]], key: Callable[[dict[str, object]], str]
) -> dict[str, int]:
    ids: dict[str, set[object]] = defaultdict(set)
    for event in events:
        ids[key(event)].add(event["event_id"])
    return {k: len(v) for k, v in ids.items()}


async def check_effects(
    system: RunningSystem, plan: list[Outgoing], start: date, bad_records: list[bytes]
) -> dict[str, int]:
    bootstrap = system.infra.kafka_bootstrap
    expected = sum(
        item.body.get("record_type") == "contact_received" and start <= item.at.date()
        for item in plan
    )  # the overdue complaints were received before the days counted
    counted = await settled_count(system, start, start + timedelta(days=2), expected)
    assert counted == expected, f"{counted} contacts counted for {expected} sent"

    complaint_ids = {item.body["complaint_id"] for item in plan if "complaint_id" in item.body}
    complaint_ids |= {
        complaint_id_for_contact(item.key) for item in plan if item.key.startswith("OVERDUE-")
    }
    complaint_events = [
        json.loads(r.value)
        for r in await read_topic(
            bootstrap, COMPLAINTS.name, until=lambda _: False, within_seconds=3
        )
    ]
    breaches = [
        e
        for e in complaint_events
        if e["event_type"] == "ComplaintDeadlineBreached" and e["complaint_id"] in complaint_ids
    ]
    fired = distinct_ids_per_key(
        breaches,
        lambda e: f"{e['complaint_id']}/{e['payload']['stage']}/{e['payload']['deadline']}",  # type: ignore[index]
    )
    assert len(fired) >= OVERDUE_COMPLAINTS, "the overdue acknowledgements did not fire"
    assert all(count == 1 for count in fired.values()), "a deadline fired twice"

    contact_ids = {item.body["contact_id"] for item in plan if "contact_id" in item.body}
    feedback_events = [
        json.loads(r.value)
        for r in await read_topic(bootstrap, FEEDBACK.name, until=lambda _: False, within_seconds=3)
    ]
    requests = [
        e
        for e in feedback_events
        if e["event_type"] == "SatisfactionRequested"
        and (e["payload"]["case_id"] in contact_ids or e["payload"]["case_id"] in complaint_ids)
    ]
    requested = distinct_ids_per_key(
        requests,
        lambda e: f"{e['payload']['case_type']}/{e['payload']['case_id']}",  # type: ignore[index]
    )
    assert requested, "no case was surveyed: the check would prove nothing"
    assert all(count == 1 for count in requested.values()), "a case was surveyed twice"

    letters = [
        DeadLetter.from_record(r.value, r.key, r.headers)
        for r in await read_topic(
            bootstrap, CONTACTS_RAW_DEAD_LETTER.name, until=lambda _: False, within_seconds=3
        )
    ]
    dead = [letter for letter in letters if letter.original in bad_records]
    assert {letter.original for letter in dead} == set(bad_records)
    assert all(letter.reason for letter in dead)
    return {"contacts": expected, "breaches": len(fired), "surveys": len(requested)}


def bad_records_for(label: str) -> list[bytes]:
    return [
        f'{{"record_type": "contact_received", "label": "{label}"'.encode(),  # not JSON
        json.dumps({"record_type": "telegram", "label": label}).encode(),
    ]


def report(
    label: str, sent: SendReport, started: float, ended: float, effects: dict[str, int]
) -> None:
    print(
        f"\n{label}: fault lasted {ended - started:.1f} s; {sum(sent.sent.values())} records "
        f"sent across it ({dict(sent.sent)}); {effects['contacts']} contacts counted once, "
        f"{effects['breaches']} deadlines fired once, {effects['surveys']} cases surveyed once"
    )


@pytest.mark.parametrize(
    ("fault", "label", "days_back", "seed"),
    [
        pytest.param(restart_kafka, "broker restart", 9, 101, id="broker-restart"),
        pytest.param(kill_every_service, "SIGKILL of every service", 6, 102, id="sigkill"),
        pytest.param(restart_postgres, "PostgreSQL restart", 3, 103, id="postgres-restart"),
    ],
)
async def test_a_fault_while_the_simulator_publishes_loses_and_doubles_nothing(
    system: RunningSystem, fault: Fault, label: str, days_back: int, seed: int
) -> None:
    start = days_ago(days_back)
    plan = simulated_plan(start, seed=seed)
    bad = bad_records_for(label)

    sent, began, ended = await run_with_fault(system, plan, fault, bad)

    assert sent.http_refused == 0
    effects = await check_effects(system, plan, start, bad)
    report(label, sent, began, ended, effects)
