"""The residents' pages' guards: security headers and a rate limit per client address.

Issue 12, "The residents' pages": CSP, `frame-ancestors 'none'`,
`X-Content-Type-Options: nosniff` and a referrer policy; a per-address rate
limit on the answer and opt-out endpoints, returning 429 with `Retry-After`.
The feedback app is built without its lifespan: these guards answer before any
route needs the database, so paths that never reach the store (a 404 under
`/surveys/`, a 413) show its real wiring; the pages themselves are checked on
the real stack in tests/integration/test_feedback_residents_pages.py.
"""

import hashlib
import re
from base64 import b64encode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.types import Scope

from services.feedback.app import create_app
from services.feedback.pages import CONTENT_SECURITY_POLICY, survey_form, thank_you
from services.feedback.settings import FeedbackSettings
from shared.page_guards import client_key, guard_pages, parse_rate_limit
from tests.support.feedback import TOKEN_SECRET

HEADERS = {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"}


def feedback_app(rate_limit: str = "3/minute") -> FastAPI:
    return create_app(
        FeedbackSettings(feedback_token_secret=TOKEN_SECRET, feedback_rate_limit=rate_limit)
    )


def client(app: FastAPI, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://feedback")


def test_the_policy_allows_the_pages_own_stylesheet_and_nothing_else() -> None:
    """The hash in the CSP is the hash of the <style> the pages carry, byte for byte."""
    for page in (survey_form("/surveys/t", "waste"), thank_you()):
        [style] = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
        digest = b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert set(directives) == {
        "default-src",
        "style-src",
        "form-action",
        "base-uri",
        "frame-ancestors",
    }
    assert "<script" not in survey_form("/surveys/t", "waste")


@pytest.mark.parametrize("path", ["/surveys/t/no-such-page", "/v1/surveys/t/no-such-page"])
async def test_every_response_under_the_link_paths_carries_the_headers(path: str) -> None:
    async with client(feedback_app()) as http:
        response = await http.get(path)

    assert response.status_code == 404
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_a_413_page_carries_the_headers_too() -> None:
    async with client(feedback_app()) as http:
        response = await http.post(
            "/surveys/t", content=b"x" * 20_000, headers={"Accept": "text/html"}
        )

    assert response.status_code == 413
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_the_crm_api_is_neither_limited_nor_given_the_page_headers() -> None:
    async with client(feedback_app("1/minute")) as http:
        answers = [await http.get("/v1/cases/contact/C-1") for _ in range(3)]

    assert [r.status_code for r in answers] == [401, 401, 401]
    assert "content-security-policy" not in answers[0].headers


async def test_past_the_limit_a_resident_gets_a_429_page_saying_when_to_retry() -> None:
    async with client(feedback_app("3/minute")) as http:
        answers = [await http.get("/surveys/t/no-such-page") for _ in range(4)]

    assert [r.status_code for r in answers] == [404, 404, 404, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"].startswith("text/html")
    assert "Sorry, there have been too many attempts" in refused.text
    assert f"Wait {refused.headers['retry-after']} seconds" in refused.text
    assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_the_answer_api_gets_a_json_429_and_shares_the_count_with_the_pages() -> None:
    async with client(feedback_app("2/minute")) as http:
        await http.get("/surveys/t/no-such-page")
        await http.post("/surveys/t/opt-out/no-such-page")
        refused = await http.post("/v1/surveys/t", json={})

    assert refused.status_code == 429
    assert "retry after" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1


async def test_each_address_has_its_own_count() -> None:
    app = feedback_app("1/minute")
    async with client(app, "198.51.100.1") as first, client(app, "198.51.100.2") as second:
        assert (await first.get("/surveys/t/x")).status_code == 404
        assert (await first.get("/surveys/t/x")).status_code == 429
        assert (await second.get("/surveys/t/x")).status_code == 404


async def test_an_ipv6_subscriber_is_counted_by_its_64_prefix() -> None:
    app = feedback_app("1/minute")
    async with client(app, "2001:db8:1:2::1") as one, client(app, "2001:db8:1:2::ffff") as same:
        assert (await one.get("/surveys/t/x")).status_code == 404
        assert (await same.get("/surveys/t/x")).status_code == 429


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("2001:db8:aa:bb:cc:dd:ee:ff", "2001:db8:aa:bb::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_keys(host: str, key: str) -> None:
    scope: Scope = {"type": "http", "client": (host, 1)}
    assert client_key(scope) == key
    assert client_key({"type": "http", "client": None}) == "unknown"


async def test_only_admitted_requests_count_and_several_limits_all_apply() -> None:
    app = FastAPI()

    @app.get("/page")
    async def page() -> PlainTextResponse:
        return PlainTextResponse("ok")

    guard_pages(
        app,
        paths=("/page",),
        headers=HEADERS,
        rate_limit=parse_rate_limit("5/minute;2/hour"),  # the second refuses
        refused=lambda _scope, wait: PlainTextResponse(f"wait {wait}", status_code=429),
    )
    async with client(app) as http:
        codes = [(await http.get("/page")).status_code for _ in range(5)]
        other = await http.get("/elsewhere")

    assert codes == [200, 200, 429, 429, 429]
    assert other.status_code == 404
    assert "content-security-policy" not in other.headers


@pytest.mark.parametrize("text", ["", "twenty a minute", "20/fortnight", "20"])
def test_a_malformed_rate_limit_setting_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="feedback_rate_limit"):
        FeedbackSettings(feedback_token_secret=TOKEN_SECRET, feedback_rate_limit=text)
