"""Notify's delivery-status callback on the running feedback service and PostgreSQL."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.feedback.delivery_store import DeliveryStore
from services.feedback.store import FeedbackStore, SurveyRequest
from shared.events.vocabulary import CaseType, Channel
from tests.support.feedback import (
    CALLBACK_TOKEN,
    RunningService,
    feedback_from_now,
)

pytestmark = pytest.mark.integration
PATH = "/v1/notify/delivery-status"
NOTIFY = {"Authorization": f"Bearer {CALLBACK_TOKEN}"}


@pytest.fixture
async def feedback(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningService]:
    async with feedback_from_now(kafka_bootstrap, database_url, "test-delivery-status") as service:
        yield service


async def surveyed_customer(
    service: RunningService, pool: asyncpg.Pool, email: str
) -> tuple[str, str]:
    """A customer with a route and a survey request: (customer_ref, request_id)."""
    customer_ref = f"CUST-{uuid.uuid4().hex[:8]}"
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    response = await service.client.put(
        f"/v1/customers/{customer_ref}/contact-route", json={"email": email}
    )
    assert response.status_code == 204
    now = service.clock()
    await FeedbackStore(pool).insert_request(
        SurveyRequest(
            request_id=request_id,
            case_type=CaseType.CONTACT,
            case_id=f"C-{uuid.uuid4().hex[:8]}",
            customer_ref=customer_ref,
            service_area="waste",
            channel=Channel.PHONE,
            resolved_at=now,
            send_at=now,
            status="scheduled",
        )
    )
    return customer_ref, request_id


def receipt(service: RunningService, reference: str, status: str, minutes: int) -> dict[str, Any]:
    """A receipt for a notification Notify created after the route was put."""
    created = service.clock() + timedelta(minutes=1)
    return {
        "id": str(uuid.uuid4()),
        "reference": reference,
        "to": "resident@example.org",
        "status": status,
        "created_at": created.isoformat(),
        "completed_at": (created + timedelta(minutes=minutes)).isoformat(),
        "sent_at": created.isoformat(),
        "notification_type": "email",
        "template_id": str(uuid.uuid4()),
        "template_version": 1,
    }


async def post(service: RunningService, body: Any, headers: dict[str, str] = NOTIFY) -> Any:
    return await service.client.post(PATH, json=body, headers=headers)


async def test_the_latest_status_is_kept_whatever_order_receipts_come_in(
    feedback: RunningService, pool: asyncpg.Pool
) -> None:
    """Issue 12, item 8: "it records delivered, permanently failed or temporarily failed
    per request"; repeats change nothing and an older receipt never replaces a final one."""
    _, request_id = await surveyed_customer(feedback, pool, "resident@example.org")
    store = DeliveryStore(pool)
    delivered = receipt(feedback, request_id, "delivered", 5)

    first = await post(feedback, delivered)
    repeat = await post(feedback, delivered)
    older = await post(feedback, receipt(feedback, request_id, "temporary-failure", 2))
    later_temporary = await post(feedback, receipt(feedback, request_id, "temporary-failure", 9))

    assert first.status_code == 200, first.text
    assert [r.json()["outcome"] for r in (first, repeat, older, later_temporary)] == [
        "recorded",
        "kept_latest",
        "kept_latest",
        "kept_latest",  # a final status is not regressed, even by a later non-final one
    ]
    status = await store.delivery_status(request_id)
    assert status is not None
    assert status[0] == "delivered"


async def test_a_temporary_failure_is_replaced_by_the_final_status_that_follows(
    feedback: RunningService, pool: asyncpg.Pool
) -> None:
    _, request_id = await surveyed_customer(feedback, pool, "resident@example.org")
    store = DeliveryStore(pool)

    await post(feedback, receipt(feedback, request_id, "temporary-failure", 1))
    replaced = await post(feedback, receipt(feedback, request_id, "delivered", 0))

    assert replaced.json()["outcome"] == "recorded"
    status = await store.delivery_status(request_id)
    assert status is not None
    assert status[0] == "delivered"


