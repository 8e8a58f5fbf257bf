"""Operational endpoints: /metrics on its own port, /docs off in production, no tokens in logs.

Issue 12, "Operational endpoints": `/metrics` on a separate internal port
(`CIVICPULSE_METRICS_PORT`) or behind an ops credential, and `/docs` off in
production unless enabled. Survey tokens are redacted in access logs.
"""

import logging

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter

from civicpulse.infra import pick_free_port
from shared.http import add_operational_routes
from shared.operational import RedactSurveyTokens, prepare_for_serving, redact_path
from shared.settings import ServiceSettings


def app_with_metrics() -> FastAPI:
    app = FastAPI()
    registry = CollectorRegistry()
    Counter("civicpulse_test_breaches", "A KPI a reviewer should not see.", registry=registry).inc()
    add_operational_routes(app, broker=KafkaBroker(), registry=registry, pool=lambda: None)
    return app


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.get(path)


async def test_metrics_move_to_their_own_port() -> None:
    app = app_with_metrics()
    assert (await get(app, "/metrics")).status_code == 200  # development default
    port = pick_free_port()

    prepare_for_serving(app, ServiceSettings(metrics_port=port))

    assert (await get(app, "/metrics")).status_code == 404
    async with httpx.AsyncClient() as client:
        scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    assert "civicpulse_test_breaches_total 1.0" in scraped.text


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_docs_are_off_in_production_unless_enabled(path: str) -> None:
    development, production, enabled = FastAPI(), FastAPI(), FastAPI()
    prepare_for_serving(development, ServiceSettings())
    prepare_for_serving(production, ServiceSettings(environment="production"))
    prepare_for_serving(
        enabled, ServiceSettings(environment="production", api_docs_in_production=True)
    )

    assert (await get(development, path)).status_code == 200
    assert (await get(production, path)).status_code == 404
    assert (await get(enabled, path)).status_code == 200


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/surveys/eyJhbGciOi.abc-123_x", "/surveys/[redacted]"),
        ("/surveys/tok.en/opt-out", "/surveys/[redacted]/opt-out"),
        ("/v1/surveys/tok.en?x=1", "/v1/surveys/[redacted]?x=1"),
        ("/v1/kpis?from=2026-01-01", "/v1/kpis?from=2026-01-01"),
    ],
)
def test_survey_tokens_are_redacted_in_the_access_log(
    path: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert redact_path(path) == logged
    access_log = logging.getLogger("uvicorn.access.test")
    access_log.addFilter(RedactSurveyTokens())
    with caplog.at_level(logging.INFO, logger="uvicorn.access.test"):
        # uvicorn's own format and arguments
        access_log.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)

    assert caplog.records[-1].getMessage() == f'127.0.0.1:5000 - "GET {logged} HTTP/1.1" 200'
