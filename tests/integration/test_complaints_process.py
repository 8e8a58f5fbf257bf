"""The complaints service as operators run it (`python -m services.complaints`), killed
at the worst moments: nothing is lost and no effect is doubled."""

import json
import signal
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from civicpulse.infra import pick_free_port
from civicpulse.processes import ServiceProcess
from services.complaints.handlers import Applied, ComplaintsHandler, ComplaintsMetrics
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE
from services.complaints.store import MIGRATIONS, ComplaintsStore
from services.complaints.working_days import WorkingDayCalendar
from shared.events.envelope import utc_now
from shared.postgres import create_pool, migrate
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS, CONTACTS
from tests.support.complaints import action, action_bytes, produce
from tests.support.kafka import Record, new_group_at_end, read_to_end, read_topic
from tests.support.outbox import outbox_drained

pytestmark = pytest.mark.integration
COMPLAINTS_IN_STREAM = 200


@pytest.fixture
async def complaints_process(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    group_id = await new_group_at_end(
        kafka_bootstrap, [CONTACTS.name, COMPLAINT_ACTIONS.name], "test-complaints-process"
    )
    env = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
        "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
        "CIVICPULSE_COMPLAINTS_GROUP_ID": group_id,
        "CIVICPULSE_COMPLAINTS_MAX_BATCH": "20",
    }
    process = ServiceProcess("services.complaints", env, tmp_path / "complaints.log")
    yield process
    process.kill()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    await migrate(pool, SERVICE, MIGRATIONS)
    yield pool
    await pool.close()


def _mine(records: list[Record], prefix: str) -> dict[str, dict[str, set[str]]]:
    """Event ids published per complaint and event type."""
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for record in records:
        if record.key and record.key.startswith(prefix.encode()):
            event = json.loads(record.value)
            seen[event["complaint_id"]][event["event_type"]].add(event["event_id"])
    return seen


async def test_a_state_change_committed_before_a_crash_is_published_once_after_restart(
    complaints_process: ServiceProcess,
    pool: asyncpg.Pool,
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    """Events committed to the outbox while no relay ran are published once the service
    starts, and a later kill and restart publishes them no second time.

    The kill waits for the outbox to drain, not only for the events to be on the
    topic: the relay deletes a row just after the broker acknowledges it, so a
    kill between the two legitimately republishes the same events (same
    `event_id`, which consumers deduplicate; see shared/outbox.py and the
    mid-stream kill test below). Once the deletes have committed, a restart
    must publish nothing again.
    """
    # The state of a service killed after its transaction committed and before
    # the relay published: the complaint changed, its events wait in the outbox.
    complaint_id = f"CMP-crash-{uuid.uuid4().hex[:8]}"
    handler = ComplaintsHandler(
        store=ComplaintsStore(pool),
        calendar=WorkingDayCalendar(),
        policy=Policy(),
        metrics=ComplaintsMetrics(CollectorRegistry()),
        clock=utc_now,
    )
    for kind in ("open", "acknowledge"):
        outcome = await handler.apply(action(kind, complaint_id, kind, utc_now()))
        assert isinstance(outcome, Applied)

    complaints_process.start()
    complaints_process.wait_healthy()
    first = await read_topic(
        kafka_bootstrap,
        COMPLAINTS.name,
        until=lambda rs: len(_mine(rs, complaint_id).get(complaint_id, {})) == 2,
    )
    await outbox_drained(database_url, "complaints")
    complaints_process.kill()
    complaints_process.start()
    complaints_process.wait_healthy()
    await outbox_drained(database_url, "complaints")
    again = await read_to_end(kafka_bootstrap, COMPLAINTS.name)

    published = [r for r in again if r.key == complaint_id.encode()]
    assert {t: len(ids) for t, ids in _mine(first, complaint_id)[complaint_id].items()} == {
        "ComplaintOpened": 1,
        "ComplaintAcknowledged": 1,
    }
    assert len(published) == 2, "the restart published the events again"
    assert await handler.get(complaint_id) is not None


async def test_a_kill_mid_stream_loses_no_action_and_doubles_no_effect(
    complaints_process: ServiceProcess, kafka_bootstrap: str
) -> None:
    prefix = f"CMP-kill-{uuid.uuid4().hex[:8]}"
    complaint_ids = [f"{prefix}-{n}" for n in range(COMPLAINTS_IN_STREAM)]
    now = utc_now()
    records = [
        (cid, action_bytes(kind, cid, f"{kind}-{cid}", now))
        for cid in complaint_ids
        for kind in ("open", "acknowledge")
    ]
    await produce(kafka_bootstrap, COMPLAINT_ACTIONS, records)
    complaints_process.start()
    complaints_process.wait_healthy()
    await read_topic(
        kafka_bootstrap,
        COMPLAINTS.name,
        until=lambda rs: len(_mine(rs, prefix)) >= COMPLAINTS_IN_STREAM // 10,
        within_seconds=60,
    )

    complaints_process.kill()  # SIGKILL: no graceful shutdown at all
    complaints_process.start()
    complaints_process.wait_healthy()
    done = await read_topic(
        kafka_bootstrap,
        COMPLAINTS.name,
        until=lambda rs: sum(len(t) for t in _mine(rs, prefix).values()) >= 2 * len(complaint_ids),
        within_seconds=90,
    )

    seen = _mine(done, prefix)
    assert sorted(seen) == sorted(complaint_ids), "actions were lost across the kill"
    # A record published just before the kill may appear again, but only as the
    # same event (same event_id): never a second effect.
    assert all(
        {t: len(ids) for t, ids in by_type.items()}
        == {"ComplaintOpened": 1, "ComplaintAcknowledged": 1}
        for by_type in seen.values()
    )


async def test_sigterm_stops_the_service_cleanly(complaints_process: ServiceProcess) -> None:
    complaints_process.start()
    complaints_process.wait_healthy()

    exit_code = complaints_process.terminate()

    # uvicorn re-raises SIGTERM once shutdown is complete: -15 is a clean stop.
    assert exit_code in (0, -signal.SIGTERM), complaints_process.log_tail()
    assert "Application shutdown complete" in complaints_process.log_tail()
    assert "Traceback" not in complaints_process.log_tail(200)