async def test_a_permanent_failure_marks_the_address_bad_until_the_crm_puts_another(
    feedback: RunningService, pool: asyncpg.Pool
) -> None:
    """Issue 12, item 8: "a permanent failure marks the contact route bad"."""
    customer_ref, request_id = await surveyed_customer(feedback, pool, "gone@example.org")
    store = DeliveryStore(pool)

    response = await post(feedback, receipt(feedback, request_id, "permanent-failure", 1))

    assert response.json()["outcome"] == "recorded"
    assert (await store.route_state(customer_ref)).email_bad
    same = await feedback.client.put(
        f"/v1/customers/{customer_ref}/contact-route", json={"email": "gone@example.org"}
    )
    assert same.status_code == 204
    assert (await store.route_state(customer_ref)).email_bad  # the same address: still bad
    other = await feedback.client.put(
        f"/v1/customers/{customer_ref}/contact-route", json={"email": "new@example.org"}
    )
    assert other.status_code == 204
    state = await store.route_state(customer_ref)
    assert (state.email, state.email_bad) == ("new@example.org", False)
    counted = feedback.registry.get_sample_value(
        "feedback_contact_routes_marked_bad_total", {"notification_type": "email"}
    )
    assert counted is not None
    assert counted >= 1


async def test_a_failure_of_an_address_the_crm_has_since_replaced_marks_nothing(
    feedback: RunningService, pool: asyncpg.Pool
) -> None:
    customer_ref, request_id = await surveyed_customer(feedback, pool, "old@example.org")
    store = DeliveryStore(pool)
    feedback.clock.advance(timedelta(hours=1))
    await feedback.client.put(
        f"/v1/customers/{customer_ref}/contact-route", json={"email": "new@example.org"}
    )
    stale = receipt(feedback, request_id, "permanent-failure", 1)
    stale["created_at"] = (feedback.clock() - timedelta(minutes=30)).isoformat()

    response = await post(feedback, stale)

    assert response.json()["outcome"] == "recorded"
    assert not (await store.route_state(customer_ref)).email_bad


@pytest.mark.parametrize(
    ("headers", "body", "code", "field"),
    [
        ({}, None, 401, None),
        ({"Authorization": "Bearer not-the-token"}, None, 401, None),
        (NOTIFY, b"{not json", 400, None),
        (NOTIFY, [1, 2], 422, None),
        (NOTIFY, {"status": "delivered"}, 422, "id"),
        (NOTIFY, {"status": "lost"}, 422, "status"),
        (NOTIFY, {"reference": None}, 422, "reference"),
        (NOTIFY, {"reference": "req-nobody-sent"}, 404, None),
    ],
)
async def test_bad_callbacks_get_a_4xx_naming_the_field(
    feedback: RunningService,
    headers: dict[str, str],
    body: Any,
    code: int,
    field: str | None,
) -> None:
    good = receipt(feedback, "req-x", "delivered", 1)
    if isinstance(body, bytes):
        response = await feedback.client.post(
            PATH, content=body, headers={**headers, "Content-Type": "application/json"}
        )
    elif isinstance(body, dict):
        document = {**good, **body}
        if "id" in body or field == "id":
            document.pop("id")
        response = await post(feedback, document, headers)
    elif body is None:
        response = await post(feedback, good, headers)
    else:
        response = await post(feedback, body, headers)

    assert response.status_code == code, response.text
    if field is not None:
        assert field in [error["loc"][0] for error in response.json()["detail"]]


async def test_the_callback_is_documented_with_its_bearer_scheme(
    feedback: RunningService, pool: asyncpg.Pool
) -> None:
    document = (await feedback.client.get("/openapi.json")).json()
    operation = document["paths"][PATH]["post"]

    assert {"HTTPBearer": []} in operation["security"]
    assert {"200", "400", "401", "404", "413", "422"} <= set(operation["responses"])
