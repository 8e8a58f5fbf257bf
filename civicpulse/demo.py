"""Gentle demo traffic: contact records as a council's systems would send them.

A stand-in until the full council simulator exists: a steady trickle of
contacts over every channel (planning about half of all calls, some of them
transferred), abandoned calls, resolutions and the odd mystery shop, sent
half to the raw Kafka topic and half over intake's HTTP API.
"""

import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.topics import CONTACTS_RAW

SERVICE_AREAS = ("planning", "waste", "council_tax", "benefits", "housing", "highways", "licensing")
CHANNELS = ("phone", "phone", "phone", "web", "web", "email", "face_to_face")
KINDS = ("enquiry", "enquiry", "service_request", "service_request", "complaint", "compliment")


@dataclass(frozen=True, slots=True)
class DemoTarget:
    kafka_bootstrap: str
    intake_url: str | None
    api_key: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def contact_records(rng: random.Random) -> list[dict[str, Any]]:
    """The records one contact produces: received, maybe transferred, maybe resolved."""
    contact_id = f"DEMO-{uuid.uuid4().hex[:12]}"
    channel = rng.choice(CHANNELS)
    is_call = channel == "phone"
    area = "planning" if is_call and rng.random() < 0.5 else rng.choice(SERVICE_AREAS)
    base = {"contact_id": contact_id, "source": "demo", "occurred_at": _now()}
    if is_call and rng.random() < 0.08:
        return [
            {
                **base,
                "record_type": "call_abandoned",
                "idempotency_key": f"{contact_id}:abandoned",
                "service_area": area,
                "wait_seconds": round(rng.uniform(20, 400), 1),
            }
        ]
    transfers = rng.choice((0, 0, 0, 1, 2)) if is_call else 0
    kind = rng.choice(KINDS)
    resolved_first_time = (
        transfers == 0 and kind in ("enquiry", "service_request") and rng.random() < 0.7
    )
    received = {
        **base,
        "record_type": "contact_received",
        "idempotency_key": f"{contact_id}:received",
        "channel": channel,
        "service_area": area,
        "kind": kind,
        "customer_ref": f"CUST-{rng.randint(1, 5000):05d}",
        "answered_by_team": area if transfers == 0 else "reception",
        "transfers": transfers,
        "resolved_at_first_contact": resolved_first_time,
        **({"wait_seconds": round(rng.uniform(0, 120), 1)} if is_call else {}),
    }
    records = [received]
    if transfers:
        records.append(
            {
                **base,
                "record_type": "contact_transferred",
                "idempotency_key": f"{contact_id}:transferred",
                "from_team": "reception",
                "to_team": area,
                "service_area": area,
            }
        )
    if kind in ("enquiry", "service_request") and (resolved_first_time or rng.random() < 0.6):
        records.append(
            {
                **base,
                "record_type": "contact_resolved",
                "idempotency_key": f"{contact_id}:resolved",
                "channel": channel,
                "service_area": area,
                "kind": kind,
                "customer_ref": received["customer_ref"],
            }
        )
    return records


async def run_demo(target: DemoTarget, *, rate: float, count: int | None, seed: int | None) -> int:
    """Send contacts at `rate` per second until `count` are sent (or forever)."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    producer = AIOKafkaProducer(bootstrap_servers=target.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            while count is None or sent < count:
                records = contact_records(rng)
                if target.intake_url and target.api_key and rng.random() < 0.5:
                    await _post(http, target, records)
                else:
                    for record in records:
                        await producer.send_and_wait(
                            CONTACTS_RAW.name,
                            json.dumps(record).encode(),
                            key=record["contact_id"].encode(),
                        )
                sent += 1
                if sent % 50 == 0:
                    elapsed = time.monotonic() - started
                    print(f"demo: {sent} contacts sent ({sent / elapsed:.1f}/s)", file=sys.stderr)
                await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()
    return sent


async def _post(http: httpx.AsyncClient, target: DemoTarget, records: list[dict[str, Any]]) -> None:
    body = [{k: v for k, v in record.items() if k != "source"} for record in records]
    response = await http.post(
        f"{target.intake_url}/v1/contacts", json=body, headers={"X-API-Key": target.api_key or ""}
    )
    if response.status_code != 202:
        print(f"demo: intake answered {response.status_code}: {response.text}", file=sys.stderr)
