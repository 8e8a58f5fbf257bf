"""The batch applier on real PostgreSQL: results independent of the order events arrive in.

Each test applies batches to a generation of its own, so tests never share counters.
"""

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime

import asyncpg
import pytest

from services.metrics.handlers import BatchApplier, Rules
from services.metrics.store import MIGRATIONS
from shared.events import Event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintDeadlineBreached,
    ComplaintOpened,
)
from shared.events.vocabulary import Channel, DeadlineKind
from shared.postgres import create_pool, migrate
from tests.support.metrics import Events, utc_at

pytestmark = pytest.mark.integration
DAY = date(2024, 6, 3)
APPLIER = BatchApplier(
    rules=Rules(), clock=lambda: datetime(2024, 7, 1, tzinfo=UTC), publish_surges=False
)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    await migrate(pool, "metrics", MIGRATIONS)
    yield pool
    await pool.close()


def a_generation() -> int:
    return random.randrange(1_000_000, 2_000_000_000)


async def apply(pool: asyncpg.Pool, generation: int, *batches: Sequence[Event]) -> None:
    for batch in batches:
        async with pool.acquire() as connection, connection.transaction():
            await APPLIER.apply(connection, generation, batch)


async def day_totals(pool: asyncpg.Pool, generation: int) -> dict[str, float]:
    rows = await pool.fetch(
        "SELECT measure, sum(value) AS value FROM metrics_aggregates"
        " WHERE generation = $1 AND day = $2 GROUP BY measure",
        generation,
        DAY,
    )
    return {row["measure"]: row["value"] for row in rows}


def contacts(events: Events) -> tuple[Event, Event, Event, Event]:
    first = events.received(
        "first", utc_at(DAY, 9), channel=Channel.WEB, area="waste", customer="x", resolved=True
    )
    again = events.received(
        "again", utc_at(DAY, 16), channel=Channel.PHONE, area="waste", customer="x"
    )
    other_area = events.received(
        "other", utc_at(DAY, 10), channel=Channel.WEB, area="planning", customer="y", resolved=True
    )
    later_elsewhere = events.received(
        "later", utc_at(DAY, 11), channel=Channel.WEB, area="housing", customer="y"
    )
    return first, again, other_area, later_elsewhere


async def test_a_re_contact_consumed_before_the_first_contact_still_loses_its_fcr(
    pool: asyncpg.Pool,
) -> None:
    first, again, other, elsewhere = contacts(Events())
    in_order, reversed_order = a_generation(), a_generation()

    await apply(pool, in_order, [first, other], [again, elsewhere])
    await apply(pool, reversed_order, [elsewhere, again], [other], [first])

    expected = {"fcr_first_time": 2, "fcr_lost": 1, "fcr_eligible": 4}
    assert (await day_totals(pool, in_order)).items() >= expected.items()
    assert await day_totals(pool, reversed_order) == await day_totals(pool, in_order)


async def test_a_transfer_after_receipt_counts_the_call_once_and_loses_its_fcr(
    pool: asyncpg.Pool,
) -> None:
    events = Events()
    call = events.received(
        "call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", resolved=True, wait=3
    )
    transfers = [events.transferred("call", utc_at(DAY, 9, n), area="waste") for n in (1, 2)]
    generation = a_generation()

    await apply(pool, generation, [call], transfers)

    totals = await day_totals(pool, generation)
    assert totals["calls_transferred"] == 1
    assert totals["call_transfers"] == 2
    assert totals["fcr_lost"] == 1


async def test_an_acknowledgement_after_its_breach_stays_late(pool: asyncpg.Pool) -> None:
    events = Events()
    opened = events.complaint(
        "k", utc_at(DAY, 9), ComplaintOpened, service_area="waste", channel=Channel.EMAIL
    )
    breached = events.complaint(
        "k",
        utc_at(DAY, 10),
        ComplaintDeadlineBreached,
        service_area="waste",
        stage=1,
        deadline=DeadlineKind.ACKNOWLEDGE,
        due_date=DAY,
    )
    acknowledged = events.complaint(
        "k", utc_at(DAY, 11), ComplaintAcknowledged, service_area="waste", stage=1
    )
    generation = a_generation()

    await apply(pool, generation, [opened], [breached], [acknowledged])

    totals = await day_totals(pool, generation)
    assert totals["corporate_ack_due_s1"] == 1
    assert "corporate_ack_on_time_s1" not in totals
    assert totals["corporate_deadline_breaches"] == 1
