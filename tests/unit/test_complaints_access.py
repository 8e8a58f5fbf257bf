"""Who may use the complaints API: read-write keys, read-only keys, and officers signed in.

Issue 12, "Sign-in for people": the complaints worklist accepts OIDC access
tokens; the signature is checked against the provider's JWKS (PyJWT's
PyJWKClient), issuer, audience, expiry and not-before are checked, roles come
from a configurable claim. Expired, wrong audience, wrong issuer and wrong
signature each give 401, a wrong role 403. The JWKS is served on loopback.

Read-only API keys (the metrics dashboard's) read the worklist and get 403
on every write. The app runs without its lifespan: a request past the checks
gets 503 "starting", so 503 means "let in".
"""

import json
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import ValidationError

from civicpulse.infra import LocalInfra
from civicpulse.stack import Credentials, service_environment
from services.complaints.app import create_app
from services.complaints.settings import ComplaintsSettings, Role
from shared.api_keys import hash_api_key
from tests.support.oidc import FORGER_KEY, ISSUER, JwksServer, access_token, bearer

AUDIENCE = "api://civicpulse-complaints"
WRITER_KEY = "case-manager-key-0123456789abcdef"
READER_KEY = "dashboard-key-0123456789abcdefgh"
ACTION = {"action_id": "a-1", "action": "acknowledge", "occurred_at": "2026-03-02T10:00:00Z"}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def settings(jwks: JwksServer) -> ComplaintsSettings:
    return ComplaintsSettings(
        complaints_api_keys={"case-manager": hash_api_key(WRITER_KEY)},
        complaints_read_api_keys={"metrics-dashboard": hash_api_key(READER_KEY)},
        complaints_oidc_issuer=ISSUER,
        complaints_oidc_audience=AUDIENCE,
        complaints_oidc_jwks_url=jwks.url,
        complaints_oidc_role_map={"CivicPulse.ComplaintsReader": Role.READER},
        complaints_oidc_leeway_seconds=0,
    )


def officer_token(**overrides: Any) -> str:
    claims: dict[str, Any] = {"aud": AUDIENCE, "roles": ["CivicPulse.ComplaintsReader"]}
    return access_token(**(claims | overrides))


@pytest.fixture
async def client(jwks: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings(jwks)))
    async with httpx.AsyncClient(transport=transport, base_url="http://complaints") as client:
        yield client


async def test_a_signed_in_officer_reads_the_worklist_and_a_complaint(
    client: httpx.AsyncClient,
) -> None:
    token = bearer(officer_token())
    assert (await client.get("/v1/complaints", headers=token)).status_code == 503
    assert (await client.get("/v1/complaints/CMP-1", headers=token)).status_code == 503


@pytest.mark.parametrize(
    ("case", "token", "reason"),
    [
        ("expired", lambda: officer_token(exp=int(time.time()) - 10), "expired"),
        ("wrong audience", lambda: officer_token(aud="api://civicpulse-metrics"), "Audience"),
        ("wrong issuer", lambda: officer_token(iss="https://evil.example/v2.0"), "issuer"),
        ("wrong signature", lambda: access_token(FORGER_KEY, aud=AUDIENCE), "Signature"),
        ("not yet valid", lambda: officer_token(nbf=int(time.time()) + 600), "not yet valid"),
    ],
)
async def test_a_bad_access_token_is_401(
    client: httpx.AsyncClient, case: str, token: Any, reason: str
) -> None:
    response = await client.get("/v1/complaints", headers=bearer(token()))

    assert response.status_code == 401, case
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert reason in response.json()["detail"], response.json()


async def test_an_officer_without_a_complaints_role_is_403(client: httpx.AsyncClient) -> None:
    # The metrics manager role is a CivicPulse role, but not one complaints maps.
    for roles in (["CivicPulse.Manager"], [], "Finance.Reader"):
        response = await client.get("/v1/complaints", headers=bearer(officer_token(roles=roles)))

        assert response.status_code == 403
        assert "holds no CivicPulse role" in response.json()["detail"]


