"""Intake, complaints and metrics on the `--secure` broker and PostgreSQL over TLS.

Issue 12, "What it must show": an integration test runs intake, complaints
and metrics against the `--secure` broker and the TLS PostgreSQL, end to end,
and shows that a client without credentials is refused, and that intake's
principal cannot read `civicpulse.notifications`. The services run in
production mode (CIVICPULSE_ENVIRONMENT=production), so the same settings
also pass its checks.
"""

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from civicpulse.infra import infra_down, pick_free_port
from civicpulse.processes import ServiceProcess
from civicpulse.secure_infra import SecureInfra, secure_down, secure_up
from shared.api_keys import hash_api_key
from shared.kafka import KafkaConnection, kafka_client_options
from shared.topics import COMPLAINTS, CONTACTS, CONTACTS_RAW, NOTIFICATIONS
from tests.support.kafka import Record, read_topic

pytestmark = pytest.mark.integration

CRM_KEY = secrets.token_urlsafe(24)
METRICS_PORTS: dict[str, int] = {}  # service -> its CIVICPULSE_METRICS_PORT
MANAGER_TOKEN = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureInfra]:
    run_dir = tmp_path_factory.mktemp("secure")
    stack = secure_up(run_dir)
    try:
        yield stack
    finally:
        secure_down(run_dir)
        infra_down(run_dir, quiet=True)


def service_env(secure: SecureInfra, principal: str, role: str, **extra: str) -> dict[str, str]:
    return {
        **secure.kafka_env(principal),
        "CIVICPULSE_ENVIRONMENT": "production",
        "CIVICPULSE_DATABASE_URL": secure.database_roles[role],
        "CIVICPULSE_MIGRATION_DATABASE_URL": secure.database_roles["civicpulse_owner"],
        "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
        "CIVICPULSE_METRICS_PORT": str(pick_free_port()),
        **extra,
    }


