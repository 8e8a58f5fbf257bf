"""GOV.UK Notify's delivery-status callbacks: what happened to each message sent.

Notify POSTs one JSON receipt per notification when it reaches a final state,
with the bearer token the council set on its callback
(`CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN`). `reference` is our request id.
The latest status is kept per request, whatever order receipts come in
(`DeliveryStore.record_status`); a permanent failure marks the address bad,
so nothing more goes to it until the CRM puts a different one.
"""

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator

from services.feedback.delivery_store import PERMANENT_FAILURE, DeliveryStore
from shared.events.vocabulary import Identifier

DeliveryStatus = Literal["delivered", "permanent-failure", "temporary-failure", "technical-failure"]
CALLBACK_STATUSES: tuple[str, ...] = DeliveryStatus.__args__  # type: ignore[attr-defined]


class DeliveryReceipt(BaseModel):
    """The body of a Notify delivery-status callback; fields Notify adds later are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID = Field(description="Notify's id of the notification.")
    reference: Identifier | None = Field(
        description="The reference given when sending: the survey request id."
    )
    to: Annotated[str, Field(max_length=320)] | None = Field(
        default=None, description="The address it went to. Read, never stored."
    )
    status: DeliveryStatus
    created_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    notification_type: Literal["email", "sms", "letter"]
    template_id: UUID | None = None
    template_version: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("created_at", "completed_at", "sent_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:  # year 1 at +23:59, year 9999 at -23:59
            raise ValueError("a time outside the years 1 to 9999 in UTC") from None

    @property
    def status_at(self) -> datetime:
        """When the status was reached: completed, else sent, else created."""
        return self.completed_at or self.sent_at or self.created_at


class ReceiptOutcome(StrEnum):
    RECORDED = "recorded"  # the request's latest status now
    KEPT_LATEST = "kept_latest"  # a repeat, or older than the status already held
    UNKNOWN_REFERENCE = "unknown_reference"


class DeliveryStatusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.receipts = Counter(
            "feedback_notify_delivery_statuses",
            "Notify delivery-status callbacks accepted, by status and outcome "
            "(recorded, kept_latest, unknown_reference).",
            ["status", "outcome"],
            registry=registry,
        )
        self.routes_marked_bad = Counter(
            "feedback_contact_routes_marked_bad",
            "Addresses marked bad after a permanent delivery failure, by notification type.",
            ["notification_type"],
            registry=registry,
        )


class DeliveryStatusHandler:
    def __init__(
        self,
        store: DeliveryStore,
        *,
        metrics: DeliveryStatusMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    async def record(self, reference: str, receipt: DeliveryReceipt) -> ReceiptOutcome:
        """Keep the receipt's status if it is the request's latest; mark a failed route bad."""
        now = self._clock()
        marked = False
        async with self._store.transaction() as store:
            if not await store.request_exists(reference):
                outcome = ReceiptOutcome.UNKNOWN_REFERENCE
            elif await store.record_status(
                reference,
                str(receipt.id),
                receipt.notification_type,
                receipt.status,
                receipt.status_at,
                now,
            ):
                outcome = ReceiptOutcome.RECORDED
                if receipt.status == PERMANENT_FAILURE:
                    marked = await store.mark_route_bad(
                        reference, receipt.notification_type, receipt.created_at, now
                    )
            else:
                outcome = ReceiptOutcome.KEPT_LATEST
        self._metrics.receipts.labels(receipt.status, outcome.value).inc()
        if marked:
            self._metrics.routes_marked_bad.labels(receipt.notification_type).inc()
        return outcome


def notify_callback_token(token: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: the request carries Notify's bearer token, or 401.

    Compared in constant time; with no token configured every call is refused.
    """
    bearer = HTTPBearer(
        auto_error=False,
        description="The bearer token set on the service's Notify callback "
        "(CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN).",
    )
    expected = None if token is None else token.get_secret_value().encode()

    def check(credentials: HTTPAuthorizationCredentials | None) -> None:
        given = None if credentials is None else credentials.credentials.encode()
        if expected is None or given is None or not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or wrong bearer token (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def notify_caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        check(credentials)

    return notify_caller
