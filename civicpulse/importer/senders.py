"""Where prepared rows go: intake over HTTP, intake's raw topic, or feedback's contact routes.

Every send is safe to repeat: records carry deterministic idempotency keys
(intake accepts each once) and a contact route is a PUT that replaces the
customer's route. So a failed request is simply retried.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from aiokafka import AIOKafkaProducer

from civicpulse.importer.transform import CellError, Prepared, Refused
from shared.api_keys import HEADER
from shared.topics import CONTACTS_RAW

ATTEMPTS = 5
FIRST_RETRY_SECONDS = 0.5  # doubled after each failure: 7.5 s in all
ROUTE_CONCURRENCY = 8


class SendError(RuntimeError):
    """The target cannot take the import at all (bad key, unreachable, a refused body)."""


@dataclass
class Sent:
    """What became of one batch: `delivered` counts records the target now holds."""

    delivered: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: list[Refused] = field(default_factory=list)


class Sender(Protocol):
    async def send(self, batch: Sequence[Prepared]) -> Sent: ...


async def _with_retries(request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """The response, retrying transport errors and 5xx with backoff; others are answers."""
    delay = FIRST_RETRY_SECONDS
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = await request()
        except httpx.TransportError as error:
            if attempt == ATTEMPTS:
                raise SendError(f"cannot reach {error.request.url}: {error!r}") from error
        else:
            if response.status_code in (401, 403):
                raise SendError(f"{response.request.url}: the API key was refused")
            if response.status_code < 500 or attempt == ATTEMPTS:
                return response
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise SendError(
            f"{response.request.url} answered {response.status_code}, not JSON"
        ) from error


class IntakeHttpSender:
    """`POST /v1/contacts` in batches.

    Intake takes a batch all or nothing: a 422 (or a 409 for reused keys) lists
    the failing records by position. Those rows are refused and the rest are
    sent again, until intake accepts what remains.
    """

    def __init__(self, client: httpx.AsyncClient, api_key: str) -> None:
        self._client = client
        self._headers = {HEADER: api_key}

    async def send(self, batch: Sequence[Prepared]) -> Sent:
        sent = Sent()
        pending = list(batch)
        while pending:
            body = [item.document for item in pending]
            response = await _with_retries(
                lambda body=body: self._client.post(  # type: ignore[misc]
                    "/v1/contacts", json=body, headers=self._headers
                )
            )
            if response.status_code == 202:
                answer = _json(response)
                sent.accepted += answer["accepted"]
                sent.duplicates += answer["duplicates"]
                sent.delivered += len(pending)
                return sent
            if response.status_code not in (409, 422):
                raise SendError(f"intake answered {response.status_code}: {response.text[:500]}")
            failing = self._failing(_json(response), pending)
            sent.refused += failing.values()
            pending = [item for position, item in enumerate(pending) if position not in failing]
        return sent

    def _failing(self, answer: Any, pending: Sequence[Prepared]) -> dict[int, Refused]:
        errors: dict[int, list[CellError]] = {}
        for item in answer.get("detail", []) if isinstance(answer, dict) else []:
            position = item.get("record")
            if not isinstance(position, int) or not 0 <= position < len(pending):
                raise SendError(f"intake refused the request itself: {item}")
            name = str(item.get("field", ""))
            errors.setdefault(position, []).append(
                CellError(
                    pending[position].column_of(name),
                    name,
                    str(item["reason"]),
                    str(item["message"]),
                )
            )
        if not errors:
            raise SendError(f"intake refused the batch without naming a record: {answer}")
        return {i: Refused(pending[i].row, tuple(found)) for i, found in errors.items()}


class RawTopicSender:
    """Records on `civicpulse.contacts.raw`, keyed by contact id so a contact's stay in order.

    Intake answers nothing on the topic (refusals become dead letters there), so
    the importer checks every record with intake's rules before sending it.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, batch: Sequence[Prepared]) -> Sent:
        deliveries = [
            await self._producer.send(
                CONTACTS_RAW.name,
                json.dumps(item.document).encode(),
                key=str(item.document["contact_id"]).encode(),
            )
            for item in batch
        ]
        await asyncio.gather(*deliveries)
        return Sent(delivered=len(batch))


class ContactRouteSender:
    """`PUT /v1/customers/{customer_ref}/contact-route` on feedback, a few at a time."""

    def __init__(self, client: httpx.AsyncClient, api_key: str) -> None:
        self._client = client
        self._headers = {HEADER: api_key}
        self._slots = asyncio.Semaphore(ROUTE_CONCURRENCY)

    async def send(self, batch: Sequence[Prepared]) -> Sent:
        sent = Sent()
        for refused in await asyncio.gather(*(self._put(item) for item in batch)):
            if refused is None:
                sent.delivered += 1
                sent.accepted += 1
            else:
                sent.refused.append(refused)
        return sent

    async def _put(self, item: Prepared) -> Refused | None:
        route = dict(item.document)
        path = f"/v1/customers/{quote(route.pop('customer_ref'), safe='')}/contact-route"
        async with self._slots:
            response = await _with_retries(
                lambda: self._client.put(path, json=route, headers=self._headers)
            )
        if response.status_code == 204:
            return None
        if response.status_code not in (404, 422):
            raise SendError(f"feedback answered {response.status_code}: {response.text[:500]}")
        errors = []
        answer = _json(response) if response.status_code == 422 else {}
        detail = answer.get("detail") if isinstance(answer, dict) else None
        for error in detail if isinstance(detail, list) else []:
            location = [str(part) for part in error.get("loc", []) if part not in ("body", "path")]
            name = ".".join(location)
            message = str(error.get("msg", "refused"))
            errors.append(CellError(item.column_of(name), name, "invalid_record", message))
        if not errors:
            errors.append(
                CellError(
                    item.column_of("customer_ref"),
                    "customer_ref",
                    "invalid_record",
                    f"feedback answered {response.status_code}",
                )
            )
        return Refused(item.row, tuple(errors))
