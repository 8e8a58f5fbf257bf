"""The shared HTTP machinery: body limits, JSON bodies, and documented problems."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from shared.http import (
    MalformedBodyError,
    document_problems,
    limit_request_bodies,
    parse_json_body,
)

LIMIT = 4_096


class Thing(BaseModel):
    name: str


def small_app() -> FastAPI:
    app = FastAPI()
    key = APIKeyHeader(name="X-API-Key")

    # Read by the route itself and documented by hand, as intake and complaints do.
    body = {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}

    @app.post("/raw", openapi_extra={"requestBody": body})
    async def raw(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    @app.post("/model")
    async def model(thing: Thing, _: str = Depends(key)) -> Thing:
        return thing

    @app.get("/open")
    async def open_route() -> dict[str, str]:
        return {"ok": "yes"}

    limit_request_bodies(app, LIMIT, html_page=lambda: "<p>too long</p>")
    document_problems(app)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_body_at_the_limit_is_read_and_one_byte_more_is_a_413(
    client: httpx.AsyncClient,
) -> None:
    at_limit = await client.post("/raw", content=b"x" * LIMIT)
    over = await client.post("/raw", content=b"x" * (LIMIT + 1))

    assert at_limit.json() == {"read": LIMIT}
    assert over.status_code == 413
    assert over.json() == {"detail": f"request body over {LIMIT} bytes"}


async def test_a_chunked_body_is_counted_as_it_arrives(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1_000):
            sent += 1
            yield b"x" * 1_024

    response = await client.post("/raw", content=chunks())

    assert response.status_code == 413
    assert sent <= LIMIT // 1_024 + 1


async def test_a_chunked_body_within_the_limit_is_read(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1_000

    response = await client.post("/raw", content=chunks())

    assert response.json() == {"read": 4_000}


async def test_a_browser_gets_the_413_as_a_page(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/raw", content=b"x" * (LIMIT + 1), headers={"Accept": "text/html,*/*"}
    )

    assert response.status_code == 413
    assert response.text == "<p>too long</p>"


async def test_a_content_length_that_is_not_a_number_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/raw", content=b"{}", headers={"Content-Length": "-1"})

    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"n": ' + b"9" * 5_000 + b"}",
        b'{"a": "\\u0000"}',
        b'{"\\u0000": 1}',
        b'[[["x\\u0000"]]]',
        b"\xff\xfe",
        b"{",
        b'{"score": NaN}',
        b"[Infinity]",
        b'{"a": {"b": -Infinity}}',
        b'{"wait": 1e999}',
        b"[-2.5e400]",
    ],
    ids=[
        "deep",
        "huge_integer",
        "nul_value",
        "nul_key",
        "nested_nul",
        "not_utf8",
        "truncated",
        "nan",
        "infinity",
        "minus_infinity",
        "float_overflow",
        "negative_float_overflow",
    ],
)
def test_a_malformed_json_body_is_a_malformed_body_error(body: bytes) -> None:
    with pytest.raises(MalformedBodyError):
        parse_json_body(body)


def test_a_json_body_is_parsed() -> None:
    assert parse_json_body(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    assert parse_json_body(b"[1.5e308, -0.0, 1e-400]") == [1.5e308, -0.0, 0.0]


def test_a_number_json_does_not_allow_is_named_in_the_error() -> None:
    """RFC 8259 section 6: "Numeric values that cannot be represented ... (such as
    Infinity and NaN) are not permitted"; Python's `json` reads them unless told."""
    with pytest.raises(MalformedBodyError, match="NaN is not a JSON number"):
        parse_json_body(b'{"overall": NaN}')
    with pytest.raises(MalformedBodyError, match="1e999 is too large a number"):
        parse_json_body(b'{"overall": 1e999}')


def test_problems_are_documented_where_they_can_happen() -> None:
    document: dict[str, Any] = small_app().openapi()
    paths = document["paths"]

    assert {"400", "413"} <= set(paths["/raw"]["post"]["responses"])
    assert "401" not in paths["/raw"]["post"]["responses"]
    assert {"400", "401", "413"} <= set(paths["/model"]["post"]["responses"])
    assert "403" not in paths["/model"]["post"]["responses"]
    assert set(paths["/open"]["get"]["responses"]) == {"200"}
    assert document["components"]["schemas"]["Problem"]["required"] == ["detail"]
