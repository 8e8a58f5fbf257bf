"""A real Prometheus scraping the running services: every Grafana dashboard query
returns data through Prometheus's HTTP API, and the alert rules load.

Prometheus (Debian's `prometheus` package) runs in a temporary directory with a
1-second scrape interval; the services whose metrics the dashboards use run as
operators run them (`python -m services.<name>`). Traffic: contact records through
intake (accepted, duplicate, rejected, dead-lettered), a known day of canonical
events for today (so every KPI on the managers' dashboard has a value) and a refused
survey link. A new dashboard for another service needs that service started here.
"""

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from faststream.kafka import KafkaBroker

from civicpulse.infra import pick_free_port
from civicpulse.processes import ServiceProcess
from services.metrics.periods import local_day
from shared.api_keys import hash_api_key
from shared.events.catalogue import topic_for
from shared.kafka import make_broker, publish_events
from shared.topics import CANONICAL_TOPICS, COMPLAINTS, CONTACTS, CONTACTS_RAW
from tests.integration.test_intake import contact_record
from tests.support.kafka import kcat_produce, new_group_at_end
from tests.support.metrics import Events, known_day
from tests.unit.test_deploy_files import RULE_FILES, _dashboard_queries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
INTAKE_KEY = "prometheus-test-key-0123456789"
QUERY_DEADLINE_SECONDS = 60


@pytest.fixture(scope="module")
async def services(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("services")
    common = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
    }
    intake = ServiceProcess(
        "services.intake",
        {
            **common,
            "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
            "CIVICPULSE_INTAKE_GROUP_ID": await new_group_at_end(
                kafka_bootstrap, CONTACTS_RAW.name, "test-prometheus-intake"
            ),
            "CIVICPULSE_INTAKE_API_KEYS": json.dumps({"crm": hash_api_key(INTAKE_KEY)}),
        },
        logs / "intake.log",
    )
    metrics = ServiceProcess(
        "services.metrics",
        {
            **common,
            "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
            "CIVICPULSE_METRICS_GROUP_ID": await new_group_at_end(
                kafka_bootstrap, [t.name for t in CANONICAL_TOPICS], "test-prometheus-metrics"
            ),
            "CIVICPULSE_METRICS_REFRESH_SECONDS": "0.5",
        },
        logs / "metrics.log",
    )
    feedback = ServiceProcess(
        "services.feedback",
        {
            **common,
            "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
            "CIVICPULSE_FEEDBACK_GROUP_ID": await new_group_at_end(
                kafka_bootstrap, [CONTACTS.name, COMPLAINTS.name], "test-prometheus-feedback"
            ),
            "CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET": "true",
        },
        logs / "feedback.log",
    )
    processes = {"intake": intake, "metrics": metrics, "feedback": feedback}
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            await asyncio.to_thread(process.wait_healthy)
        yield processes
    finally:
        for process in processes.values():
            process.stop()


@pytest.fixture(scope="module")
def prometheus(
    services: dict[str, ServiceProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: apt-get install -y prometheus (CI installs it)")
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": f"civicpulse-{name}",
                "static_configs": [{"targets": [f"127.0.0.1:{process.port}"]}],
            }
            for name, process in services.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = pick_free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus not ready:\n{log.read_text(errors='replace')[-3000:]}")


async def _traffic(services: dict[str, ServiceProcess], kafka_bootstrap: str) -> None:
    prefix = f"prom-{uuid.uuid4().hex[:8]}"
    record = contact_record(f"{prefix}-1", source="crm")
    headers = {"X-API-Key": INTAKE_KEY}
    async with httpx.AsyncClient(base_url=services["intake"].base_url, timeout=10) as client:
        assert (await client.post("/v1/contacts", json=record, headers=headers)).status_code == 202
        assert (await client.post("/v1/contacts", json=record, headers=headers)).status_code == 202
        invalid = contact_record(f"{prefix}-2", source="crm", channel="pigeon")
        assert (await client.post("/v1/contacts", json=invalid, headers=headers)).status_code == 422
    await asyncio.to_thread(kcat_produce, kafka_bootstrap, CONTACTS_RAW.name, b"{not json")
    async with httpx.AsyncClient(base_url=services["feedback"].base_url, timeout=10) as client:
        refused = await client.get("/surveys/not-a-signed-link")
        assert refused.status_code >= 400
    today = local_day(datetime.now(UTC))
    broker: KafkaBroker = make_broker(kafka_bootstrap, client_id="test-prometheus-publisher")
    await broker.start()
    try:
        events = known_day(Events(prefix), today)
        for topic in {topic_for(type(event)) for event in events}:
            await publish_events(broker, topic, [e for e in events if topic_for(type(e)) == topic])
    finally:
        await broker.stop()


async def _query(client: httpx.AsyncClient, expr: str) -> list[Any]:
    response = await client.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()["data"]["result"]
    return result


async def test_every_dashboard_query_returns_data_from_the_running_services(
    services: dict[str, ServiceProcess], prometheus: str, kafka_bootstrap: str
) -> None:
    await _traffic(services, kafka_bootstrap)
    queries = _dashboard_queries()
    empty = queries
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        deadline = time.monotonic() + QUERY_DEADLINE_SECONDS
        while empty and time.monotonic() < deadline:
            empty = [(where, expr) for where, expr in empty if not await _query(client, expr)]
            if empty:
                await asyncio.sleep(1)

    assert len(queries) >= 25
    assert not empty, "dashboard queries with no data:\n" + "\n".join(
        f"{where}: {expr}" for where, expr in empty
    )


async def test_prometheus_loads_every_alert_rule(prometheus: str) -> None:
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        response = await client.get("/api/v1/rules")

    names = {rule["name"] for group in response.json()["data"]["groups"] for rule in group["rules"]}
    assert {
        "CivicPulseServiceDown",
        "CivicPulseConsumerLagHigh",
        "CivicPulseSurgeDetected",
    } <= names


async def test_every_started_service_is_up_in_prometheus(prometheus: str) -> None:
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        deadline = time.monotonic() + 20
        up: list[Any] = []
        while time.monotonic() < deadline and len(up) < 3:
            up = await _query(client, 'up{job=~"civicpulse-.*"} == 1')
            await asyncio.sleep(0.5)

    assert {sample["metric"]["job"] for sample in up} == {
        "civicpulse-intake",
        "civicpulse-metrics",
        "civicpulse-feedback",
    }
