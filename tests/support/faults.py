"""The fault tests' machinery: a plan worth sending, residents who answer, reading back.

The ledger (civicpulse/simulation/ledger.py) writes down what is sent; this
module sends it through the system's own interfaces and reads back what the
system did, for `reconcile`.
"""

import asyncio
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from civicpulse.simulation.ledger import Answer, BadRecord, Ledger
from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation, Outgoing, Route
from civicpulse.simulation.reconcile import Observed
from civicpulse.simulation.residents import answers
from civicpulse.stack import RunningSystem
from services.complaints.domain import complaint_id_for_contact
from shared.dead_letters import DeadLetter
from shared.kafka import topic_partitions
from shared.topics import (
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    CONTACTS,
    CONTACTS_RAW,
    FEEDBACK,
    NOTIFICATIONS,
    dead_letter_twin,
)

LONDON = ZoneInfo("Europe/London")
ACTIONS_DEAD_LETTER = dead_letter_twin(COMPLAINT_ACTIONS)
SERVICES = ("intake", "complaints", "feedback", "metrics")


# -- what is sent --------------------------------------------------------------------


def fault_plan(seed: int, now: datetime, households: int) -> list[Outgoing]:
    """Four recent days of a council, plus complaints whose whole lives lie in the past."""
    simulation = CouncilSimulation(
        SCENARIOS["normal"], (now - timedelta(days=3)).date(), 4, households, seed=seed
    )
    return scripted(seed, now) + simulation.plan()


def scripted(seed: int, now: datetime) -> list[Outgoing]:
    """Every case action and every record type, at least once, at fixed moments."""

    def london_10am(days_ago: float) -> datetime:
        day = (now - timedelta(days=days_ago)).astimezone(LONDON).date()
        return datetime.combine(day, time(10), LONDON).astimezone(UTC)

    items: list[Outgoing] = []

    def contact(name: str, days_ago: float, area: str = "waste", **extra: Any) -> str:
        contact_id = f"LEDGER-{seed}-{name}"
        when = london_10am(days_ago)
        body = {
            "record_type": "contact_received",
            "idempotency_key": f"{contact_id}:received",
            "source": "simulator",
            "contact_id": contact_id,
            "occurred_at": when.isoformat(),
            "channel": "web",
            "service_area": area,
            "kind": "complaint",
            "customer_ref": f"CUST-L{seed}-{name}",
            **extra,
        }
        items.append(Outgoing(when, Route.RAW_TOPIC, contact_id, body))
        return contact_id

    def acts(contact_id: str, *steps: tuple[float, str, dict[str, Any]]) -> None:
        complaint_id = complaint_id_for_contact(contact_id)
        for number, (days_ago, name, fields) in enumerate(steps, start=1):
            body = {
                "action": name,
                "action_id": f"{complaint_id}:{number}",
                "complaint_id": complaint_id,
                "source": "case-manager",
                "occurred_at": london_10am(days_ago).isoformat(),
                **fields,
            }
            items.append(Outgoing(london_10am(days_ago), Route.CASE_ACTION, complaint_id, body))

    answer = {"outcome": "upheld", "learning_actions": []}
    acts(
        contact("closed", 20),
        (19, "acknowledge", {}),
        (12, "respond", {**answer, "responder": "officer-1"}),
        (1, "close", {}),
    )
    acts(
        contact("stage2", 40),
        (39, "acknowledge", {}),
        (33, "respond", {**answer, "responder": "officer-1"}),
        (30, "request_escalation", {}),
        (29, "acknowledge", {}),
        (5, "respond", {"outcome": "not_upheld", "learning_actions": [], "responder": "o-2"}),
        (2, "refer_to_ombudsman", {}),
    )
    acts(contact("withdrawn", 3), (1, "withdraw", {"reason": "resolved informally"}))
    acts(contact("twice", 4), (3, "acknowledge", {}), (2, "acknowledge", {}))  # refused
    acts(
        contact("adult", 20, area="adult_social_care"),
        (19, "acknowledge", {}),
        (10, "respond", {**answer, "responder": "officer-1"}),
        (9, "request_escalation", {}),  # refused: one local stage
    )
    for n in range(2):
        contact(f"overdue-{n}", 21)  # never acknowledged: the deadline must fire once
    # Acknowledged late: its breach comes from the timer or from the late action,
    # whichever arrives first, and nets one either way (issue 11).
    acts(contact("late", 20), (5, "acknowledge", {}))
    # Withdrawn after its acknowledgement was due: one breach, timer or withdrawal first.
    acts(contact("withdrawn-late", 21), (3, "withdraw", {"reason": "resolved informally"}))
    # Answered at stage 1 and never escalated: the window lapses, the service closes it.
    acts(
        contact("lapsed", 40),
        (39, "acknowledge", {}),
        (36, "respond", {**answer, "responder": "officer-1"}),
    )
    when = london_10am(0.5)
    items.append(
        Outgoing(
            when,
            Route.HTTP,
            f"LEDGER-{seed}-abandoned",
            {
                "record_type": "call_abandoned",
                "idempotency_key": f"LEDGER-{seed}-abandoned:abandoned",
                "source": "simulator",
                "contact_id": f"LEDGER-{seed}-abandoned",
                "occurred_at": when.isoformat(),
                "service_area": "planning",
                "wait_seconds": 95.0,
            },
        )
    )
    items.append(
        Outgoing(
            when,
            Route.RAW_TOPIC,
            f"LEDGER-{seed}-mystery",
            {
                "record_type": "mystery_shop_assessed",
                "idempotency_key": f"LEDGER-{seed}-mystery:assessed",
                "source": "simulator",
                "contact_id": f"LEDGER-{seed}-mystery",
                "occurred_at": when.isoformat(),
                "channel": "phone",
                "service_area": "housing",
                "scores": {"greeting": 80, "accuracy": 90},
            },
        )
    )
    return items


