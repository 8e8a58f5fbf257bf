"""Shared fixtures of the integration tests: an in-process intake, and a database pool."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.api_keys import hash_api_key
from shared.postgres import create_pool
from shared.topics import CONTACTS_RAW
from tests.support.kafka import new_group_at_end

CRM_API_KEY = "test-crm-key-0123456789"


@dataclass
class RunningIntake:
    app: FastAPI
    client: httpx.AsyncClient
    registry: CollectorRegistry
    settings: IntakeSettings


# Module scope: an intake left running for the whole session would consume the
# raw topic beside the intake process that test_intake_process.py stops, and
# finish its work for it.
@pytest.fixture(scope="module")
async def intake(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningIntake]:
    settings = IntakeSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        intake_api_keys={"crm": hash_api_key(CRM_API_KEY)},
        intake_group_id=await new_group_at_end(kafka_bootstrap, CONTACTS_RAW.name, "test-intake"),
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield RunningIntake(app, client, registry, settings)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault tests' table of counts, when they ran in this session."""
    from tests.integration.test_faults import ROWS, TABLE_FILE

    if ROWS:
        terminalreporter.section("fault table (also in .civicpulse/fault-table.md)")
        terminalreporter.write_line(TABLE_FILE.read_text())


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test database; a module that needs its service's tables first
    defines its own `pool`, which applies the migrations."""
    pool = await create_pool(database_url)
    try:
        yield pool
    finally:
        await pool.close()
