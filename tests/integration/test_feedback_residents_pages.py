"""The residents' pages as deployed: `python -m services.feedback` behind a trusted proxy.

Issue 12, "The residents' pages": CSP, `frame-ancestors 'none'`,
`X-Content-Type-Options: nosniff` and a referrer policy; a per-address rate
limit on the answer and opt-out endpoints, returning 429 with `Retry-After`.

The service runs as operators run it (uvicorn from `serve`), on the real Kafka
and PostgreSQL, with a real answer link from the notifications topic. The
"proxy" is a second loopback address: `CIVICPULSE_HTTP_FORWARDED_ALLOW_IPS`
trusts 127.0.0.2 only, so its `X-Forwarded-For` names the resident, while the
same header from 127.0.0.1 is ignored.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from civicpulse.infra import pick_free_port
from civicpulse.processes import ServiceProcess
from services.feedback.notifications import NotifyMessage
from services.feedback.pages import CONTENT_SECURITY_POLICY
from shared.api_keys import hash_api_key
from shared.topics import COMPLAINTS, CONTACTS, NOTIFICATIONS
from tests.support.feedback import TOKEN_SECRET, contact_resolved, new_id, publish
from tests.support.kafka import new_group_at_end, read_topic

pytestmark = pytest.mark.integration
CRM_KEY = "residents-pages-crm-key-0123456789"
PROXY = "127.0.0.2"
LIMIT = 3
ANSWERS = {"overall": "5", "ease": "7", "resolved": "yes", "comment": ""}


@pytest.fixture(scope="module")
async def feedback(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    port = pick_free_port()
    env = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
        "CIVICPULSE_HTTP_PORT": str(port),
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET": TOKEN_SECRET,
        "CIVICPULSE_FEEDBACK_API_KEYS": f'{{"crm": "{hash_api_key(CRM_KEY)}"}}',
        "CIVICPULSE_FEEDBACK_DELAY_HOURS": "0",
        "CIVICPULSE_FEEDBACK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CIVICPULSE_FEEDBACK_RATE_LIMIT": f"{LIMIT}/minute",
        "CIVICPULSE_HTTP_FORWARDED_ALLOW_IPS": PROXY,
        "CIVICPULSE_FEEDBACK_GROUP_ID": await new_group_at_end(
            kafka_bootstrap, [CONTACTS.name, COMPLAINTS.name], "test-residents-pages"
        ),
    }
    log = tmp_path_factory.mktemp("residents") / "feedback.log"
    process = ServiceProcess("services.feedback", env, log)
    process.start()
    try:
        await asyncio.to_thread(process.wait_healthy)
        yield process
    finally:
        await asyncio.to_thread(process.terminate)
        process.kill()


def from_address(process: ServiceProcess, local: str) -> httpx.AsyncClient:
    """A client whose connections come from `local` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=local)
    return httpx.AsyncClient(base_url=process.base_url, transport=transport, timeout=30)


async def answer_link(process: ServiceProcess, kafka_bootstrap: str) -> str:
    """A real link: a route, a resolved contact, the request the service sends for it."""
    customer, contact = new_id("CUST"), new_id("C")
    async with httpx.AsyncClient(base_url=process.base_url, timeout=30) as crm:
        route = await crm.put(
            f"/v1/customers/{customer}/contact-route",
            json={"email": "resident@example.org"},
            headers={"X-API-Key": CRM_KEY},
        )
        assert route.status_code == 204, route.text
        await publish(kafka_bootstrap, contact_resolved(contact, customer, datetime.now(UTC)))
        records = await read_topic(
            kafka_bootstrap,
            NOTIFICATIONS.name,
            until=lambda rs: any(customer in _sent_to(r.value) for r in rs),
            within_seconds=60,
        )
    [message] = [
        NotifyMessage.model_validate_json(r.value) for r in records if customer in _sent_to(r.value)
    ]
    return urlsplit(message.personalisation.survey_link).path


def _sent_to(value: bytes) -> str:
    # The topic also holds other tests' records, a deliberately broken one among them
    # (test_feedback_sender.py): those are nobody's message.
    try:
        return NotifyMessage.model_validate_json(value).customer_ref
    except ValidationError:
        return ""


def assert_guarded(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_a_resident_behind_the_proxy_answers_then_is_limited_alone(
    feedback: ServiceProcess, kafka_bootstrap: str
) -> None:
    path = await answer_link(feedback, kafka_bootstrap)
    resident = {"X-Forwarded-For": "198.51.100.10"}
    neighbour = {"X-Forwarded-For": "198.51.100.11"}

    async with from_address(feedback, PROXY) as proxy:
        form = await proxy.get(path, headers=resident)
        thanks = await proxy.post(path, data=ANSWERS, headers=resident)
        again = await proxy.get(path, headers=resident)
        limited = await proxy.get(path, headers=resident)
        other = await proxy.get(path, headers=neighbour)
        opted_out = await proxy.post(f"{path}/opt-out", headers=neighbour)

    assert form.status_code == 200
    assert "<form" in form.text
    assert thanks.status_code == 200
    assert "Thank you for your feedback" in thanks.text
    assert again.status_code == 409  # single use: the problem page
    for page in (form, thanks, again):
        assert_guarded(page)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "too many attempts" in limited.text
    assert_guarded(limited)
    assert other.status_code == 409  # another resident behind the same proxy: own count
    assert opted_out.status_code == 200
    assert "You will not get satisfaction surveys from us" in opted_out.text
    assert_guarded(opted_out)


async def test_x_forwarded_for_from_an_untrusted_address_is_ignored(
    feedback: ServiceProcess,
) -> None:
    """Changing the header on each request does not buy a direct caller more turns."""
    async with from_address(feedback, "127.0.0.1") as direct:
        codes = [
            (
                await direct.get(
                    "/surveys/not-a-token", headers={"X-Forwarded-For": f"203.0.113.{n}"}
                )
            ).status_code
            for n in range(LIMIT + 1)
        ]

    assert codes == [400] * LIMIT + [429]