def bad_records(label: str) -> list[BadRecord]:
    """Records the system must dead-letter, each with the reason it must give."""
    return [
        BadRecord(
            CONTACTS_RAW.name,
            f'{{"record_type": "contact_received", "x": "{label}"'.encode(),
            "invalid_json",
        ),
        BadRecord(
            CONTACTS_RAW.name,
            json.dumps({"record_type": "telegram", "x": label}).encode(),
            "invalid_record",
        ),
        BadRecord(
            COMPLAINT_ACTIONS.name,
            json.dumps({"action": "shred", "x": label}).encode(),
            "invalid_action",
        ),
    ]


async def send_bad(bootstrap: str, ledger: Ledger, records: list[BadRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(record.topic, record.value, key=b"bad")
            ledger.bad_record(record)
    finally:
        await producer.stop()


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dead-letter"


# -- residents who answer ------------------------------------------------------------


@dataclass
class Residents:
    """Answer half the survey links sent (chosen by request id), writing each answer
    down; an answer that meets an outage is retried until feedback takes it."""

    bootstrap: str
    feedback_url: str
    ledger: Ledger
    handled: set[str] = field(default_factory=set)
    finish: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await topic_partitions(consumer, [NOTIFICATIONS.name])
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends: dict[Any, int] | None = None
            async with httpx.AsyncClient(base_url=self.feedback_url, timeout=10) as http:
                while True:
                    if self.finish.is_set() and ends is None:
                        ends = await consumer.end_offsets(partitions)
                    if ends is not None and not await _behind(consumer, ends):
                        return
                    batches = await consumer.getmany(timeout_ms=300)
                    for record in (r for batch in batches.values() for r in batch):
                        await self._answer(http, record.value or b"")
        finally:
            await consumer.stop()

    async def _answer(self, http: httpx.AsyncClient, value: bytes) -> None:
        message = json.loads(value)
        request_id = message["reference"]
        if request_id in self.handled:
            return
        self.handled.add(request_id)
        rng = random.Random(int(hashlib.sha256(request_id.encode()).hexdigest(), 16))
        if rng.random() >= 0.5:
            return
        form = answers(rng)
        token = message["personalisation"]["survey_link"].rstrip("/").rsplit("/", 1)[-1]
        retried = False
        for _ in range(120):
            try:
                response = await http.post(f"/v1/surveys/{token}", json=form)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                # 409 after a retry: the first attempt was taken before its answer was lost.
                if response.status_code == 201 or (retried and response.status_code == 409):
                    overall, ease = int(form["overall"]), int(form["ease"])  # type: ignore[call-overload]
                    self.ledger.answered(Answer(request_id, overall, ease))
                return
            retried = True
            await asyncio.sleep(0.5)
        raise AssertionError(f"feedback never took the answer to {request_id}")


# -- reading back --------------------------------------------------------------------


RawRecord = tuple[bytes | None, bytes, dict[str, bytes]]
Figures = dict[str, tuple[float | None, float | None]]


async def _behind(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
    """Whether any partition's position is still short of its end offset."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return True
    return False


async def read_all(bootstrap: str, topic: str) -> list[RawRecord]:
    """Every record of `topic` on this (fresh) cluster, up to its end offsets now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        partitions = await topic_partitions(consumer, [topic])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while await _behind(consumer, ends):
            batches = await consumer.getmany(timeout_ms=500)
            for tp, batch in batches.items():
                records += [
                    (r.key, r.value or b"", dict(r.headers)) for r in batch if r.offset < ends[tp]
                ]
    finally:
        await consumer.stop()
    return records


async def observe(system: RunningSystem, ledger: Ledger) -> Observed:
    bootstrap = system.infra.kafka_bootstrap

    async def events(topic: str) -> list[dict[str, Any]]:
        return [json.loads(value) for _, value, _ in await read_all(bootstrap, topic)]

    letters = []
    for source in (CONTACTS_RAW.name, COMPLAINT_ACTIONS.name):
        for key, value, headers in await read_all(bootstrap, dead_letter_topic(source)):
            letter = DeadLetter.from_record(value, key, headers)
            letters.append((source, letter.original, f"{letter.error_type} {letter.reason}"))
    return Observed(
        contact_events=await events(CONTACTS.name),
        complaint_events=await events(COMPLAINTS.name),
        feedback_events=await events(FEEDBACK.name),
        dead_letters=letters,
        **await kpis(system, ledger),
        complaint_states=await complaint_states(system, ledger),
    )


async def complaint_states(system: RunningSystem, ledger: Ledger) -> dict[str, str | None]:
    """Each complaint's status as the complaints service's API shows it."""
    ids = {
        complaint_id_for_contact(body["contact_id"])
        for body in ledger.contacts()
        if body.get("kind") == "complaint"
    }
    headers = {"X-API-Key": system.credentials.case_manager_key}
    states: dict[str, str | None] = {}
    async with httpx.AsyncClient(base_url=system.url("complaints"), timeout=10) as http:
        for complaint_id in sorted(ids):
            response = await http.get(f"/v1/complaints/{complaint_id}", headers=headers)
            states[complaint_id] = (
                response.json()["status"] if response.status_code == 200 else None
            )
    return states


async def kpis(system: RunningSystem, ledger: Ledger) -> dict[str, Any]:
    """Every KPI figure over the days sent, and the complaints open now."""
    today = datetime.now(UTC).astimezone(LONDON).date()
    async with httpx.AsyncClient(base_url=system.url("metrics"), timeout=10) as http:
        response = await http.get(
            "/v1/kpis",
            params={"from": ledger.first_day().isoformat(), "to": today.isoformat()},
            headers={"Authorization": f"Bearer {system.credentials.manager_token}"},
        )
    response.raise_for_status()
    body = response.json()
    figures: Figures = {row["kpi"]: (row["numerator"], row["denominator"]) for row in body["kpis"]}
    open_now = {(row["scope"], row["stage"]): row["count"] for row in body["open_complaints"]}
    return {"kpis": figures, "open_complaints": open_now}


async def outboxes_drained(database_url: str, within_seconds: float = 60) -> None:
    """Every service's outbox empty: all they committed is on its topic."""
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(int(within_seconds * 10)):
            if not await connection.fetchval("SELECT count(*) FROM outbox"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("outboxes still hold unpublished events")
    finally:
        await connection.close()


def table(rows: list[dict[str, object]]) -> Iterator[str]:
    """A Markdown table of the rows (same keys each)."""
    if not rows:
        return
    columns = list(rows[0])
    yield "| " + " | ".join(columns) + " |"
    yield "|" + "|".join(" --- " for _ in columns) + "|"
    for row in rows:
        yield "| " + " | ".join(str(row[c]) for c in columns) + " |"
