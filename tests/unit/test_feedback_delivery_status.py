"""Notify's delivery-status callback: the receipt's shape, the bearer token, the decisions."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Self

import httpx
import pytest
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from services.feedback.delivery_status import (
    DeliveryReceipt,
    DeliveryStatusHandler,
    DeliveryStatusMetrics,
    ReceiptOutcome,
    notify_callback_token,
)

TOKEN = "a-callback-token-for-the-tests-0123456789"
# Notify's documented callback body, fields we do not use included.
RECEIPT: dict[str, Any] = {
    "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
    "reference": "req-1",
    "to": "resident@example.org",
    "status": "delivered",
    "created_at": "2026-12-01T10:00:00.000000Z",
    "completed_at": "2026-12-01T10:00:05.000000Z",
    "sent_at": "2026-12-01T10:00:01.000000Z",
    "notification_type": "email",
    "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
    "template_version": 1,
    "provider_response": None,
}


def test_notifys_callback_body_is_read_and_its_status_time_is_the_completion() -> None:
    receipt = DeliveryReceipt.model_validate(RECEIPT)

    assert (receipt.reference, receipt.status) == ("req-1", "delivered")
    assert receipt.status_at == datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    pending = DeliveryReceipt.model_validate({**RECEIPT, "completed_at": None})
    assert pending.status_at == datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"id": "not-a-uuid"}, "id"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": "2026-12-01T10:00:00"}, "created_at"),  # no time zone
        ({"completed_at": "0001-01-01T00:00:00+23:59"}, "completed_at"),  # before year 1 in UTC
        ({"notification_type": "pigeon"}, "notification_type"),
        ({"reference": "x" * 500}, "reference"),
        ({"template_version": 10**30}, "template_version"),
    ],
)
def test_a_bad_receipt_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        DeliveryReceipt.model_validate({**RECEIPT, **change})

    assert [error["loc"][0] for error in invalid.value.errors()] == [field]


def token_app(token: SecretStr | None) -> FastAPI:
    app = FastAPI()
    caller = notify_callback_token(token)

    @app.post("/callback")
    async def callback(_: Annotated[None, Depends(caller)]) -> dict[str, bool]:
        return {"accepted": True}

    return app


@pytest.mark.parametrize(
    ("configured", "header", "expected"),
    [
        (TOKEN, f"Bearer {TOKEN}", 200),
        (TOKEN, None, 401),
        (TOKEN, "Bearer wrong-token", 401),
        (TOKEN, f"Bearer {TOKEN}x", 401),
        (TOKEN, f"Basic {TOKEN}", 401),
        (TOKEN, b"Bearer \xe9-latin-1", 401),
        (None, f"Bearer {TOKEN}", 401),  # nothing configured: nothing accepted
    ],
)
async def test_only_the_configured_bearer_token_is_accepted(
    configured: str | None, header: str | bytes | None, expected: int
) -> None:
    app = token_app(None if configured is None else SecretStr(configured))
    raw = header.encode("latin-1") if isinstance(header, str) else header
    headers = {} if raw is None else {b"Authorization": raw}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://feedback"
    ) as client:
        response = await client.post("/callback", headers=headers)

    assert response.status_code == expected
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


class ScriptedStore:
    """Answers as the real store would for one scripted case; records what was asked."""

    def __init__(self, *, known: bool, changed: bool) -> None:
        self.known = known
        self.changed = changed
        self.marked: list[tuple[str, str]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        yield self

    async def request_exists(self, reference: str) -> bool:
        return self.known

    async def record_status(self, *_: object) -> bool:
        return self.changed

    async def mark_route_bad(
        self, reference: str, notification_type: str, created_at: datetime, now: datetime
    ) -> bool:
        self.marked.append((reference, notification_type))
        return True


@pytest.mark.parametrize(
    ("status", "known", "changed", "outcome", "marked"),
    [
        ("permanent-failure", True, True, ReceiptOutcome.RECORDED, [("req-1", "email")]),
        ("permanent-failure", True, False, ReceiptOutcome.KEPT_LATEST, []),
        ("permanent-failure", False, False, ReceiptOutcome.UNKNOWN_REFERENCE, []),
        ("temporary-failure", True, True, ReceiptOutcome.RECORDED, []),
        ("delivered", True, True, ReceiptOutcome.RECORDED, []),
    ],
)
async def test_only_a_newly_recorded_permanent_failure_marks_the_route_bad(
    status: str, known: bool, changed: bool, outcome: ReceiptOutcome, marked: list[Any]
) -> None:
    """Issue 12, item 8: "a permanent failure marks the contact route bad"."""
    store = ScriptedStore(known=known, changed=changed)
    registry = CollectorRegistry()
    handler = DeliveryStatusHandler(
        store,  # type: ignore[arg-type]
        metrics=DeliveryStatusMetrics(registry),
        clock=lambda: datetime(2026, 12, 1, 11, tzinfo=UTC),
    )
    receipt = DeliveryReceipt.model_validate({**RECEIPT, "status": status})

    assert await handler.record("req-1", receipt) is outcome
    assert store.marked == marked
    counted = registry.get_sample_value(
        "feedback_notify_delivery_statuses_total", {"status": status, "outcome": outcome.value}
    )
    assert counted == 1
