"""Send a simulation plan through the interfaces other council systems use.

Contact records go to intake's raw topic or its HTTP API, keyed by contact so
that one contact's records stay in order; case actions go to the complaints
service's actions topic once their complaint exists (see `case_manager`).
"""

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from civicpulse.simulation.case_manager import CaseManager
from civicpulse.simulation.plan import Outgoing, Route
from shared.kafka import Kafka, producer_options
from shared.topics import CONTACTS_RAW

HTTP_BATCH = 100
HTTP_ATTEMPTS = 30
PROGRESS_EVERY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Target:
    kafka: Kafka  # address and credentials of the broker
    intake_url: str | None = None
    api_key: str | None = None


@dataclass
class SendReport:
    sent: Counter[str] = field(default_factory=Counter)
    http_refused: int = 0
    actions_unsent: int = 0  # their complaint never opened in time
    seconds: float = 0.0

    def describe(self) -> str:
        routes = ", ".join(f"{count} via {route}" for route, count in sorted(self.sent.items()))
        refused = f"; intake refused {self.http_refused} over HTTP" if self.http_refused else ""
        unsent = (
            f"; {self.actions_unsent} case actions unsent (complaint not opened)"
            if self.actions_unsent
            else ""
        )
        total = sum(self.sent.values())
        return f"sent {total} records in {self.seconds:.1f} s ({routes}){refused}{unsent}"


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
    plan: Sequence[Outgoing],
    target: Target,
    *,
    rate: float | None,
    quiet: bool = False,
    actions_grace_seconds: float = 60.0,
    on_sent: Callable[[Outgoing], None] | None = None,
) -> SendReport:
    """Send every contact record; case actions follow as their complaints open.

    `rate` is contact records per second (None: as fast as the system takes).
    `on_sent` hears of each record as it is handed over (a test's ledger).
    """
    records = [item for item in plan if item.route is not Route.CASE_ACTION]
    case_manager = CaseManager(
        target.kafka,
        (item for item in plan if item.route is Route.CASE_ACTION),
        on_sent=on_sent,
    )
    report = SendReport()
    progress = Progress(len(records), quiet=quiet)
    producer = AIOKafkaProducer(
        **producer_options(target.kafka),
        request_timeout_ms=120_000,  # ride out a broker restart rather than fail the send
    )
    await producer.start()
    await case_manager.start()
    contacts_sent = asyncio.Event()
    acting = asyncio.create_task(
        case_manager.run(producer, contacts_sent, grace_seconds=actions_grace_seconds)
    )
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await _send_records(records, target, producer, http, report, progress, rate, on_sent)
        contacts_sent.set()
        await acting
    finally:
        acting.cancel()
        await producer.stop()
    report.sent[Route.CASE_ACTION.value] = case_manager.sent
    report.actions_unsent = case_manager.waiting
    report.seconds = time.monotonic() - started
    return report


async def _send_records(
    records: Sequence[Outgoing],
    target: Target,
    producer: AIOKafkaProducer,
    http: httpx.AsyncClient,
    report: SendReport,
    progress: Progress,
    rate: float | None,
    on_sent: Callable[[Outgoing], None] | None,
) -> None:
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    http_batch: list[dict[str, Any]] = []
    for done, item in enumerate(records, start=1):
        route = _route(item, target)
        if route is Route.HTTP:
            http_batch.append({k: v for k, v in item.body.items() if k != "source"})
            if len(http_batch) >= HTTP_BATCH:
                report.http_refused += await _post(http, target, http_batch)
                http_batch = []
        else:
            value = json.dumps(item.body).encode()
            pending.append(await producer.send(CONTACTS_RAW.name, value, key=item.key.encode()))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending = []
        report.sent[route.value] += 1
        if on_sent is not None:
            on_sent(item)
        if rate:
            ahead = started + done / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        progress.update(done, item)
    if http_batch:
        report.http_refused += await _post(http, target, http_batch)
    await asyncio.gather(*pending)
    if records:
        progress.update(len(records), records[-1], final=True)


async def _post(http: httpx.AsyncClient, target: Target, batch: list[dict[str, Any]]) -> int:
    """POST a batch, retrying outages (safe: intake is idempotent); returns records refused."""
    for attempt in range(1, HTTP_ATTEMPTS + 1):
        try:
            response = await http.post(
                f"{target.intake_url}/v1/contacts",
                json=batch,
                headers={"X-API-Key": target.api_key or ""},
            )
        except httpx.TransportError as error:
            problem = repr(error)
        else:
            if response.status_code == 202:
                return 0
            if response.status_code < 500:
                print(f"\nsimulate: intake refused a batch: {response.text[:500]}", file=sys.stderr)
                return len(batch)
            problem = f"{response.status_code} {response.text[:200]}"
        print(f"\nsimulate: intake unavailable ({problem}); retry {attempt}", file=sys.stderr)
        await asyncio.sleep(min(attempt, 5))
    return len(batch)
