"""`DeliveryStore` and its in-memory twin (`tests.support.fake_deliveries`) behave alike.

One body per behaviour, run against both, so the fake the sender's unit tests
use cannot drift from PostgreSQL.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from services.feedback.delivery_store import DeliveryStore
from services.feedback.notifications import ContactRoute, RouteState
from services.feedback.sender import Deliveries
from services.feedback.settings import SERVICE
from services.feedback.store import MIGRATIONS, FeedbackStore
from shared.postgres import create_pool, migrate
from tests.support.fake_deliveries import MemoryDeliveries

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class CommitNeverHappenedError(Exception):
    pass


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    await migrate(pool, SERVICE, MIGRATIONS)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(params=["postgres", "memory"])
async def backend(
    request: pytest.FixtureRequest, pool: asyncpg.Pool
) -> tuple[Deliveries, FeedbackStore | MemoryDeliveries]:
    """The deliveries under test, and where a customer's route is put for it."""
    if request.param == "postgres":
        return DeliveryStore(pool), FeedbackStore(pool)
    memory = MemoryDeliveries()
    return memory, memory


async def put_route(where: FeedbackStore | MemoryDeliveries, ref: str, email: str) -> None:
    if isinstance(where, FeedbackStore):
        await where.put_contact_route(ref, ContactRoute(email=email), NOW)
    else:
        where.routes[ref] = RouteState(email=email)


def new_ref() -> str:
    return f"CUST-twin-{uuid.uuid4().hex[:8]}"


async def test_an_unknown_customer_has_no_route_and_is_not_opted_out(
    backend: tuple[Deliveries, FeedbackStore | MemoryDeliveries],
) -> None:
    deliveries, _ = backend
    ref = new_ref()
    async with deliveries.for_customer(ref) as customer:
        assert await customer.route_state(ref) == RouteState()


async def test_the_route_put_is_the_route_read(
    backend: tuple[Deliveries, FeedbackStore | MemoryDeliveries],
) -> None:
    deliveries, routes = backend
    ref = new_ref()
    await put_route(routes, ref, "twin@example.org")
    async with deliveries.for_customer(ref) as customer:
        assert await customer.route_state(ref) == RouteState(email="twin@example.org")


async def test_the_first_decision_stands_and_a_failed_block_records_nothing(
    backend: tuple[Deliveries, FeedbackStore | MemoryDeliveries],
) -> None:
    deliveries, _ = backend
    ref, sent, failed = new_ref(), f"req-{uuid.uuid4().hex}", f"req-{uuid.uuid4().hex}"

    async with deliveries.for_customer(ref) as customer:
        await customer.record_sent(sent, ref, "email", "notify-1", NOW)
        await customer.record_suppressed(sent, ref, "erased", NOW)  # too late: ignored

    async def send_then_fail() -> None:
        async with deliveries.for_customer(ref) as customer:
            await customer.record_sent(failed, ref, "email", "notify-2", NOW)
            raise CommitNeverHappenedError

    with pytest.raises(CommitNeverHappenedError):
        await send_then_fail()

    async with deliveries.for_customer(ref) as customer:
        assert await customer.decided(sent)
        assert not await customer.decided(failed)
