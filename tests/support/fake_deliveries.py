"""An in-memory twin of `services.feedback.delivery_store.DeliveryStore`'s sender part.

A customer's lock is an `asyncio.Lock`; what a failed block wrote is undone,
as a rolled-back transaction would be.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from services.feedback.notifications import RouteState


@dataclass
class Decision:
    customer_ref: str
    notification_type: str | None
    notification_id: str | None
    suppressed_reason: str | None
    at: datetime


@dataclass
class MemoryDeliveries:
    routes: dict[str, RouteState] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # What the open block wrote, undone if it raises.
    _pending: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def for_customer(self, customer_ref: str) -> AsyncIterator[Self]:
        async with self.locks.setdefault(customer_ref, asyncio.Lock()):
            bound = type(self)(self.routes, self.decisions, self.locks)
            try:
                yield bound
            except BaseException:
                for reference in bound._pending:
                    self.decisions.pop(reference, None)
                raise

    async def decided(self, reference: str) -> bool:
        return reference in self.decisions

    async def route_state(self, customer_ref: str) -> RouteState:
        return self.routes.get(customer_ref, RouteState())

    async def record_sent(
        self,
        reference: str,
        customer_ref: str,
        notification_type: str,
        notification_id: str | None,
        now: datetime,
    ) -> None:
        self._decide(
            reference, Decision(customer_ref, notification_type, notification_id, None, now)
        )

    async def record_suppressed(
        self, reference: str, customer_ref: str, reason: str, now: datetime
    ) -> None:
        self._decide(reference, Decision(customer_ref, None, None, reason, now))

    def _decide(self, reference: str, decision: Decision) -> None:
        if reference not in self.decisions:
            self.decisions[reference] = decision
            self._pending.append(reference)

    @property
    def sent(self) -> dict[str, str | None]:
        """Reference to Notify's id, for the requests sent."""
        return {
            reference: decision.notification_id
            for reference, decision in self.decisions.items()
            if decision.suppressed_reason is None
        }
