"""Send a simulation plan through the interfaces other council systems use.

Contact records go to intake's raw topic or its HTTP API, case actions to the
complaints service's actions topic, each keyed by its subject so that one
case's records stay in order.
"""

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from civicpulse.simulation.plan import Outgoing, Route
from shared.topics import COMPLAINT_ACTIONS, CONTACTS_RAW

HTTP_BATCH = 100
PROGRESS_EVERY_SECONDS = 2.0
TOPIC_OF_ROUTE = {Route.RAW_TOPIC: CONTACTS_RAW.name, Route.CASE_ACTION: COMPLAINT_ACTIONS.name}


@dataclass(frozen=True, slots=True)
class Target:
    kafka_bootstrap: str
    intake_url: str | None = None
    api_key: str | None = None


@dataclass
class SendReport:
    sent: Counter[str] = field(default_factory=Counter)
    http_refused: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        routes = ", ".join(f"{count} via {route}" for route, count in sorted(self.sent.items()))
        refused = f"; intake refused {self.http_refused} over HTTP" if self.http_refused else ""
        return f"sent {sum(self.sent.values())} records in {self.seconds:.1f} s ({routes}){refused}"


class Progress:
    """A progress line on stderr, at most every two seconds."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self._total = total
        self._quiet = quiet
        self._started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, item: Outgoing, *, final: bool = False) -> None:
        now = time.monotonic()
        if self._quiet or (not final and now - self._last < PROGRESS_EVERY_SECONDS):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        share = done / self._total if self._total else 1.0
        bar = "#" * int(share * 30)
        print(
            f"\rsimulate [{bar:<30}] {done}/{self._total} records, {done / elapsed:,.0f}/s, "
            f"simulated {item.at:%Y-%m-%d}",
            end="\n" if final else "",
            file=sys.stderr,
            flush=True,
        )


def _route(item: Outgoing, target: Target) -> Route:
    # Without an intake URL, HTTP-bound records take the raw topic instead.
    if item.route is Route.HTTP and not target.intake_url:
        return Route.RAW_TOPIC
    return item.route


async def send_plan(
    plan: Sequence[Outgoing], target: Target, *, rate: float | None, quiet: bool = False
) -> SendReport:
    """Send every item; `rate` is records per second (None: as fast as the system takes)."""
    report = SendReport()
    progress = Progress(len(plan), quiet=quiet)
    producer = AIOKafkaProducer(
        bootstrap_servers=target.kafka_bootstrap, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    http_batch: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for done, item in enumerate(plan, start=1):
                route = _route(item, target)
                if route is Route.HTTP:
                    http_batch.append({k: v for k, v in item.body.items() if k != "source"})
                    if len(http_batch) >= HTTP_BATCH:
                        report.http_refused += await _post(http, target, http_batch)
                        http_batch = []
                else:
                    value = json.dumps(item.body).encode()
                    sent = await producer.send(TOPIC_OF_ROUTE[route], value, key=item.key.encode())
                    pending.append(sent)
                report.sent[route.value] += 1
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending = []
                if rate:
                    ahead = started + done / rate - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                progress.update(done, item)
            if http_batch:
                report.http_refused += await _post(http, target, http_batch)
            await asyncio.gather(*pending)
            if plan:
                progress.update(len(plan), plan[-1], final=True)
    finally:
        await producer.stop()
    report.seconds = time.monotonic() - started
    return report


async def _post(http: httpx.AsyncClient, target: Target, batch: list[dict[str, Any]]) -> int:
    response = await http.post(
        f"{target.intake_url}/v1/contacts", json=batch, headers={"X-API-Key": target.api_key or ""}
    )
    if response.status_code == 202:
        return 0
    print(
        f"\nsimulate: intake answered {response.status_code}: {response.text[:500]}",
        file=sys.stderr,
    )
    return len(batch)
