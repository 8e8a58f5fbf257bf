"""API access by bearer token and role: 401 and 403 are distinct."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from tests.support.metrics import MANAGER, OPS, TOKENS


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: refusals happen before any database or broker is needed.
    app = create_app(MetricsSettings(metrics_api_tokens=TOKENS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/v1/kpis", "/v1/kpis/csat/series", "/v1/reports/committee?quarter=2026Q3"]
)
async def test_manager_views_without_a_token_are_401(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/kpis", headers={"Authorization": "Bearer guessed"})

    assert response.status_code == 401


async def test_a_known_token_in_another_scheme_is_401(client: httpx.AsyncClient) -> None:
    token = MANAGER["Authorization"].removeprefix("Bearer ")

    response = await client.get("/v1/kpis", headers={"Authorization": f"Basic {token}"})

    assert response.status_code == 401


async def test_a_manager_token_on_the_ops_pipeline_view_is_403(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/pipeline", headers=MANAGER)

    assert response.status_code == 403
    assert "needs role ops" in response.json()["detail"]


async def test_the_pipeline_view_without_a_token_is_401_not_403(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/v1/pipeline")).status_code == 401


async def test_an_ops_token_passes_the_manager_check(client: httpx.AsyncClient) -> None:
    # Past authentication the route needs the database, which this test has not
    # started: 503 (not 401 or 403) shows the role was accepted.
    response = await client.get("/v1/kpis", headers=OPS)

    assert response.status_code == 503


def test_token_settings_refuse_a_plain_token_instead_of_its_hash() -> None:
    with pytest.raises(ValueError, match="hash"):
        MetricsSettings.model_validate(
            {"metrics_api_tokens": {"finance": {"role": "manager", "hash": "secret"}}}
        )


def test_token_settings_refuse_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="role"):
        MetricsSettings.model_validate(
            {"metrics_api_tokens": {"finance": {"role": "admin", "hash": "sha256:" + "0" * 64}}}
        )


def test_openapi_documents_the_kpi_routes_and_the_service_level_method() -> None:
    schema = create_app(MetricsSettings()).openapi()

    assert {"/v1/kpis", "/v1/kpis/{kpi}/series", "/v1/reports/committee", "/v1/pipeline"} <= set(
        schema["paths"]
    )
    assert (
        "abandoned calls count as failures"
        in schema["paths"]["/v1/kpis"]["get"]["description"].lower()
    )
