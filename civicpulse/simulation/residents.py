"""The simulated residents' side: contact routes from the CRM, and survey answers.

The CRM tells the feedback service how to reach most customers (some gave no
email or mobile); residents answer a share of the survey links that reach
them. Answers are read from `civicpulse.notifications`, where a real council's
sender would hand them to GOV.UK Notify, so the link travels exactly as it
would to a resident's phone.
"""

import asyncio
import json
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaConsumer

from shared.kafka import Kafka, kafka_client_options, stop_consumer
from shared.topics import NOTIFICATIONS

ROUTE_SHARE = 0.75  # customers with an email or mobile on the CRM
RESPONSE_RATE = 0.3


@dataclass(frozen=True, slots=True)
class FeedbackTarget:
    url: str
    api_key: str


async def register_contact_routes(
    target: FeedbackTarget, customer_refs: Iterable[str], *, seed: int, share: float = ROUTE_SHARE
) -> int:
    """Give the feedback service a contact route for `share` of the customers."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    chosen = [ref for ref in sorted(set(customer_refs)) if rng.random() < share]
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as http:

        async def register(ref: str) -> None:
            async with limit:
                response = await http.put(
                    f"/v1/customers/{ref}/contact-route",
                    json={"email": f"{ref.lower()}@residents.example.org"},
                    headers={"X-API-Key": target.api_key},
                )
                response.raise_for_status()

        await asyncio.gather(*(register(ref) for ref in chosen))
    return len(chosen)


def answers(rng: random.Random) -> dict[str, object]:
    """One resident's answers: mostly satisfied, ease following satisfaction."""
    overall = rng.choices((1, 2, 3, 4, 5), weights=(5, 8, 17, 40, 30))[0]
    ease = max(1, min(7, overall + rng.choice((1, 2, 2, 3)) - 1))
    resolved = "yes" if overall >= 4 else rng.choice(("partly", "no", "yes"))
    return {"overall": overall, "ease": ease, "resolved": resolved}


async def answer_surveys(
    kafka: Kafka,
    feedback_url: str,
    *,
    seed: int,
    stop: asyncio.Event,
    response_rate: float = RESPONSE_RATE,
) -> int:
    """Answer `response_rate` of the survey links sent, until `stop` is set."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    consumer = AIOKafkaConsumer(
        NOTIFICATIONS.name,
        **kafka_client_options(kafka),
        group_id=f"simulated-residents-{seed}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    answered = 0
    try:
        async with httpx.AsyncClient(base_url=feedback_url, timeout=30) as http:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                for record in (r for batch in batches.values() for r in batch):
                    link = _survey_link(record.value)
                    if link is None or rng.random() >= response_rate:
                        continue
                    token = link.rstrip("/").rsplit("/", 1)[-1]
                    response = await http.post(f"/v1/surveys/{token}", json=answers(rng))
                    if response.status_code == 201:
                        answered += 1
                    elif response.status_code not in (409, 410):  # answered or expired
                        print(f"residents: survey answer refused: {response.text}", file=sys.stderr)
    finally:
        await stop_consumer(consumer)
    return answered


def _survey_link(value: bytes | None) -> str | None:
    try:
        message = json.loads(value or b"")
        link = message["personalisation"]["survey_link"]
    except (ValueError, KeyError, TypeError):
        return None
    return link if isinstance(link, str) else None
