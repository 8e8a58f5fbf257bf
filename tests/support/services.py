"""All four services in-process on the real broker and database, for tests that go
through every endpoint (hostile bodies, schemathesis)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import uvicorn
from fastapi import FastAPI

from civicpulse.infra import pick_free_port
from services.complaints.app import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from shared.api_keys import hash_api_key
from shared.topics import COMPLAINT_ACTIONS, CONTACTS
from tests.integration.conftest import CRM_API_KEY, RunningIntake
from tests.support.complaints import SOURCE as CASE_MANAGER
from tests.support.feedback import (
    CALLBACK_TOKEN,
    CRM_KEY,
    feedback_from_now,
)
from tests.support.kafka import new_group_at_end
from tests.support.metrics import MANAGER, running_metrics

COMPLAINTS_KEY = "test-case-manager-key-0123456789"


@dataclass(frozen=True)
class ServiceUnderTest:
    name: str
    app: FastAPI
    auth: dict[str, str]  # the headers of a caller allowed everything but `ops` views
    client: httpx.AsyncClient  # in-process (ASGI); sends no auth headers of its own


@asynccontextmanager
async def four_services(
    intake: RunningIntake, kafka_bootstrap: str, database_url: str
) -> AsyncIterator[dict[str, ServiceUnderTest]]:
    """The session's intake, and complaints, feedback and metrics started for the caller.

    The three started here consume from the current end of their topics, in new
    groups, and stop when the block ends.
    """
    async with AsyncExitStack() as stack:
        complaints_settings = ComplaintsSettings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            complaints_group_id=await new_group_at_end(
                kafka_bootstrap, [CONTACTS.name, COMPLAINT_ACTIONS.name], "test-contracts"
            ),
            complaints_api_keys={CASE_MANAGER: hash_api_key(COMPLAINTS_KEY)},
        )
        complaints = create_complaints(complaints_settings)
        await stack.enter_async_context(complaints.router.lifespan_context(complaints))
        feedback = await stack.enter_async_context(
            feedback_from_now(kafka_bootstrap, database_url, "test-contracts-feedback")
        )
        metrics = await stack.enter_async_context(
            running_metrics(kafka_bootstrap, database_url, datetime.now(UTC))
        )
        apps = {
            "intake": (intake.app, {"X-API-Key": CRM_API_KEY}),
            "complaints": (complaints, {"X-API-Key": COMPLAINTS_KEY}),
            # The CRM's key, and Notify's bearer token for the delivery-status callback.
            "feedback": (
                feedback.app,
                {"X-API-Key": CRM_KEY, "Authorization": f"Bearer {CALLBACK_TOKEN}"},
            ),
            "metrics": (metrics.app, MANAGER),
        }
        services = {}
        for name, (app, auth) in apps.items():
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
            )
            await stack.enter_async_context(client)
            services[name] = ServiceUnderTest(name, app, auth, client)
        yield services


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app`, already started, behind a real HTTP server on a loopback port; its base URL."""
    port = pick_free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
