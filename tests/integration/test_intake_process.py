"""Intake as an operator runs it: `python -m services.intake`, stopped with SIGTERM."""

import asyncio
import json
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from civicpulse.infra import kafka_classpath, pick_free_port
from civicpulse.processes import ServiceProcess
from shared.api_keys import hash_api_key
from shared.topics import CONTACTS, CONTACTS_RAW
from tests.integration.test_intake import contact_record
from tests.support.kafka import new_group_at_end, read_topic

pytestmark = pytest.mark.integration
RECORDS = 3000


@pytest.fixture
async def intake_process(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    group_id = await new_group_at_end(kafka_bootstrap, CONTACTS_RAW.name, "test-intake-process")
    env = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
        "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
        "CIVICPULSE_INTAKE_GROUP_ID": group_id,
        "CIVICPULSE_INTAKE_MAX_BATCH": "100",
        "CIVICPULSE_INTAKE_API_KEYS": json.dumps({"crm": hash_api_key("k" * 20)}),
    }
    process = ServiceProcess("services.intake", env, tmp_path / "intake.log")
    yield process
    process.kill()


async def produce_records(bootstrap: str, prefix: str, count: int) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    contact_ids = [f"{prefix}-{n}" for n in range(count)]
    try:
        sends = [
            await producer.send(
                CONTACTS_RAW.name,
                json.dumps(contact_record(contact_id)).encode(),
                key=contact_id.encode(),
            )
            for contact_id in contact_ids
        ]
        for sent in sends:
            await sent
    finally:
        await producer.stop()
    return contact_ids


def active_groups_reading(bootstrap: str, topic: str) -> set[str]:
    """Consumer groups with a live member assigned a partition of `topic`, as Kafka's
    own consumer-group tool reports them (aiokafka cannot decode Kafka 4's answer)."""
    done = subprocess.run(
        [
            "java",
            "-cp",
            kafka_classpath(),
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--all-groups",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = [line.split() for line in done.stdout.splitlines()]
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    return {row[0] for row in rows if len(row) >= 7 and row[1] == topic and row[6] != "-"}


async def test_sigterm_mid_stream_loses_nothing_and_a_restart_finishes_the_work(
    intake_process: ServiceProcess, kafka_bootstrap: str
) -> None:
    prefix = f"sigterm-{uuid.uuid4().hex[:8]}"
    intake_process.start()
    intake_process.wait_healthy()
    # Only the process under test reads the raw topic: no other intake can
    # finish its work for it and hide a loss.
    own_group = intake_process.env["CIVICPULSE_INTAKE_GROUP_ID"]
    assert await asyncio.to_thread(active_groups_reading, kafka_bootstrap, CONTACTS_RAW.name) <= {
        own_group
    }
    contact_ids = await produce_records(kafka_bootstrap, prefix, RECORDS)
    # Let it get part-way through, then stop it as an orchestrator would.
    await read_topic(
        kafka_bootstrap,
        CONTACTS.name,
        until=lambda rs: (
            sum(r.key is not None and r.key.startswith(prefix.encode()) for r in rs)
            >= RECORDS // 10
        ),
    )

    exit_code = intake_process.terminate()

    # uvicorn re-raises SIGTERM once shutdown is complete: 143 is a clean stop.
    assert exit_code in (0, -signal.SIGTERM), intake_process.log_tail()
    assert "Application shutdown complete" in intake_process.log_tail()
    intake_process.start()
    intake_process.wait_healthy()
    wanted = {contact_id.encode() for contact_id in contact_ids}
    records = await read_topic(
        kafka_bootstrap,
        CONTACTS.name,
        until=lambda rs: wanted <= {r.key for r in rs},
        within_seconds=90,
    )
    mine = [r for r in records if r.key in wanted]
    published = Counter(r.key for r in mine)
    print(f"\n{RECORDS} records across SIGTERM: {len(mine)} events, {len(published)} contacts")
    assert set(published) == wanted, "records were lost across the restart"
    # A batch cut short by the stop may be published again after the restart;
    # it must then be the same event (same event_id), which consumers dedupe.
    event_ids: dict[bytes | None, set[str]] = {r.key: set() for r in mine}
    for record in mine:
        event_ids[record.key].add(json.loads(record.value)["event_id"])
    assert all(len(ids) == 1 for ids in event_ids.values())
