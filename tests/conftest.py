"""Fixtures shared by every test tier.

Unit tests need none of these. Integration tests ask for `infrastructure`
(real Kafka and PostgreSQL, see `tests/support/infrastructure.py`) and get a
fresh database per test session, so runs never see each other's rows. The
PostgreSQL half of a fake-or-real store test (marked `integration`) asks for
`store_pool`, on a second database it may empty between tests.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from civicpulse.infra import scratch_database
from shared.kafka import ensure_topics
from shared.postgres import create_pool
from shared.topics import ALL_TOPICS
from tests.support.infrastructure import Infrastructure, test_infrastructure
from tests.support.kafka import mark_session_start


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    with test_infrastructure(tmp_path_factory.mktemp("civicpulse")) as infra:
        print(f"\ntest infrastructure from {infra.provided_by}: {infra.kafka_bootstrap}")
        yield infra


@pytest.fixture(scope="session")
def kafka_bootstrap(infrastructure: Infrastructure) -> str:
    return infrastructure.kafka_bootstrap


@pytest.fixture(scope="session")
async def topics(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, ALL_TOPICS)
    await mark_session_start(kafka_bootstrap, [topic.name for topic in ALL_TOPICS])


@asynccontextmanager
async def _fresh_database(infrastructure: Infrastructure) -> AsyncIterator[str]:
    name = f"civicpulse_test_{uuid.uuid4().hex[:12]}"
    async with scratch_database(infrastructure.database_url, name) as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(infrastructure: Infrastructure) -> AsyncIterator[str]:
    async with _fresh_database(infrastructure) as url:
        yield url


@pytest.fixture(scope="session")
async def store_pool(infrastructure: Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database of its own, for the tests that run one body against a
    service's fake store and its PostgreSQL store: they may empty its tables."""
    async with _fresh_database(infrastructure) as url:
        pool = await create_pool(url)
        try:
            yield pool
        finally:
            await pool.close()