async def test_an_officer_cannot_post_a_case_action(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/complaints/CMP-1/actions", json=ACTION, headers=bearer(officer_token())
    )

    assert response.status_code == 401


async def test_a_read_only_key_reads_but_gets_403_on_every_write(
    client: httpx.AsyncClient, jwks: JwksServer
) -> None:
    reader = {"X-API-Key": READER_KEY}
    writes = [
        route
        for route in create_app(settings(jwks)).routes
        if getattr(route, "path", "").startswith("/v1/")
        and getattr(route, "methods", set()) & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert writes, "no write endpoint found"

    assert (await client.get("/v1/complaints", headers=reader)).status_code == 503
    assert (await client.get("/v1/complaints/CMP-1", headers=reader)).status_code == 503
    for route in writes:
        for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:  # type: ignore[attr-defined]
            path = route.path.replace("{complaint_id}", "CMP-1")  # type: ignore[attr-defined]
            response = await client.request(method, path, json=ACTION, headers=reader)
            assert response.status_code == 403, (method, path)
            assert "read-only" in response.json()["detail"]


async def test_a_read_write_key_reads_and_writes(client: httpx.AsyncClient) -> None:
    writer = {"X-API-Key": WRITER_KEY}
    assert (await client.get("/v1/complaints", headers=writer)).status_code == 503
    posted = await client.post("/v1/complaints/CMP-1/actions", json=ACTION, headers=writer)
    assert posted.status_code == 503  # past authentication: the handler is not running


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "guessed"}, bearer("not-a-jwt")])
async def test_no_known_credentials_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await client.get("/v1/complaints", headers=headers)).status_code == 401
    posted = await client.post("/v1/complaints/CMP-1/actions", json=ACTION, headers=headers)
    assert posted.status_code == 401


def test_a_key_cannot_be_read_write_and_read_only_at_once() -> None:
    same = hash_api_key(WRITER_KEY)
    with pytest.raises(ValidationError, match="keep it in one"):
        ComplaintsSettings(
            complaints_api_keys={"case-manager": same},
            complaints_read_api_keys={"dashboard": same},
        )


def test_an_issuer_without_audience_or_keys_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="CIVICPULSE_COMPLAINTS_OIDC_AUDIENCE"):
        create_app(ComplaintsSettings(complaints_oidc_issuer=ISSUER))


async def test_the_dashboards_key_from_make_dev_cannot_post_an_action(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment `civicpulse dev` gives complaints, with the key it gives metrics."""
    credentials = Credentials()
    # What service_environment reads of a running stack; no stack is started.
    stack = cast(
        LocalInfra,
        SimpleNamespace(
            kafka_bootstrap="127.0.0.1:19092",
            database_url="postgresql://civicpulse@127.0.0.1:15432/civicpulse",
            kafka_nodes=(None,),
        ),
    )
    ports = {"intake": 1, "complaints": 2, "feedback": 3, "metrics": 4}
    environments = service_environment(stack, credentials, ports)
    for name, value in environments["complaints"].items():
        monkeypatch.setenv(name, value)
    dashboard_key = environments["metrics"]["CIVICPULSE_METRICS_COMPLAINTS_API_KEY"]
    transport = httpx.ASGITransport(app=create_app(ComplaintsSettings()))

    async with httpx.AsyncClient(transport=transport, base_url="http://complaints") as client:
        posted = await client.post(
            "/v1/complaints/CMP-1/actions", json=ACTION, headers={"X-API-Key": dashboard_key}
        )
        read = await client.get("/v1/complaints", headers={"X-API-Key": dashboard_key})

    assert posted.status_code == 403
    assert "read-only" in posted.json()["detail"]
    assert read.status_code == 503
    assert json.loads(environments["complaints"]["CIVICPULSE_COMPLAINTS_READ_API_KEYS"]) == {
        "metrics-dashboard": hash_api_key(dashboard_key)
    }