@pytest.fixture(scope="module")
async def services(
    secure: SecureInfra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("secure-logs")
    tokens = {"managers": {"role": "manager", "hash": hash_api_key(MANAGER_TOKEN)}}
    envs = {
        "intake": service_env(
            secure,
            "civicpulse-intake",
            "civicpulse_intake",
            CIVICPULSE_INTAKE_API_KEYS=json.dumps({"crm": hash_api_key(CRM_KEY)}),
        ),
        "complaints": service_env(secure, "civicpulse-complaints", "civicpulse_complaints"),
        "metrics": service_env(
            secure,
            "civicpulse-metrics",
            "civicpulse_metrics",
            CIVICPULSE_METRICS_API_TOKENS=json.dumps(tokens),
        ),
    }
    running = {
        name: ServiceProcess(f"services.{name}", env, logs / f"{name}.log")
        for name, env in envs.items()
    }
    for name, process in running.items():
        METRICS_PORTS[name] = int(envs[name]["CIVICPULSE_METRICS_PORT"])
        process.start()
    try:
        for process in running.values():
            await asyncio.to_thread(process.wait_healthy, 60.0)
        yield running
    finally:
        for process in running.values():
            process.kill()


def contact(contact_id: str, occurred_at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "record_type": "contact_received",
        "idempotency_key": f"key-{contact_id}",
        "contact_id": contact_id,
        "occurred_at": occurred_at.isoformat(),
        "channel": "Phone",
        "service_area": "waste",
        "kind": "enquiry",
        "customer_ref": "CUST-SECURE-1",
        "answered_by_team": "waste",
        "wait_seconds": 12,
        **fields,
    }


async def test_the_pipeline_runs_end_to_end_over_sasl_ssl_and_tls(
    secure: SecureInfra, services: dict[str, ServiceProcess]
) -> None:
    occurred_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    by_http, by_kafka = f"http-{uuid.uuid4().hex[:8]}", f"raw-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=services["intake"].base_url) as client:
        accepted = await client.post(
            "/v1/contacts",
            json=contact(by_http, occurred_at, kind="complaint"),
            headers={"X-API-Key": CRM_KEY},
        )
    assert accepted.status_code == 202, accepted.text
    # The CRM's own principal may write the raw topic, and only that.
    producer = AIOKafkaProducer(
        **kafka_client_options(secure.connection("civicpulse-crm")), enable_idempotence=True
    )
    await producer.start()
    try:
        record = contact(by_kafka, occurred_at, source="crm")
        await producer.send_and_wait(CONTACTS_RAW.name, json.dumps(record).encode())
    finally:
        await producer.stop()

    ops = secure.connection("civicpulse-ops")
    contacts = await read_topic(
        ops,
        CONTACTS.name,
        until=lambda rs: {r.key for r in rs} >= {by_http.encode(), by_kafka.encode()},
    )
    assert {r.key for r in contacts} == {by_http.encode(), by_kafka.encode()}

    def opened(records: list[Record]) -> list[Record]:
        return [r for r in records if r.headers.get("event_type") == b"ComplaintOpened"]

    complaints = await read_topic(ops, COMPLAINTS.name, until=lambda rs: bool(opened(rs)))
    [complaint] = opened(complaints)  # the enquiry by Kafka opened none
    assert json.loads(complaint.value)["payload"]["contact_id"] == by_http

    async with httpx.AsyncClient(base_url=services["metrics"].base_url) as client:
        for _ in range(100):
            response = await client.get(
                "/v1/kpis",
                params={"from": occurred_at.date().isoformat(), "period": "day"},
                headers={"Authorization": f"Bearer {MANAGER_TOKEN}"},
            )
            assert response.status_code == 200, response.text
            kpis = {row["kpi"]: row for row in response.json()["kpis"]}
            if kpis["contacts_received"]["value"] == 2:
                break
            await asyncio.sleep(0.2)
    assert kpis["contacts_received"]["value"] == 2
    assert kpis["complaints_received_stage_1"]["value"] == 1


@pytest.mark.parametrize("attempt", ["plaintext", "tls without SASL", "wrong password"])
async def test_a_client_without_credentials_is_refused(secure: SecureInfra, attempt: str) -> None:
    connection = {
        "plaintext": KafkaConnection(secure.bootstrap),
        "tls without SASL": KafkaConnection(
            secure.bootstrap, security_protocol="SSL", ca_file=secure.ca_file
        ),
        "wrong password": KafkaConnection(
            secure.bootstrap,
            security_protocol="SASL_SSL",
            username="civicpulse-intake",
            password="not-the-password",
            ca_file=secure.ca_file,
        ),
    }[attempt]
    consumer = AIOKafkaConsumer(**kafka_client_options(connection), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await consumer.start()
    await consumer.stop()


async def test_intakes_principal_cannot_read_notifications(secure: SecureInfra) -> None:
    def consumer(principal: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            NOTIFICATIONS.name,
            **kafka_client_options(secure.connection(principal)),
            group_id={"civicpulse-intake": "civicpulse-intake"}.get(principal, "civicpulse-ops-t"),
            enable_auto_commit=False,
        )

    intake = consumer("civicpulse-intake")
    with pytest.raises(TopicAuthorizationFailedError):
        await intake.start()
    await intake.stop()
    # The topic is there and readable by the ops principal: the refusal is intake's.
    ops = consumer("civicpulse-ops")
    await ops.start()
    await ops.stop()
    # Nor may intake write what another service owns.
    producer = AIOKafkaProducer(**kafka_client_options(secure.connection("civicpulse-intake")))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(COMPLAINTS.name, b"{}")
    finally:
        await producer.stop()


async def test_postgres_roles_are_tls_only_and_see_only_their_own_tables(
    secure: SecureInfra, services: dict[str, ServiceProcess]
) -> None:
    intake_url = secure.database_roles["civicpulse_intake"]
    plain_url = intake_url.split("?", 1)[0]
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await asyncpg.connect(plain_url, ssl=False)  # pg_hba: TLS or nothing
    connection = await asyncpg.connect(intake_url)
    try:
        assert await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await connection.fetchval("SELECT count(*) FROM intake_accepted_records")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval("SELECT count(*) FROM complaints")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CREATE TABLE intake_extra (id int)")
        # Row-level security on the shared tables: another service's rows are invisible
        # and cannot be written under its name.
        event_id = uuid.uuid4()
        owner = await asyncpg.connect(secure.database_roles["civicpulse_owner"])
        try:
            await owner.execute(
                "INSERT INTO processed_events (service, event_id) VALUES ('complaints', $1)",
                event_id,
            )
        finally:
            await owner.close()
        seen = "SELECT count(*) FROM processed_events WHERE event_id = $1"
        assert await connection.fetchval(seen, event_id) == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(
                "INSERT INTO processed_events (service, event_id) VALUES ('complaints', $1)",
                uuid.uuid4(),
            )
        await connection.execute(
            "INSERT INTO processed_events (service, event_id) VALUES ('intake', $1)", event_id
        )
        assert await connection.fetchval(seen, event_id) == 1
    finally:
        await connection.close()


async def test_metrics_and_docs_are_not_on_the_api_port_in_production(
    services: dict[str, ServiceProcess],
) -> None:
    """Issue 12, "Operational endpoints": /metrics on CIVICPULSE_METRICS_PORT, /docs off."""
    process = services["metrics"]
    metrics_port = METRICS_PORTS["metrics"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{process.base_url}/metrics")).status_code == 404
        assert (await client.get(f"{process.base_url}/docs")).status_code == 404
        scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200
    assert "metrics_consumer_lag_records" in scraped.text


def test_the_state_file_and_passwords_are_private(secure: SecureInfra) -> None:
    for path in [secure.home / "secure.json", *Path(secure.home / "passwords").iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path
