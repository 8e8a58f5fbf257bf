"""Feedback as an operator runs it: `python -m services.feedback`, stopped with SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from civicpulse.infra import pick_free_port
from civicpulse.processes import REPO_ROOT, ServiceProcess
from shared.api_keys import hash_api_key
from shared.topics import COMPLAINTS, CONTACTS
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
