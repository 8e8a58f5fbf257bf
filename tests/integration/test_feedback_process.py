"""Feedback as an operator runs it: `python -m services.feedback`, stopped with SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from civicpulse.infra import pick_free_port
from civicpulse.processes import REPO_ROOT, ServiceProcess
from services.feedback.notifications import ContactRoute, notify_message
from services.feedback.settings import SERVICE
from services.feedback.store import MIGRATIONS, FeedbackStore
from shared.api_keys import hash_api_key
from shared.events.envelope import utc_now
from shared.postgres import create_pool, migrate
from shared.topics import COMPLAINTS, CONTACTS, NOTIFICATIONS
from tests.support.fake_notify import API_KEY, serving_fake_notify
from tests.support.feedback import TOKEN_SECRET
from tests.support.kafka import new_group_at_end

pytestmark = pytest.mark.integration


async def test_the_service_starts_reports_its_metrics_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path: Path
) -> None:
    env = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
        "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET": TOKEN_SECRET,
        "CIVICPULSE_FEEDBACK_API_KEYS": f'{{"crm": "{hash_api_key("k" * 20)}"}}',
        "CIVICPULSE_FEEDBACK_GROUP_ID": await new_group_at_end(
            kafka_bootstrap, [CONTACTS.name, COMPLAINTS.name], "test-feedback-process"
        ),
    }
    process = ServiceProcess("services.feedback", env, tmp_path / "feedback.log")
    process.start()
    try:
        await asyncio.to_thread(process.wait_healthy)
        async with httpx.AsyncClient(base_url=process.base_url) as client:
            metrics = (await client.get("/metrics")).text
        exit_code = await asyncio.to_thread(process.terminate)
    finally:
        process.kill()

    for name in (
        "feedback_requests_scheduled_total",
        "feedback_requests_sent_total",
        "feedback_requests_answered_total",
        "feedback_requests_expired_total",
        'feedback_requests_suppressed_total{reason="quiet_period"}',
        'outbox_backlog_events{service="feedback"}',
    ):
        assert name in metrics
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    assert exit_code in (0, -signal.SIGTERM), process.log_tail()
    assert "Application shutdown complete" in process.log_tail()


def test_the_sender_refuses_to_start_without_a_notify_api_key() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY"
    }
    env["CIVICPULSE_FEEDBACK_TOKEN_SECRET"] = TOKEN_SECRET

    result = subprocess.run(
        [sys.executable, "-m", "services.feedback", "send"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY is not set" in result.stderr
    assert "nothing is sent" in result.stderr


async def test_the_sender_process_stays_up_and_not_ready_when_notify_refuses_its_key(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path: Path
) -> None:
    """Issue 12, item 8: a 403 stops the sender; the process stays up (no crash loop
    against the key), says why on /healthz and /metrics, and dead-letters nothing."""
    customer_ref = f"CUST-proc-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    try:
        await migrate(pool, SERVICE, MIGRATIONS)
        await FeedbackStore(pool).put_contact_route(
            customer_ref, ContactRoute(email="resident@example.org"), utc_now()
        )
    finally:
        await pool.close()
    message = notify_message(
        ContactRoute(email="resident@example.org"),
        request_id=f"req-{uuid.uuid4().hex[:12]}",
        customer_ref=customer_ref,
        survey_link="https://feedback.example.gov.uk/surveys/t",
        service_area="waste",
        expires_at=utc_now(),
        email_template_id="email-template",
        sms_template_id="sms-template",
    )
    port = pick_free_port()
    with serving_fake_notify() as (fake, notify_url):
        fake.status = 403
        env = {
            **os.environ,
            "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "CIVICPULSE_DATABASE_URL": database_url,
            "CIVICPULSE_HTTP_PORT": str(port),
            "CIVICPULSE_FEEDBACK_TOKEN_SECRET": TOKEN_SECRET,
            "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY": API_KEY,
            "CIVICPULSE_FEEDBACK_NOTIFY_BASE_URL": notify_url,
            "CIVICPULSE_FEEDBACK_SENDER_GROUP_ID": await new_group_at_end(
                kafka_bootstrap, [NOTIFICATIONS.name], "test-sender-process"
            ),
        }
        log_path = tmp_path / "sender.log"
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.feedback",
                "send",
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(
                    NOTIFICATIONS.name, message.to_bytes(), key=message.reference.encode()
                )
            finally:
                await producer.stop()

            async def stopped() -> httpx.Response | None:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    deadline = asyncio.get_running_loop().time() + 60
                    while asyncio.get_running_loop().time() < deadline:
                        assert process.returncode is None, log_path.read_text()
                        try:
                            health = await client.get("/healthz")
                        except httpx.HTTPError:
                            health = None
                        if health is not None and health.status_code == 503:
                            return health
                        await asyncio.sleep(0.2)
                return None

            health = await stopped()
            assert health is not None, log_path.read_text()[-3000:]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                metrics = (await client.get("/metrics")).text
            assert process.returncode is None  # still up: stopped, not crashed
        finally:
            process.send_signal(signal.SIGTERM)
            exit_code = await asyncio.wait_for(process.wait(), 45)

    assert "refused the API key (forbidden)" in health.json()["problem"]
    assert 'feedback_notify_sender_stopped{reason="forbidden"} 1.0' in metrics
    dead_lettered = [
        line for line in metrics.splitlines() if line.startswith("feedback_notifications_dead_")
    ]
    assert dead_lettered == []
    assert fake.references == [message.reference]
    assert exit_code in (0, -signal.SIGTERM)
