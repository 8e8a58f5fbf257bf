"""Sign-in for people: OIDC access tokens on the metrics API.

Issue 12, "Sign-in for people": the metrics API accepts OIDC access tokens;
the signature is checked against the provider's JWKS, fetched and cached by a
maintained library (PyJWT's PyJWKClient); issuer, audience, expiry and
not-before are checked; roles are mapped from a configurable claim (Entra
ID's `roles`). Static tokens stay for machine clients. Expired, wrong
audience, wrong issuer and wrong signature each give 401, a wrong role 403.
The JWKS is served on loopback by the test.
"""

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.metrics.app import create_app
from services.metrics.auth import metrics_oidc
from services.metrics.settings import MetricsSettings, Role
from tests.support.metrics import MANAGER, OPS, TOKENS
from tests.support.oidc import (
    AUDIENCE,
    FORGER_KEY,
    ISSUER,
    JwksServer,
    access_token,
    bearer,
)


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def settings(jwks: JwksServer) -> MetricsSettings:
    return MetricsSettings(
        metrics_api_tokens=TOKENS,
        metrics_oidc_issuer=ISSUER,
        metrics_oidc_audience=AUDIENCE,
        metrics_oidc_jwks_url=jwks.url,
        metrics_oidc_role_map={"CivicPulse.Manager": Role.MANAGER, "CivicPulse.Ops": Role.OPS},
        metrics_oidc_leeway_seconds=0,
    )


@pytest.fixture
async def client(jwks: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: authentication happens before any database is needed, and a
    # request that passes it gets 503 "starting" rather than 401 or 403.
    transport = httpx.ASGITransport(app=create_app(settings(jwks)))
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        yield client


async def test_a_valid_access_token_signs_a_manager_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/kpis", headers=bearer(access_token()))

    assert response.status_code == 503  # past authentication and authorisation


async def test_the_role_claim_decides_and_ops_may_use_ops_views(client: httpx.AsyncClient) -> None:
    manager = await client.get("/v1/pipeline", headers=bearer(access_token()))
    ops = await client.get(
        "/v1/pipeline", headers=bearer(access_token(roles=["CivicPulse.Ops", "Other"]))
    )

    assert manager.status_code == 403
    assert ops.status_code == 503


@pytest.mark.parametrize(
    ("case", "token", "reason"),
    [
        ("expired", lambda: access_token(exp=int(time.time()) - 10), "expired"),
        ("wrong audience", lambda: access_token(aud="api://another-app"), "Audience doesn't match"),
        ("wrong issuer", lambda: access_token(iss="https://evil.example/v2.0"), "issuer"),
        ("wrong signature", lambda: access_token(FORGER_KEY), "Signature verification failed"),
        ("not yet valid", lambda: access_token(nbf=int(time.time()) + 600), "not yet valid"),
        ("no expiry", lambda: access_token(exp=None), '"exp"'),
    ],
)
async def test_a_bad_access_token_is_401(
    client: httpx.AsyncClient, case: str, token: Any, reason: str
) -> None:
    response = await client.get("/v1/kpis", headers=bearer(token()))

    assert response.status_code == 401, case
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert reason in response.json()["detail"], response.json()


async def test_a_user_without_a_civicpulse_role_is_403(client: httpx.AsyncClient) -> None:
    for roles in (["Finance.Reader"], [], "Finance.Reader"):
        response = await client.get("/v1/kpis", headers=bearer(access_token(roles=roles)))

        assert response.status_code == 403
        assert "holds no CivicPulse role" in response.json()["detail"]


async def test_static_tokens_still_work_for_machine_clients(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/pipeline", headers=OPS)).status_code == 503
    assert (await client.get("/v1/pipeline", headers=MANAGER)).status_code == 403
    assert (await client.get("/v1/kpis", headers=bearer("guessed"))).status_code == 401


def test_the_keys_are_fetched_once_and_cached(jwks: JwksServer) -> None:
    verifier = metrics_oidc(settings(jwks))
    assert verifier is not None
    before = jwks.fetches
    roles = [verifier.roles_of(access_token(roles=["CivicPulse.Ops"])) for _ in range(5)]

    assert roles == [{Role.OPS}] * 5
    assert jwks.fetches - before == 1


def test_an_issuer_without_audience_or_keys_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="CIVICPULSE_METRICS_OIDC_AUDIENCE"):
        metrics_oidc(MetricsSettings(metrics_oidc_issuer=ISSUER))
