"""Hostile HTTP input on every endpoint of the four services, on the real stack.

Issue 9, item 4: every service refuses bodies over a documented limit (intake
2 MB, complaints 256 KB, feedback 16 KB) with 413 before reading them whole;
malformed JSON of any shape is 400 or 422, never 500.
"""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.conftest import RunningIntake
from tests.support.complaints import action_record
from tests.support.services import ServiceUnderTest, four_services

pytestmark = pytest.mark.integration

PATH_VALUES = {
    "complaint_id": "hostile-complaint-1",
    "customer_ref": "CUST-HOSTILE-1",
    "case_type": "contact",
    "case_id": "hostile-case-1",
    "token": "not-a-real-token",
    "kpi": "first_contact_resolution",
    "comment_ref": "hostile-comment-1",
}
OVERFLOW = "9999-12-31T23:59:59-01:00"


def malformed_bodies(limit: int) -> dict[str, bytes]:
    """Malformed documents that fit under `limit`, each breaking a different parser."""
    depth = min(100_000, limit // 2 - 16)
    return {
        "deep_array": b"[" * depth + b"]" * depth,
        "deep_object": b'{"a":' * (depth // 6) + b"1" + b"}" * (depth // 6),
        "huge_integer": b'{"overall": ' + b"9" * 5_000 + b"}",
        # Python's json reads these as infinities, which no JSON answer can echo back.
        "infinite_numbers": b'{"overall": 1e999, "ease": -1e999, "occurred_at": 1e999}',
        # Not JSON at all (RFC 8259 section 6), though Python's json reads them.
        "nan_and_infinity": b'{"overall": NaN, "ease": Infinity, "wait_seconds": -Infinity}',
        "raw_nul": b'{"comment": "a\x00b"}',
        "escaped_nul": b'{"comment": "a\\u0000b", "email": "a\\u0000@example.org"}',
        "not_utf8": b'{"comment": "\xff\xfe\xfd"}',
        "overflowing_timestamp": json.dumps({"occurred_at": OVERFLOW}).encode(),
        "truncated": b'{"overall": ',
        "empty": b"",
    }


@pytest.fixture(scope="module")
async def services(
    intake: RunningIntake, kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[dict[str, ServiceUnderTest]]:
    async with four_services(intake, kafka_bootstrap, database_url) as running:
        yield running


def operations(service: ServiceUnderTest) -> list[tuple[str, str, bool]]:
    """(method, path, takes a body) of every operation the service serves."""
    document = service.app.openapi()
    found = []
    for template, items in document["paths"].items():
        path = template.format(**PATH_VALUES)
        for method, operation in items.items():
            found.append((method.upper(), path, "requestBody" in operation))
    # The residents' HTML form reads its body itself (application/x-www-form-urlencoded).
    if service.name == "feedback":
        found.append(("POST", "/surveys/{token}".format(**PATH_VALUES), True))
    return found


def limit_of(service: ServiceUnderTest) -> int:
    limits = {"intake": 2 * 1024 * 1024, "complaints": 256 * 1024}
    return limits.get(service.name, 16 * 1024)


@pytest.mark.parametrize("name", ["intake", "complaints", "feedback", "metrics"])
async def test_malformed_json_is_never_a_server_error_on_any_endpoint(
    services: dict[str, ServiceUnderTest], name: str
) -> None:
    service = services[name]
    bodies = malformed_bodies(limit_of(service))
    outcomes: dict[tuple[str, str, str], int] = {}
    for method, path, takes_body in operations(service):
        for label, body in bodies.items():
            headers = {**service.auth, "Content-Type": "application/json"}
            response = await service.client.request(method, path, content=body, headers=headers)
            outcomes[(method, path, label)] = response.status_code
            if takes_body and label != "empty":
                assert response.status_code in {400, 422}, (method, path, label, response.text)

    server_errors = {key: code for key, code in outcomes.items() if code >= 500}
    assert server_errors == {}
    assert len(outcomes) >= len(bodies) * 3


@pytest.mark.parametrize(
    ("name", "method", "path"),
    [
        ("intake", "POST", "/v1/contacts"),
        ("complaints", "POST", "/v1/complaints/hostile-complaint-1/actions"),
        ("feedback", "POST", "/surveys/not-a-real-token"),
        ("feedback", "PUT", "/v1/customers/CUST-HOSTILE-1/contact-route"),
        ("metrics", "GET", "/v1/kpis"),
    ],
)
async def test_a_body_over_the_limit_is_a_413_before_it_is_read(
    services: dict[str, ServiceUnderTest], name: str, method: str, path: str
) -> None:
    service = services[name]
    limit = limit_of(service)
    declared = await service.client.request(
        method, path, content=b" " * (limit + 1), headers=service.auth
    )
    streamed_chunks = 0

    async def endless_body() -> AsyncIterator[bytes]:
        nonlocal streamed_chunks
        while streamed_chunks < 10_000:  # 640 MB if nothing stopped it
            streamed_chunks += 1
            yield b" " * 65_536

    chunked = await service.client.request(
        method, path, content=endless_body(), headers=service.auth
    )

    assert declared.status_code == 413, declared.text
    if method == "GET":  # the endpoint never reads a body, so none is pulled in
        assert chunked.status_code < 500
        assert streamed_chunks <= 2
    else:
        assert chunked.status_code == 413, chunked.text
        # Refused while streaming: no more read than the limit and one chunk.
        assert streamed_chunks <= limit // 65_536 + 2


@pytest.mark.parametrize("name", ["intake", "complaints", "feedback"])
async def test_a_body_at_the_limit_is_read(
    services: dict[str, ServiceUnderTest], name: str
) -> None:
    service = services[name]
    path = {
        "intake": "/v1/contacts",
        "complaints": "/v1/complaints/hostile-complaint-1/actions",
        "feedback": "/surveys/not-a-real-token",
    }[name]
    padded = b"[" + b" " * (limit_of(service) - 2) + b"]"

    response = await service.client.post(path, content=padded, headers=service.auth)

    assert response.status_code in {400, 422}, response.text  # read and refused, not a 413


async def test_the_residents_form_over_the_limit_gets_an_html_page(
    services: dict[str, ServiceUnderTest],
) -> None:
    comment = "x" * 20_000
    response = await services["feedback"].client.post(
        "/surveys/not-a-real-token",
        data={"overall": "4", "ease": "5", "resolved": "yes", "comment": comment},
        headers={"Accept": "text/html"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "too long" in response.text


async def test_an_action_with_an_overflowing_occurred_at_is_a_422_naming_the_field(
    services: dict[str, ServiceUnderTest],
) -> None:
    service = services["complaints"]
    record: dict[str, Any] = action_record(
        "open", "hostile-complaint-2", "open-1", datetime.now(UTC)
    )
    record["occurred_at"] = OVERFLOW

    response = await service.client.post(
        "/v1/complaints/hostile-complaint-2/actions", json=record, headers=service.auth
    )

    assert response.status_code == 422, response.text
    assert "occurred_at" in response.text


@pytest.mark.parametrize(
    "query",
    [
        "/v1/kpis?from=0001-01-01",
        "/v1/kpis?from=9999-12-31",
        "/v1/kpis?from=0001-01-01&to=0001-01-02",
        "/v1/kpis?period=year&from=9999-12-31",
        "/v1/kpis/first_contact_resolution/series?from=0001-01-01&to=0001-02-01",
        "/v1/kpis/first_contact_resolution/series?to=0001-01-01",
        "/v1/reports/committee?quarter=0001Q1",
        "/v1/reports/committee?quarter=9999Q4",
        "/v1/reports/committee?quarter=0000Q1",
    ],
)
async def test_dates_at_the_ends_of_the_calendar_are_refused_not_a_server_error(
    services: dict[str, ServiceUnderTest], query: str
) -> None:
    """Found by schemathesis: `from=0001-01-01` overflowed computing the period before."""
    service = services["metrics"]

    response = await service.client.get(query, headers=service.auth)

    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("occurred_at", "extra"),
    [
        ("9999-12-30T12:00:00+00:00", {}),
        ("0001-01-01T00:00:00+00:00", {}),
        ("2026-03-02T10:00:00+00:00", {"matter_date": "0001-01-01"}),
        ("2026-03-02T10:00:00+00:00", {"matter_date": "9999-12-31"}),
    ],
)
async def test_a_case_action_dated_at_the_ends_of_the_calendar_is_not_a_server_error(
    services: dict[str, ServiceUnderTest], occurred_at: str, extra: dict[str, str]
) -> None:
    service = services["complaints"]
    complaint_id = f"hostile-end-{abs(hash((occurred_at, str(extra))))}"
    record = action_record("open", complaint_id, "open-1", datetime.now(UTC), **extra)
    record["occurred_at"] = occurred_at
    opened = await service.client.post(
        f"/v1/complaints/{complaint_id}/actions", json=record, headers=service.auth
    )
    extend = action_record(
        "extend", complaint_id, "extend-1", datetime.now(UTC), new_due_date="9999-12-31"
    )
    extend["occurred_at"] = occurred_at
    extended = await service.client.post(
        f"/v1/complaints/{complaint_id}/actions", json=extend, headers=service.auth
    )

    assert opened.status_code < 500, opened.text
    assert extended.status_code < 500, extended.text


@pytest.mark.parametrize("name", ["intake", "complaints", "feedback", "metrics"])
async def test_a_nul_byte_in_a_path_parameter_is_refused_not_a_server_error(
    services: dict[str, ServiceUnderTest], name: str
) -> None:
    """Found by hand: `GET /v1/complaints/%00` reached PostgreSQL, which refuses U+0000."""
    service = services[name]
    outcomes: dict[tuple[str, str], int] = {}
    for template, items in service.app.openapi()["paths"].items():
        for parameter in {p for op in items.values() for p in _path_parameters(op)}:
            path = template.format(**(PATH_VALUES | {parameter: "a%00b"}))
            for method in items:
                response = await service.client.request(
                    method.upper(), path, json={}, headers=service.auth
                )
                outcomes[(method.upper(), path)] = response.status_code

    server_errors = {key: code for key, code in outcomes.items() if code >= 500}
    assert server_errors == {}
    if name in {"complaints", "feedback"}:
        assert outcomes, "the service has path parameters to try"


def _path_parameters(operation: dict[str, Any]) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
